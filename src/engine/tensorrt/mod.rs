//! The TensorRT backend ([`TensorRtDepthEngine`], feature `tensorrt`): our own cxx shim over
//! TensorRT's C++ API ([`ffi`], cpp/tensorrt_shim.cc), compiled against TensorRT 10 headers and
//! loading the libraries at run time, so the binary starts without TensorRT and says why it
//! cannot use it ([`status`]).
//!
//! The libraries are looked up in this order:
//! 1. `$LIVEDEPTH_TENSORRT_LIB`: the folder holding `libnvinfer.so.10` and
//!    `libnvonnxparser.so.10`, or the path of `libnvinfer.so.10` itself;
//! 2. the `tensorrt_libs` folder of a `tensorrt-cu12-libs` / `tensorrt-cu13-libs` wheel in the
//!    torch venv;
//! 3. the sonames, through the dynamic loader's search path (JetPack 6 installs TensorRT 10.3 in
//!    /usr/lib/aarch64-linux-gnu).
//!
//! An engine is built once from our ONNX export ([`crate::export`], input height and width
//! symbolic, one optimisation profile fixed at the network size) with the ONNX parser, FP16 and
//! a workspace limit, refittable (`kREFIT`), keeping only the `disp_0` output; the plan is
//! stored in an engine cache ([`cache`]) keyed by the ONNX hash, TensorRT's version, the GPU's
//! compute capability, the precision, the refit flags and the profile.
//!
//! Frames run with `enqueueV3` on the engine's own blocking CUDA stream, which is ordered both
//! ways with the legacy default stream that libtorch and our cudarc kernels use: a device tensor
//! from the preprocessing stage feeds the engine without a host copy or an event. Adapted weights
//! are refitted from the published network's device memory (`IRefitter::setNamedWeights` with
//! device locations, then `refitCudaEngineAsync` on the engine's stream): no rebuild, and the
//! next frame is ordered after the refit ([`refit`] maps variables to TensorRT's weight names).
//! Where TensorRT refits weights the ONNX parser derived (batch normalisation folded into
//! convolutions: the Monodepth2 ResNets), the adapted network is exported and the parser's
//! refitter supplies them ([`RefitPath::OnnxParser`]; an export on the live thread per swap).

pub mod cache;
mod ffi;
pub mod refit;

use super::preprocess::UNIT_RGB;
use super::torch_backend::upload;
use super::{DepthEngine, Disparity, EngineError, Preprocessor, WeightSwapStats};
use crate::adapt::{AdaptLayers, WeightsReceiver};
use crate::export::{self, DEPTH_INPUT, InputShape};
use crate::frame::RgbImage;
use crate::model::network::DepthNetwork;
use crate::model::{Arch, check_input_size};
use cache::{CacheLookup, EngineCache, EngineCacheKey, Precision, RefitMode};
use cxx::UniquePtr;
use refit::RefitPlan;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Instant;
use tch::{Device, Kind, Tensor};

/// The variable that points at TensorRT's libraries.
pub const LIBRARY_VAR: &str = "LIVEDEPTH_TENSORRT_LIB";
const NVINFER: &str = "libnvinfer.so.10";
const ONNXPARSER: &str = "libnvonnxparser.so.10";

/// One place TensorRT may be: libnvinfer, libnvonnxparser, and the libraries to load first.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LibraryCandidate {
    pub nvinfer: PathBuf,
    pub onnxparser: PathBuf,
    /// TensorRT's builder resource library from the same folder: TensorRT opens it by bare
    /// name, which fails outside the loader's search path unless it is already loaded.
    pub preload: Vec<PathBuf>,
}

impl LibraryCandidate {
    fn in_folder(dir: &Path, nvinfer: PathBuf) -> Self {
        let mut preload: Vec<PathBuf> = std::fs::read_dir(dir)
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.path())
            .filter(|p| {
                p.file_name().is_some_and(|n| {
                    n.to_string_lossy().starts_with("libnvinfer_builder_resource.so")
                })
            })
            .collect();
        preload.sort();
        Self { nvinfer, onnxparser: dir.join(ONNXPARSER), preload }
    }
}

/// Where to look for TensorRT, in order (see the module docs).
pub fn library_candidates() -> Vec<LibraryCandidate> {
    candidates_for(std::env::var_os(LIBRARY_VAR).map(PathBuf::from), crate::python::torch_venv())
}

