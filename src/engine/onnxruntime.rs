//! The ONNX Runtime backend of the engine ([`OrtDepthEngine`], [`OrtPoseEngine`]), through the
//! `ort` crate with load-dynamic: nothing links against ONNX Runtime at build time; the library
//! is loaded on first use from
//! 1. `$ORT_DYLIB_PATH` (the `ort` crate's variable; on Jetson, the `libonnxruntime.so` of the
//!    user's ORT build, e.g. from the JetPack wheel), else
//! 2. the `onnxruntime` wheel that scripts/setup.sh installs into the torch venv
//!    (`$LIVEDEPTH_TORCH_VENV`, else `~/.cache/livedepth/torch-2.11`).
//!
//! A session is built from our own ONNX export ([`crate::export`]) of the network in memory,
//! with graph optimisation level "all" and the intra-op threads the caller asks for, on the CPU
//! execution provider, or on CUDA (with the TensorRT execution provider first, FP16 and an
//! engine cache) when the device is a GPU and the library has those providers.
//!
//! The input tensor and the one output it asks for (`disp_0`) are allocated once and reused;
//! the per-frame call passes the input positionally and reads the output by a name kept with
//! the session, so our side builds nothing per frame.
//!
//! Adapted weights reach this engine without a stall (see [`OrtDepthEngine::refresh_weights`]):
//! a background thread exports the published network and builds a new session; the live thread
//! swaps it in between two frames.

use super::preprocess::UNIT_RGB;
use super::{
    DepthEngine, Disparity, EngineError, PoseEngine, Preprocessor, RelativePose, WeightSwapStats,
};
use crate::adapt::WeightsReceiver;
use crate::export::{self, DEPTH_INPUT, InputShape, POSE_INPUT, POSE_OUTPUTS};
use crate::frame::RgbImage;
use crate::model::network::{DepthNetwork, PoseNetwork};
use crate::model::{Arch, PoseArch, check_input_size};
use crossbeam_channel::{Receiver, Sender, TryRecvError};
use ort::environment::Environment;
use ort::memory::Allocator;
use ort::session::builder::GraphOptimizationLevel;
use ort::session::{HasSelectedOutputs, OutputSelector, RunOptions, Session};
use ort::value::Tensor;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// The variable that points at the ONNX Runtime shared library.
pub const LIBRARY_VAR: &str = "ORT_DYLIB_PATH";

/// Where the ONNX Runtime session runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OrtDevice {
    Cpu,
    /// CUDA device `ordinal`: the TensorRT execution provider first, then CUDA, then the CPU for
    /// whatever they do not take.
    Cuda(usize),
}

/// How sessions are built.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OrtOptions {
    pub device: OrtDevice,
    /// Intra-op threads (0: ONNX Runtime's default, one per core).
    pub threads: usize,
    /// FP16 in the TensorRT execution provider (GPU only).
    pub fp16: bool,
    /// The TensorRT execution provider's engine cache folder (GPU only; none: no cache).
    pub engine_cache: Option<PathBuf>,
}

impl Default for OrtOptions {
    fn default() -> Self {
        Self { device: OrtDevice::Cpu, threads: 0, fp16: true, engine_cache: None }
    }
}

fn ort_error(during: &str) -> impl Fn(ort::Error) -> EngineError + '_ {
    move |e| EngineError::OnnxRuntime(format!("{during}: {e}"))
}

/// The ONNX Runtime library this process loads (see the module docs for the order).
pub fn library_path() -> Result<PathBuf, EngineError> {
    if let Some(path) = std::env::var_os(LIBRARY_VAR) {
        let path = PathBuf::from(path);
        return if path.is_file() {
            Ok(path)
        } else {
            Err(EngineError::OnnxRuntimeMissing(format!(
                "${LIBRARY_VAR} = {}: no such file (expected the path of libonnxruntime.so)",
                path.display()
            )))
        };
    }
    let venv = crate::python::torch_venv();
    let found = venv.as_deref().and_then(wheel_library);
    found.ok_or_else(|| {
        let place = venv.map_or("the torch venv".to_owned(), |v| v.display().to_string());
        EngineError::OnnxRuntimeMissing(format!(
            "no libonnxruntime.so in {place}: run `bash scripts/setup.sh` (installs the \
             onnxruntime wheel), or set ${LIBRARY_VAR} to your ONNX Runtime library"
        ))
    })
}

/// `libonnxruntime.so.<version>` inside the venv's `onnxruntime` package (the highest version
/// when several are there).
fn wheel_library(venv: &Path) -> Option<PathBuf> {
    let lib = venv.join("lib");
    let mut candidates = Vec::new();
    for python in std::fs::read_dir(&lib).ok()?.flatten() {
        let capi = python.path().join("site-packages/onnxruntime/capi");
        for entry in std::fs::read_dir(&capi).into_iter().flatten().flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with("libonnxruntime.so") {
                candidates.push(entry.path());
            }
        }
    }
    candidates.sort();
    candidates.pop()
}

/// The process's one ONNX Runtime environment (the library is loaded on the first call).
pub fn environment() -> Result<&'static Environment, EngineError> {
    static ENVIRONMENT: OnceLock<Result<Environment, String>> = OnceLock::new();
    let result = ENVIRONMENT.get_or_init(|| {
        let path = library_path().map_err(|e| match e {
            EngineError::OnnxRuntimeMissing(why) => why,
            other => other.to_string(),
        })?;
        let builder = ort::init_from(&path).map_err(|e| {
            format!("{}: cannot load ONNX Runtime ({e}); set ${LIBRARY_VAR}", path.display())
        })?;
        builder.with_name("livedepth").build().map_err(|e| format!("{}: {e}", path.display()))
    });
    result.as_ref().map_err(|e| EngineError::OnnxRuntimeMissing(e.clone()))
}

/// Why ONNX Runtime cannot be used here, or None when it can.
pub fn onnxruntime_status() -> Option<String> {
    environment().err().map(|e| e.to_string())
}

/// A session over the ONNX bytes `model` (already exported).
fn build_session(model: &[u8], options: &OrtOptions) -> Result<Session, EngineError> {
    let env = environment()?;
    let mut builder = Session::builder(env)
        .map_err(ort_error("session builder"))?
        .with_optimization_level(GraphOptimizationLevel::All)
        .map_err(|e| ort_error("graph optimisation level")(e.into()))?;
    if options.threads > 0 {
        builder = builder
            .with_intra_threads(options.threads)
            .map_err(|e| ort_error("intra-op threads")(e.into()))?;
    }
    if let OrtDevice::Cuda(ordinal) = options.device {
        let mut tensorrt = ort::ep::TensorRT::default()
            .with_device_id(ordinal as i32)
            .with_fp16(options.fp16)
            .with_max_workspace_size(1 << 30);
        if let Some(dir) = &options.engine_cache {
            tensorrt = tensorrt
                .with_engine_cache(true)
                .with_engine_cache_path(dir.display())
                .with_timing_cache(true)
                .with_timing_cache_path(dir.display());
        }
        let cuda = ort::ep::CUDA::default().with_device_id(ordinal as i32);
        // The CUDA provider is required (a CPU-only library cannot serve a GPU request);
        // TensorRT is used where the library and the machine have it.
        builder = builder
            .with_execution_providers([tensorrt.build(), cuda.build().error_on_failure()])
            .map_err(|e| {
                EngineError::OnnxRuntime(format!(
                    "the CUDA execution provider is not available in this ONNX Runtime ({e}); \
                     install onnxruntime-gpu or point ${LIBRARY_VAR} at a GPU build"
                ))
            })?;
    }
    builder.commit_from_memory(model).map_err(ort_error("building the session"))
}

/// A preallocated `[shape]` f32 tensor.
fn zeros(shape: [usize; 4]) -> Result<Tensor<f32>, EngineError> {
    Tensor::<f32>::new(&Allocator::default(), shape).map_err(ort_error("allocating a tensor"))
}

/// A session with its preallocated input and `disp_0` output.
struct DepthSession {
    session: Session,
    input: Tensor<f32>,
    /// `disp_0`, the one output the run options select (and preallocate).
    output: String,
    run_options: RunOptions<HasSelectedOutputs>,
}