/// [`library_candidates`] for `$LIVEDEPTH_TENSORRT_LIB` = `explicit` and the torch venv `venv`.
pub fn candidates_for(explicit: Option<PathBuf>, venv: Option<PathBuf>) -> Vec<LibraryCandidate> {
    if let Some(path) = explicit {
        // A library file (`….so`, `….so.10`), else a folder, whether or not it exists.
        let names_a_library =
            path.is_file() || path.file_name().is_some_and(|n| n.to_string_lossy().contains(".so"));
        return if names_a_library {
            let dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
            vec![LibraryCandidate::in_folder(&dir, path)]
        } else {
            vec![LibraryCandidate::in_folder(&path, path.join(NVINFER))]
        };
    }
    let mut candidates = Vec::new();
    if let Some(venv) = venv {
        for python in std::fs::read_dir(venv.join("lib")).into_iter().flatten().flatten() {
            let dir = python.path().join("site-packages/tensorrt_libs");
            if dir.join(NVINFER).is_file() {
                candidates.push(LibraryCandidate::in_folder(&dir, dir.join(NVINFER)));
            }
        }
    }
    candidates.push(LibraryCandidate {
        nvinfer: PathBuf::from(NVINFER),
        onnxparser: PathBuf::from(ONNXPARSER),
        preload: Vec::new(),
    });
    candidates
}

/// The process's TensorRT libraries (opened on the first call).
fn library() -> Result<&'static ffi::bridge::Library, EngineError> {
    static LIBRARY: OnceLock<Result<UniquePtr<ffi::bridge::Library>, String>> = OnceLock::new();
    let opened = LIBRARY.get_or_init(|| {
        let mut tried = Vec::new();
        for candidate in library_candidates() {
            let preload: Vec<String> =
                candidate.preload.iter().map(|p| p.display().to_string()).collect();
            match ffi::bridge::open_library(
                &candidate.nvinfer.to_string_lossy(),
                &candidate.onnxparser.to_string_lossy(),
                &preload,
            ) {
                Ok(library) => return Ok(library),
                Err(e) => tried.push(e.to_string()),
            }
        }
        Err(format!(
            "{}. Install TensorRT 10 (JetPack 6 ships 10.3), or set ${LIBRARY_VAR} to the folder \
             of {NVINFER}; --engine onnxruntime or --engine torch serve without it",
            tried.join("; ")
        ))
    });
    match opened {
        Ok(library) => library
            .as_ref()
            .ok_or_else(|| EngineError::Internal("the TensorRT shim returned no library".into())),
        Err(why) => Err(EngineError::TensorRtMissing(why.clone())),
    }
}

/// Why TensorRT cannot be used here, or None when its libraries load.
pub fn status() -> Option<String> {
    library().err().map(|e| match e {
        EngineError::TensorRtMissing(why) => why,
        other => other.to_string(),
    })
}

/// TensorRT's version as `major.minor.patch`, when its libraries load.
pub fn version() -> Option<String> {
    let v = library().ok()?.version();
    Some(format!("TensorRT {}.{}.{}", v / 10000, v / 100 % 100, v % 100))
}

fn shim_error(during: &str) -> impl Fn(cxx::Exception) -> EngineError + '_ {
    move |e| EngineError::TensorRt(format!("{during}: {}", e.what()))
}

/// How the engine is built.
#[derive(Clone, Debug)]
pub struct TensorRtOptions {
    pub precision: Precision,
    /// The builder's workspace limit.
    pub workspace_bytes: u64,
    /// Build refittable (`kREFIT`) so adapted weights go live without a rebuild.
    pub refittable: bool,
    /// Where plans are cached (None: build every time).
    pub cache: Option<EngineCache>,
}

impl Default for TensorRtOptions {
    fn default() -> Self {
        Self {
            precision: Precision::Fp16,
            workspace_bytes: 1 << 30,
            refittable: true,
            cache: Some(EngineCache::new(EngineCache::default_dir())),
        }
    }
}

/// How adapted weights reach the engine.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RefitPath {
    /// Every weight TensorRT can refit is a network variable (or an exporter constant): they
    /// are set from the network's device memory, with no export and no host copy.
    Device,
    /// TensorRT's weights include ones the ONNX parser derived (batch normalisation folded into
    /// convolutions, as in the Monodepth2 ResNets): the adapted network is exported and the
    /// parser's refitter recomputes them on the host.
    OnnxParser,
}