impl DepthSession {
    fn new(model: &[u8], options: &OrtOptions, (w, h): (u32, u32)) -> Result<Self, EngineError> {
        let session = build_session(model, options)?;
        // `run` passes the input positionally: the graph must have exactly ours.
        let inputs: Vec<&str> = session.inputs().iter().map(|i| i.name()).collect();
        if inputs != [DEPTH_INPUT] {
            return Err(EngineError::Internal(format!(
                "the depth graph's inputs are {inputs:?}, expected [{DEPTH_INPUT:?}]"
            )));
        }
        let (w, h) = (w as usize, h as usize);
        let output = export::disp_output(0);
        let selector =
            OutputSelector::no_default().with(&output).preallocate(&output, zeros([1, 1, h, w])?);
        let run_options =
            RunOptions::new().map_err(ort_error("run options"))?.with_outputs(selector);
        Ok(Self { session, input: zeros([1, 3, h, w])?, output, run_options })
    }

    /// Runs the network on the input tensor as it stands; copies `disp_0` into `out`.
    fn run(&mut self, out: &mut [f32]) -> Result<(), EngineError> {
        // The graph's one input (`image`), passed positionally.
        let outputs = self
            .session
            .run_with_options(ort::inputs![&self.input], &self.run_options)
            .map_err(ort_error("running the depth network"))?;
        let disp = outputs
            .get(&self.output)
            .ok_or_else(|| EngineError::Internal("the session returned no disp_0".into()))?;
        let (_, data) = disp.try_extract_tensor::<f32>().map_err(ort_error("reading disp_0"))?;
        super::copy_exact(out, data, "disp_0")
    }

    fn input_mut(&mut self) -> Result<&mut [f32], EngineError> {
        let (_, data) =
            self.input.try_extract_tensor_mut::<f32>().map_err(ort_error("input tensor"))?;
        Ok(data)
    }
}

/// A rebuild request: adapted weights and when they were published.
struct RebuildRequest {
    network: DepthNetwork,
    published_at: Instant,
}

/// Work for the background thread.
enum BackgroundJob {
    Rebuild(Box<RebuildRequest>),
    /// A session swapped out: freed there, so the live thread only swaps pointers.
    Retire(Box<DepthSession>),
}

/// A session built on the background thread, and how long the export and build took.
struct Rebuilt {
    session: Result<DepthSession, EngineError>,
    request: RebuildRequest,
    took: Duration,
}

/// Depth inference with ONNX Runtime over our ONNX export of a depth network.
pub struct OrtDepthEngine {
    current: DepthSession,
    preprocessor: Preprocessor,
    width: u32,
    height: u32,
    arch: Arch,
    options: OrtOptions,
    /// The network the serving session was built from (None while it is being rebuilt).
    shadow: Option<DepthNetwork>,
    rebuild_requests: Option<Sender<BackgroundJob>>,
    rebuilt: Option<Receiver<Rebuilt>>,
    swaps: WeightSwapStats,
}

impl std::fmt::Debug for OrtDepthEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OrtDepthEngine")
            .field("arch", &self.arch)
            .field("size", &(self.width, self.height))
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

/// The ONNX bytes of `network` at `width` x `height` (fixed batch 1).
fn depth_onnx(network: &DepthNetwork, width: u32, height: u32) -> Result<Vec<u8>, EngineError> {
    let shape = InputShape { width, height, dynamic: false };
    let model = export::depth_model(network, shape)
        .map_err(|e| EngineError::Internal(format!("ONNX export of the depth network: {e}")))?;
    Ok(model.encode())
}

impl OrtDepthEngine {
    /// An engine serving `network` at `width` x `height` (multiples of 32). The network is kept
    /// (on its device) as the base for weight refreshes.
    pub fn new(
        network: DepthNetwork,
        width: u32,
        height: u32,
        options: OrtOptions,
    ) -> Result<Self, EngineError> {
        check_input_size(width as i64, height as i64)?;
        let bytes = depth_onnx(&network, width, height)?;
        let current = DepthSession::new(&bytes, &options, (width, height))?;
        let preprocessor = Preprocessor::unit_rgb(width, height)?;
        Ok(Self {
            current,
            preprocessor,
            width,
            height,
            arch: network.arch(),
            options,
            shadow: Some(network),
            rebuild_requests: None,
            rebuilt: None,
            swaps: WeightSwapStats::default(),
        })
    }