/// Depth inference with a TensorRT engine built from our ONNX export of a depth network.
pub struct TensorRtDepthEngine {
    engine: UniquePtr<ffi::bridge::Engine>,
    /// `[1, 3, H, W]` RGB in [0, 1] on the GPU (the engine's input for host frames).
    input: Tensor,
    /// `[1, 1, H, W]` disparity on the GPU, bound as `disp_0` once.
    output: Tensor,
    staging: Vec<f32>,
    preprocessor: Preprocessor,
    width: u32,
    height: u32,
    arch: Arch,
    device: Device,
    /// The network the served weights came from (the base of the next refit).
    shadow: DepthNetwork,
    plan: RefitPlan,
    refit_path: RefitPath,
    /// Device tensors a refit in flight reads (kept until the next refit).
    refit_sources: Vec<Tensor>,
    /// Where the plan came from: the cache file, and whether it was built now.
    pub cache_path: Option<PathBuf>,
    pub built_now: bool,
    swaps: WeightSwapStats,
}

impl std::fmt::Debug for TensorRtDepthEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TensorRtDepthEngine")
            .field("arch", &self.arch)
            .field("size", &(self.width, self.height))
            .field("cache_path", &self.cache_path)
            .finish_non_exhaustive()
    }
}

impl TensorRtDepthEngine {
    /// An engine serving `network` (on a CUDA device) at `width` x `height` (multiples of 32).
    pub fn new(
        network: DepthNetwork,
        width: u32,
        height: u32,
        options: &TensorRtOptions,
    ) -> Result<Self, EngineError> {
        check_input_size(width as i64, height as i64)?;
        let library = library()?;
        let device = network.device();
        let Device::Cuda(ordinal) = device else {
            return Err(EngineError::Unavailable {
                engine: "tensorrt",
                reason: "TensorRT serves on a CUDA device, and libtorch sees none".into(),
            });
        };
        let shape = InputShape { width, height, dynamic: true };
        let model = export::depth_model(&network, shape)
            .map_err(|e| EngineError::TensorRt(format!("ONNX export of the depth network: {e}")))?;
        let plan = RefitPlan::new(&network, &model, AdaptLayers::All)?;
        let onnx = model.encode();
        let nchw = [1, 3, i64::from(height), i64::from(width)];
        let key = EngineCacheKey {
            onnx_sha256: cache::sha256_hex(&onnx),
            tensorrt_version: library.version(),
            compute_capability: library
                .compute_capability(ordinal as i32)
                .map_err(shim_error("compute capability"))?,
            precision: options.precision,
            refit: if options.refittable { RefitMode::All } else { RefitMode::None },
            profile: [nchw; 3],
            workspace_bytes: options.workspace_bytes,
        };
        let (bytes, mut cache_path, mut built_now) =
            cached_plan(library, &onnx, &key, options, false)?;
        let mut engine = match library.deserialize(&bytes) {
            Ok(engine) => engine,
            Err(e) if !built_now => {
                // A cached plan this library cannot load (another build of the same version).
                tracing::warn!("TensorRT engine cache: {}; rebuilding", e.what());
                let plan;
                (plan, cache_path, built_now) = cached_plan(library, &onnx, &key, options, true)?;
                library.deserialize(&plan).map_err(shim_error("loading the rebuilt plan"))?
            }
            Err(e) => return Err(shim_error("loading the plan")(e)),
        };
        let names = engine.io_tensor_names();
        let output_name = export::disp_output(0);
        if names.first().map(|n| n.as_str()) != Some(DEPTH_INPUT) || !names.contains(&output_name) {
            return Err(EngineError::TensorRt(format!(
                "the engine's tensors are {names:?}; expected input {DEPTH_INPUT} and output {output_name}"
            )));
        }
        engine.pin_mut().set_input_shape(DEPTH_INPUT, &nchw).map_err(shim_error("input shape"))?;
        let refit_path = if options.refittable {
            let names = engine.pin_mut().refittable_weights().map_err(shim_error("refit"))?;
            let known = |n: &String| {
                plan.weights.iter().any(|w| w.name == *n) || plan.constants.contains_key(n)
            };
            match names.iter().find(|n| !known(n)) {
                None => RefitPath::Device,
                Some(derived) => {
                    tracing::info!(
                        "TensorRT refits `{derived}` and other weights the ONNX parser derived: \
                         adapted weights go through the parser's refitter"
                    );
                    RefitPath::OnnxParser
                }
            }
        } else {
            RefitPath::Device
        };
        let (w, h) = (i64::from(width), i64::from(height));
        let input = Tensor::f_zeros([1, 3, h, w], (Kind::Float, device))?;
        let output = Tensor::f_zeros([1, 1, h, w], (Kind::Float, device))?;
        engine
            .pin_mut()
            .set_address(&output_name, output.data_ptr() as u64)
            .map_err(shim_error("binding disp_0"))?;
        Ok(Self {
            engine,
            input,
            output,
            staging: vec![0.0; 3 * (width * height) as usize],
            preprocessor: Preprocessor::unit_rgb(width, height)?,
            width,
            height,
            arch: network.arch(),
            device,
            shadow: network,
            plan,
            refit_path,
            refit_sources: Vec::new(),
            cache_path,
            built_now,
            swaps: WeightSwapStats::default(),
        })
    }

    /// Loads `arch` weights onto CUDA device `ordinal` and builds (or loads) an engine.
    pub fn load(
        model: &Path,
        arch: Arch,
        width: u32,
        height: u32,
        ordinal: usize,
        options: &TensorRtOptions,
    ) -> Result<Self, EngineError> {
        library()?;
        let network = DepthNetwork::load(model, arch, Device::Cuda(ordinal))?;
        Self::new(network, width, height, options)
    }

    /// Runs the engine on the device tensor at `input` into the bound output; copies it to `out`.
    fn run(&mut self, input: u64, out: &mut [f32]) -> Result<(), EngineError> {
        let n = (self.width * self.height) as usize;
        if out.len() != n {
            return Err(EngineError::Internal(format!(
                "disparity buffer holds {} values, expected {n}",
                out.len()
            )));
        }
        let mut engine = self.engine.pin_mut();
        engine.as_mut().set_address(DEPTH_INPUT, input).map_err(shim_error("binding the input"))?;
        engine.enqueue().map_err(shim_error("running the engine"))?;
        // libtorch's copy on the legacy stream waits for the engine's (blocking) stream.
        self.output.f_copy_data(out, n)?;
        Ok(())
    }

    /// Refits the engine with the shadow network's current weights (no rebuild).
    fn refit_from_shadow(&mut self) -> Result<(), EngineError> {
        if self.refit_path == RefitPath::OnnxParser {
            let shape = InputShape { width: self.width, height: self.height, dynamic: true };
            let model = export::depth_model(&self.shadow, shape)
                .map_err(|e| EngineError::TensorRt(format!("refit export: {e}")))?;
            let mut engine = self.engine.pin_mut();
            engine.as_mut().refit_from_onnx(&model.encode()).map_err(shim_error("refit"))?;
            return engine.refit_commit().map_err(shim_error("refit"));
        }
        let variables = self.shadow.var_store().variables();
        self.refit_sources.clear();
        for weight in &self.plan.weights {
            let var = variables.get(&weight.name).ok_or_else(|| {
                EngineError::TensorRt(format!("refit: the network lost variable `{}`", weight.name))
            })?;
            let source = var.f_to_kind(Kind::Float)?.f_contiguous()?;
            self.engine
                .pin_mut()
                .refit_weight(&weight.name, source.data_ptr() as u64, weight.elements as i64, true)
                .map_err(shim_error("refit"))?;
            self.refit_sources.push(source);
        }
        for name in self.engine.pin_mut().missing_weights().map_err(shim_error("refit"))? {
            let values = self.plan.constants.get(name.as_str()).ok_or_else(|| {
                EngineError::TensorRt(format!(
                    "refit: TensorRT asks for weights `{name}`, which neither the network nor the \
                     exported graph holds"
                ))
            })?;
            self.engine
                .pin_mut()
                .refit_weight(&name, values.as_ptr() as u64, values.len() as i64, false)
                .map_err(shim_error("refit"))?;
        }
        self.engine.pin_mut().refit_commit().map_err(shim_error("refit"))
    }

    /// How adapted weights reach this engine.
    pub fn refit_path(&self) -> RefitPath {
        self.refit_path
    }

    /// Names of every weight the engine can refit (as TensorRT reports them).
    pub fn refittable_weights(&mut self) -> Result<Vec<String>, EngineError> {
        let names = self.engine.pin_mut().refittable_weights().map_err(shim_error("refit"))?;
        Ok(names.into_iter().map(|n| n.to_string()).collect())
    }
}