    /// Loads `arch` weights from a checkpoint folder or safetensors file (on the CPU) and builds
    /// an engine.
    pub fn load(
        model: &Path,
        arch: Arch,
        width: u32,
        height: u32,
        options: OrtOptions,
    ) -> Result<Self, EngineError> {
        check_input_size(width as i64, height as i64)?;
        let network = DepthNetwork::load(model, arch, tch::Device::Cpu)?;
        Self::new(network, width, height, options)
    }

    pub fn arch(&self) -> Arch {
        self.arch
    }

    pub fn options(&self) -> &OrtOptions {
        &self.options
    }

    /// Installs adapted weights without stalling the caller: takes a newer network from
    /// `receiver` when one waits (and no rebuild is in flight) and hands it to the background
    /// thread, which exports it and builds a session; a finished session is swapped in here.
    /// Returns true when a new session went live on this call.
    pub fn refresh_weights(&mut self, receiver: &WeightsReceiver) -> Result<bool, EngineError> {
        let mut swapped = false;
        if let Some(rebuilt) = &self.rebuilt {
            match rebuilt.try_recv() {
                Ok(Rebuilt { session, request, took }) => {
                    self.shadow = Some(request.network);
                    match session {
                        Ok(session) => {
                            let start = Instant::now();
                            let old = std::mem::replace(&mut self.current, session);
                            self.swaps.record(request.published_at, start.elapsed());
                            self.send_job(BackgroundJob::Retire(Box::new(old)))?;
                            self.swaps.rebuild_ms.push(took.as_secs_f64() * 1e3);
                            swapped = true;
                        }
                        Err(e) => {
                            self.swaps.failures += 1;
                            tracing::warn!("onnxruntime: rebuilding with adapted weights: {e}");
                        }
                    }
                }
                Err(TryRecvError::Empty) => {}
                Err(TryRecvError::Disconnected) => {
                    return Err(EngineError::Internal(
                        "the onnxruntime rebuild thread ended".into(),
                    ));
                }
            }
        }
        if let Some(shadow) = self.shadow.as_mut()
            && let Some(published_at) = receiver.try_install_timed(shadow)
        {
            let network = self.shadow.take().ok_or_else(|| {
                EngineError::Internal("the shadow network vanished during a refresh".into())
            })?;
            self.send_job(BackgroundJob::Rebuild(Box::new(RebuildRequest {
                network,
                published_at,
            })))?;
        }
        Ok(swapped)
    }

    /// Sends `job` to the background thread (started on first use). Never blocks: at most one
    /// rebuild and one retired session are in flight at a time.
    fn send_job(&mut self, job: BackgroundJob) -> Result<(), EngineError> {
        if self.rebuild_requests.is_none() {
            let (requests, requests_rx) = crossbeam_channel::bounded::<BackgroundJob>(2);
            let (done, done_rx) = crossbeam_channel::bounded::<Rebuilt>(1);
            let (options, size) = (self.options.clone(), (self.width, self.height));
            std::thread::Builder::new()
                .name("ort-rebuild".into())
                .spawn(move || {
                    for job in requests_rx {
                        let request = match job {
                            BackgroundJob::Rebuild(request) => *request,
                            BackgroundJob::Retire(session) => {
                                drop(session);
                                continue;
                            }
                        };
                        let start = Instant::now();
                        let session = depth_onnx(&request.network, size.0, size.1)
                            .and_then(|bytes| DepthSession::new(&bytes, &options, size));
                        let took = start.elapsed();
                        if done.send(Rebuilt { session, request, took }).is_err() {
                            break;
                        }
                    }
                })
                .map_err(|e| {
                    EngineError::Internal(format!(
                        "cannot start the onnxruntime rebuild thread: {e}"
                    ))
                })?;
            self.rebuild_requests = Some(requests);
            self.rebuilt = Some(done_rx);
        }
        let requests = self.rebuild_requests.as_ref().ok_or_else(|| {
            EngineError::Internal("the onnxruntime rebuild thread is missing".into())
        })?;
        requests
            .try_send(job)
            .map_err(|e| EngineError::Internal(format!("the onnxruntime rebuild thread: {e}")))
    }

    /// Runs the network on a planar RGB input in \[0, 1\] (3 × H × W values) into `out`
    /// (H × W disparities).
    pub fn forward_unit_rgb(&mut self, input: &[f32], out: &mut [f32]) -> Result<(), EngineError> {
        super::copy_exact(self.current.input_mut()?, input, "the input")?;
        self.current.run(out)
    }
}