/// The plan for `key`: from the cache, or built now (and stored; always with `rebuild`). Returns
/// the plan, its cache file and whether it was built.
fn cached_plan(
    library: &ffi::bridge::Library,
    onnx: &[u8],
    key: &EngineCacheKey,
    options: &TensorRtOptions,
    rebuild: bool,
) -> Result<(Vec<u8>, Option<PathBuf>, bool), EngineError> {
    if let Some(cache) = options.cache.as_ref().filter(|_| !rebuild) {
        match cache.load(key)? {
            CacheLookup::Hit(plan) => return Ok((plan, Some(cache.path(key)), false)),
            CacheLookup::Miss => {}
            CacheLookup::Invalid(why) => tracing::warn!("TensorRT engine cache: {why}; rebuilding"),
        }
    }
    let [min, opt, max] = key.profile;
    let build = ffi::bridge::BuildOptions {
        fp16: key.precision == Precision::Fp16,
        workspace_bytes: key.workspace_bytes,
        refit: key.refit.flag(),
        refittable: match &key.refit {
            RefitMode::Individual(names) => names.clone(),
            _ => Vec::new(),
        },
        outputs: vec![export::disp_output(0)],
        input: DEPTH_INPUT.to_owned(),
        min_shape: min.to_vec(),
        opt_shape: opt.to_vec(),
        max_shape: max.to_vec(),
    };
    tracing::info!("building a TensorRT engine ({}); this takes a while once", key.describe());
    let start = Instant::now();
    let plan = library.build_serialized(onnx, &build).map_err(shim_error("building the engine"))?;
    tracing::info!("TensorRT engine built in {:.1} s", start.elapsed().as_secs_f64());
    let path = match &options.cache {
        Some(cache) => Some(cache.store(key, &plan)?),
        None => None,
    };
    Ok((plan, path, true))
}

impl DepthEngine for TensorRtDepthEngine {
    fn input_size(&self) -> (u32, u32) {
        (self.width, self.height)
    }

    fn max_batch(&self) -> usize {
        1
    }

    fn predict_disparity_into(
        &mut self,
        image: &RgbImage,
        out: &mut Disparity,
    ) -> Result<(), EngineError> {
        self.preprocessor.run(image, &mut self.staging)?;
        let (w, h) = (i64::from(self.width), i64::from(self.height));
        upload(&mut self.input, &self.staging, 1, [3, h, w])?;
        out.width = self.width;
        out.height = self.height;
        out.data.resize((self.width * self.height) as usize, 0.0);
        let input = self.input.data_ptr() as u64;
        self.run(input, &mut out.data)
    }

    fn predict_disparity_batch(
        &mut self,
        images: &[&RgbImage],
    ) -> Result<Vec<Disparity>, EngineError> {
        images.iter().map(|image| self.predict_disparity(image)).collect()
    }

    fn backend(&self) -> &'static str {
        "tensorrt"
    }

    fn input_normalisation(&self) -> ([f32; 3], [f32; 3]) {
        UNIT_RGB
    }

    fn forward_planar(&mut self, input: &[f32], out: &mut [f32]) -> Result<(), EngineError> {
        let (w, h) = (i64::from(self.width), i64::from(self.height));
        upload(&mut self.input, input, 1, [3, h, w])?;
        let input = self.input.data_ptr() as u64;
        self.run(input, out)
    }

    fn refresh_weights(&mut self, receiver: &WeightsReceiver) -> Result<bool, EngineError> {
        let start = Instant::now();
        let Some(published_at) = receiver.try_install_timed(&mut self.shadow) else {
            return Ok(false);
        };
        if self.shadow.device() != self.device {
            return Err(EngineError::TensorRt(format!(
                "adapted weights arrived on {:?}; the engine refits from {:?}",
                self.shadow.device(),
                self.device
            )));
        }
        self.refit_from_shadow()?;
        self.swaps.record(published_at, start.elapsed());
        Ok(true)
    }

    fn weight_swaps(&self) -> &WeightSwapStats {
        &self.swaps
    }

    fn torch_device(&self) -> Option<Device> {
        Some(self.device)
    }

    fn forward_device_tensor(&mut self, x: &Tensor, out: &mut [f32]) -> Result<(), EngineError> {
        let expected = [1, 3, i64::from(self.height), i64::from(self.width)];
        if x.size() != expected
            || x.kind() != Kind::Float
            || !x.is_contiguous()
            || x.device() != self.device
        {
            return Err(EngineError::Internal(format!(
                "the TensorRT engine takes a contiguous f32 {expected:?} tensor on {:?}, got {:?} \
                 {:?} on {:?}",
                self.device,
                x.kind(),
                x.size(),
                x.device()
            )));
        }
        self.run(x.data_ptr() as u64, out)
    }
}