impl DepthEngine for OrtDepthEngine {
    fn input_size(&self) -> (u32, u32) {
        (self.width, self.height)
    }

    fn backend(&self) -> &'static str {
        "onnxruntime"
    }

    fn input_normalisation(&self) -> ([f32; 3], [f32; 3]) {
        // The graph normalises inside: it takes RGB in [0, 1].
        UNIT_RGB
    }

    fn forward_planar(&mut self, input: &[f32], out: &mut [f32]) -> Result<(), EngineError> {
        self.forward_unit_rgb(input, out)
    }

    fn refresh_weights(&mut self, receiver: &WeightsReceiver) -> Result<bool, EngineError> {
        OrtDepthEngine::refresh_weights(self, receiver)
    }

    fn weight_swaps(&self) -> &WeightSwapStats {
        &self.swaps
    }

    fn max_batch(&self) -> usize {
        1
    }

    fn predict_disparity_into(
        &mut self,
        image: &RgbImage,
        out: &mut Disparity,
    ) -> Result<(), EngineError> {
        let input = self.current.input_mut()?;
        self.preprocessor.run(image, input)?;
        let n = (self.width * self.height) as usize;
        out.width = self.width;
        out.height = self.height;
        out.data.resize(n, 0.0);
        self.current.run(&mut out.data)
    }

    fn predict_disparity_batch(
        &mut self,
        images: &[&RgbImage],
    ) -> Result<Vec<Disparity>, EngineError> {
        images.iter().map(|image| self.predict_disparity(image)).collect()
    }
}

/// Relative pose inference with ONNX Runtime over our ONNX export of a pose network.
pub struct OrtPoseEngine {
    session: Session,
    input: Tensor<f32>,
    preprocessor: Preprocessor,
    width: u32,
    height: u32,
    arch: PoseArch,
}

impl OrtPoseEngine {
    /// An engine running `network` on frame pairs at `width` x `height`.
    pub fn new(
        network: &PoseNetwork,
        width: u32,
        height: u32,
        options: &OrtOptions,
    ) -> Result<Self, EngineError> {
        check_input_size(width as i64, height as i64)?;
        let shape = InputShape { width, height, dynamic: false };
        let model = export::pose_model(network, shape)
            .map_err(|e| EngineError::Internal(format!("ONNX export of the pose network: {e}")))?;
        let session = build_session(&model.encode(), options)?;
        Ok(Self {
            session,
            input: zeros([1, 6, height as usize, width as usize])?,
            preprocessor: Preprocessor::unit_rgb(width, height)?,
            width,
            height,
            arch: network.arch(),
        })
    }

    pub fn arch(&self) -> PoseArch {
        self.arch
    }
}

impl PoseEngine for OrtPoseEngine {
    fn input_size(&self) -> (u32, u32) {
        (self.width, self.height)
    }

    fn predict_pose(
        &mut self,
        first: &RgbImage,
        second: &RgbImage,
    ) -> Result<RelativePose, EngineError> {
        let plane = self.preprocessor.output_len();
        {
            let (_, input) =
                self.input.try_extract_tensor_mut::<f32>().map_err(ort_error("input tensor"))?;
            let (a, b) = input.split_at_mut(plane);
            self.preprocessor.run(first, a)?;
            self.preprocessor.run(second, b)?;
        }
        let outputs = self
            .session
            .run(ort::inputs![POSE_INPUT => &self.input])
            .map_err(ort_error("running the pose network"))?;
        let read = |name: &str| -> Result<[f32; 3], EngineError> {
            let value = outputs
                .get(name)
                .ok_or_else(|| EngineError::Internal(format!("the session returned no {name}")))?;
            let (_, data) = value.try_extract_tensor::<f32>().map_err(ort_error(name))?;
            match data {
                [x, y, z] => Ok([*x, *y, *z]),
                _ => Err(EngineError::Internal(format!("{name} holds {} values", data.len()))),
            }
        };
        let [axis_angle, translation] = POSE_OUTPUTS;
        Ok(RelativePose { axis_angle: read(axis_angle)?, translation: read(translation)? })
    }
}
