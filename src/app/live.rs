//! `livedepth run`: live depth from any source. The stages are
//! source → `preprocess` (Lanczos resize + normalisation on the CPU; or, with feature `cuda` and
//! libtorch on CUDA, our preprocessing kernel writing straight into the network's input tensor,
//! stage `preprocess[cuda]`) → `depth` (libtorch network) →
//! `outputs` (colourised mp4, 16-bit depth PNGs, colour PNGs, point clouds, per-frame metrics
//! where the source has ground truth), with per-stage statistics printed live.
//!
//! The normalised input buffers travel from `preprocess` to `depth` and back through a small
//! pool, so the hot path allocates nothing per frame once the pool is warm. `run_report.json`
//! records which preprocessing ran (`preprocess_path`).

use crate::adapt::{AdaptStats, WeightsReceiver, weights_exchange};
use crate::app::adapt::{
    AdaptFailurePolicy, AdaptFrame, build_adapter, lower_thread_priority, run_adapter_thread,
};
use crate::app::eval::score_disparity;
use crate::app::replay::ADAPT_REPORT_FILE;
use crate::camera::Intrinsics;
use crate::config::{Config, OutputsConfig};
use crate::engine::{
    Disparity, EngineKind, EngineRequest, LiveDepthEngine, Preprocessor, WeightSwapStats,
    default_device, open_depth_engine,
};
use crate::eval::{EvalProtocol, MetricsAccumulator};
use crate::frame::{DepthMap, Frame, RgbImage};
use crate::pipeline::{Pipeline, RunReport, Sink, Stage, StageError};
use crate::sink::colourise::{colourise_depth, write_rgb_png};
use crate::sink::depth_png::write_depth_png;
use crate::sink::foxglove_live::{Telemetry, TelemetryFrame, TelemetryOptions};
use crate::sink::metrics::{MetricsCsvWriter, write_summary_json};
use crate::sink::pointcloud::write_ply;
use crate::sink::video::Mp4Writer;
use crate::source::Source;
use crate::source::dataset::{DatasetKind, FrameSelection};
use crate::source::gst::GstOptions;
use crate::source::reconnect::{ReconnectPolicy, ReconnectingSource};
use crate::tempfiles::create_output_dir;
use crossbeam_channel::{Receiver, Sender};
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// What `livedepth run` runs: a loaded config with command-line overrides applied.
#[derive(Clone, Debug)]
pub struct LiveOptions {
    pub config: Config,
    /// Model folder or safetensors file (the config's `network.model` when `None`).
    pub model: Option<PathBuf>,
    /// Stop after this many frames (all when `None`).
    pub max_frames: Option<usize>,
    /// Online adaptation on a thread beside the live path (`run --adapt`).
    pub adapt: Option<crate::app::adapt::AdaptOptions>,
}

/// The evaluation protocol for a source: the dataset's own where the source is a dataset,
/// otherwise indoor-style defaults up to the network's maximum depth.
fn protocol_for(uri: &str, max_depth: f64) -> EvalProtocol {
    match DatasetKind::from_spec(uri) {
        Some(kind) => EvalProtocol::for_dataset(kind),
        None => EvalProtocol { min_depth: 0.1, max_depth, garg_crop: false, median_scaling: true },
    }
}

/// A frame resized and normalised for the network.
pub struct PreparedFrame {
    pub frame: Frame,
    /// The frame at the network size (8-bit), kept for the outputs.
    pub resized: RgbImage,
    /// Planar normalised input, 3 × H × W (returned to the pool after inference); empty when
    /// `device_input` holds the input.
    pub input: Vec<f32>,
    /// The normalised input already on the network's device, [1, 3, H, W] (CUDA preprocessing).
    pub device_input: Option<tch::Tensor>,
}

/// Which preprocessing the live path runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum PreprocessPath {
    /// Pillow-exact Lanczos-3 resize + normalisation on the CPU, uploaded per frame.
    #[serde(rename = "cpu-lanczos")]
    CpuLanczos,
    /// Our CUDA kernel: upload of the packed RGB frame, area resize + normalisation in one pass
    /// into the network's input tensor.
    #[serde(rename = "cuda-area")]
    CudaArea,
}

impl PreprocessPath {
    pub fn name(self) -> &'static str {
        match self {
            PreprocessPath::CpuLanczos => "cpu-lanczos",
            PreprocessPath::CudaArea => "cuda-area",
        }
    }

    /// The pipeline stage name (shown in the live per-stage statistics and the report).
    pub fn stage_name(self) -> &'static str {
        match self {
            PreprocessPath::CpuLanczos => "preprocess",
            PreprocessPath::CudaArea => "preprocess[cuda]",
        }
    }
}

/// `run_report.json`: the pipeline report plus what ran where.
#[derive(Serialize)]
struct LiveRunReport<'a> {
    #[serde(flatten)]
    pipeline: &'a RunReport,
    preprocess_path: PreprocessPath,
    /// The backend that served depth, and how it was chosen (`--engine auto` measures).
    engine: EngineKind,
    engine_choice: String,
    /// How adapted weights reached the engine (`--adapt`).
    weight_swaps: WeightSwapStats,
}

/// A frame with its predicted disparity at the network size.
pub struct DepthFrame {
    pub frame: Frame,
    pub resized: RgbImage,
    pub disparity: Disparity,
}

/// Recycles input buffers between the preprocess and depth stages.
#[derive(Clone)]
struct BufferPool {
    give: Sender<Vec<f32>>,
    take: Receiver<Vec<f32>>,
    len: usize,
}

impl BufferPool {
    fn new(capacity: usize, len: usize) -> Self {
        let (give, take) = crossbeam_channel::bounded(capacity);
        Self { give, take, len }
    }

    fn get(&self) -> Vec<f32> {
        self.take.try_recv().unwrap_or_else(|_| vec![0.0; self.len])
    }

    fn put(&self, buffer: Vec<f32>) {
        // A full pool simply lets the buffer go.
        let _ = self.give.try_send(buffer);
    }
}

/// The `preprocess` stage.
pub struct PreprocessStage {
    preprocessor: Preprocessor,
    pool: BufferPool,
    /// The CUDA kernel path, when it runs (feature `cuda`, libtorch on CUDA).
    #[cfg(feature = "cuda")]
    gpu: Option<gpu_preprocess::GpuPreprocess>,
}

impl PreprocessStage {
    /// Which preprocessing this stage runs.
    pub fn path(&self) -> PreprocessPath {
        #[cfg(feature = "cuda")]
        if self.gpu.is_some() {
            return PreprocessPath::CudaArea;
        }
        PreprocessPath::CpuLanczos
    }
}

impl Stage<Frame> for PreprocessStage {
    type Out = PreparedFrame;

    fn process(&mut self, frame: Frame) -> Result<PreparedFrame, StageError> {
        #[cfg(feature = "cuda")]
        if let Some(gpu) = self.gpu.as_mut() {
            let (resized, input) = gpu.run(&frame.rgb)?;
            return Ok(PreparedFrame {
                frame,
                resized,
                input: Vec::new(),
                device_input: Some(input),
            });
        }
        let mut input = self.pool.get();
        self.preprocessor.run(&frame.rgb, &mut input)?;
        let resized = self.preprocessor.resized().clone();
        Ok(PreparedFrame { frame, resized, input, device_input: None })
    }
}

/// The CUDA preprocessing of the live path (feature `cuda`).
#[cfg(feature = "cuda")]
pub mod gpu_preprocess {
    use crate::cuda::device::{CudaKernels, FramePreprocessor};
    use crate::cuda::torch::preprocess_to_tensor;
    use crate::cuda::twin::{Normalization, PackedFrame, PixelFormat, Resize};
    use crate::engine::EngineError;
    use crate::frame::RgbImage;
    use std::sync::Arc;
    use tch::{Device, Kind, Tensor};

    /// Packed RGB8 host frames → normalised [1, 3, H, W] tensors on CUDA device `ordinal`
    /// (plus the 8-bit image at the network size for the outputs, read back from the device).
    pub struct GpuPreprocess {
        pre: FramePreprocessor,
        ordinal: usize,
        size: (usize, usize),
        norm: Normalization,
        /// `norm` as [1, 3, 1, 1] device tensors (to recover the 8-bit image).
        mean: Tensor,
        std: Tensor,
    }

    impl GpuPreprocess {
        /// Loads the kernels on `ordinal`; the error says why they cannot run.
        pub fn new(
            ordinal: usize,
            (width, height): (u32, u32),
            (mean, std): ([f32; 3], [f32; 3]),
        ) -> Result<Self, crate::cuda::CudaError> {
            let kernels = Arc::new(CudaKernels::new(ordinal)?);
            let device = Device::Cuda(ordinal);
            let channel_tensor = |v: &[f32; 3]| -> Result<Tensor, crate::cuda::CudaError> {
                Tensor::f_from_slice(v)
                    .and_then(|t| t.f_to_device(device))
                    .and_then(|t| t.f_view([1, 3, 1, 1]))
                    .map_err(|e| crate::cuda::CudaError::Driver {
                        during: "uploading the normalisation".into(),
                        detail: e.to_string(),
                    })
            };
            Ok(Self {
                pre: FramePreprocessor::new(kernels),
                ordinal,
                size: (width as usize, height as usize),
                norm: Normalization { mean, std },
                mean: channel_tensor(&mean)?,
                std: channel_tensor(&std)?,
            })
        }

        /// The 8-bit image at the network size and the normalised input tensor of `image`.
        pub fn run(&mut self, image: &RgbImage) -> Result<(RgbImage, Tensor), EngineError> {
            let frame = PackedFrame {
                data: &image.data,
                width: image.width as usize,
                height: image.height as usize,
                pitch: 3 * image.width as usize,
                format: PixelFormat::Rgb,
            };
            let (w, h) = self.size;
            let input = preprocess_to_tensor(
                &mut self.pre,
                &frame,
                self.size,
                Resize::Area,
                &self.norm,
                self.ordinal,
            )
            .map_err(|e| EngineError::Internal(format!("CUDA preprocessing: {e}")))?;
            // The 8-bit network-size image for the outputs and the adapter: one small read back.
            let bytes = ((&input * &self.std + &self.mean) * 255.0)
                .f_round()?
                .f_clamp(0.0, 255.0)?
                .f_to_kind(Kind::Uint8)?
                .f_permute([0, 2, 3, 1])?
                .f_contiguous()?
                .f_to_device(Device::Cpu)?;
            let mut resized = RgbImage::new(w as u32, h as u32);
            let n = resized.data.len();
            bytes.f_copy_data_u8(&mut resized.data, n)?;
            Ok((resized, input))
        }
    }
}

/// The live side of `--adapt`: installs published weights between frames and offers each
/// frame to the adapter, both without ever waiting.
pub struct LiveAdaptHook {
    receiver: WeightsReceiver,
    frames: Sender<AdaptFrame>,
    /// Used for frames that carry no intrinsics of their own.
    camera: Intrinsics,
    /// Frames the adapter was too busy to take.
    pub offered_but_dropped: u64,
    /// Set by the adaptation thread when it fails.
    failure: Arc<OnceLock<String>>,
    on_failure: AdaptFailurePolicy,
    /// When the failure was last shown on the console.
    failure_shown: Option<Instant>,
}

/// How often a live run repeats that its adaptation failed.
const FAILURE_REMINDER: Duration = Duration::from_secs(2);

impl LiveAdaptHook {
    /// Installs adapted weights when some wait; true when new ones went live.
    fn before_frame(&self, engine: &mut LiveDepthEngine) -> Result<bool, StageError> {
        Ok(engine.refresh_weights(&self.receiver)?)
    }

    /// Offers the frame to the adapter; once the adapter has failed, shows the failure (at once,
    /// then every [`FAILURE_REMINDER`]) and, under [`AdaptFailurePolicy::Stop`], stops the run.
    fn after_frame(&mut self, frame: &Frame, resized: &RgbImage) -> Result<(), StageError> {
        if let Some(reason) = self.failure.get() {
            if self.on_failure == AdaptFailurePolicy::Stop {
                return Err(format!(
                    "adaptation failed ({reason}); the run stops (--adapt-on-failure stop)"
                )
                .into());
            }
            if self.failure_shown.is_none_or(|t| t.elapsed() >= FAILURE_REMINDER) {
                tracing::error!(
                    "adapt: FAILED ({reason}) | live depth goes on with the last published \
                     weights (--adapt-on-failure continue); the run will exit non-zero"
                );
                self.failure_shown = Some(Instant::now());
            }
            return Ok(());
        }
        let camera = frame.intrinsics.unwrap_or(self.camera);
        let offer = AdaptFrame { index: frame.index, resized: resized.clone(), camera };
        if self.frames.try_send(offer).is_err() {
            self.offered_but_dropped += 1;
        }
        Ok(())
    }
}

/// The `depth` stage.
pub struct DepthStage {
    engine: LiveDepthEngine,
    pool: BufferPool,
    adapt: Option<LiveAdaptHook>,
    /// The engine's weight swaps, copied out after each swap for the run report.
    swaps: Arc<Mutex<WeightSwapStats>>,
}

impl Stage<PreparedFrame> for DepthStage {
    type Out = DepthFrame;

    fn process(&mut self, prepared: PreparedFrame) -> Result<DepthFrame, StageError> {
        let PreparedFrame { frame, resized, input, device_input } = prepared;
        if let Some(hook) = &self.adapt
            && hook.before_frame(&mut self.engine)?
            && let Ok(mut swaps) = self.swaps.lock()
        {
            swaps.clone_from(self.engine.weight_swaps());
        }
        let mut disparity = Disparity::new(resized.width, resized.height);
        match &device_input {
            Some(x) => self.engine.forward_device_tensor(x, &mut disparity.data)?,
            None => self.engine.forward_planar(&input, &mut disparity.data)?,
        }
        if device_input.is_none() {
            self.pool.put(input);
        }
        if let Some(hook) = self.adapt.as_mut() {
            hook.after_frame(&frame, &resized)?;
        }
        Ok(DepthFrame { frame, resized, disparity })
    }
}

/// The CUDA preprocessing for an engine on `device`, when feature `cuda` is on and the kernels
/// load; otherwise None (with a printed warning when CUDA was expected but failed), and the CPU
/// path runs.
#[cfg(feature = "cuda")]
fn gpu_preprocess_for(
    device: tch::Device,
    size: (u32, u32),
    normalisation: ([f32; 3], [f32; 3]),
) -> Option<gpu_preprocess::GpuPreprocess> {
    let tch::Device::Cuda(ordinal) = device else {
        return None;
    };
    match gpu_preprocess::GpuPreprocess::new(ordinal, size, normalisation) {
        Ok(gpu) => Some(gpu),
        Err(e) => {
            tracing::warn!(
                "warning: CUDA preprocessing unavailable ({e}); using the CPU preprocessing"
            );
            None
        }
    }
}

/// The `outputs` sink: writes what the config's `[outputs]` asks for into its folder.
pub struct OutputSink {
    outputs: OutputsConfig,
    /// Intrinsics of the source's frames where the frames don't carry their own.
    camera: Option<Intrinsics>,
    min_depth: f32,
    max_depth: f32,
    fps: f64,
    video: Option<Mp4Writer>,
    metrics_csv: Option<MetricsCsvWriter>,
    accumulator: MetricsAccumulator,
    protocol: EvalProtocol,
    frames: u64,
    /// The Foxglove live view and MCAP recording, when asked for.
    telemetry: Option<Telemetry>,
}

impl OutputSink {
    /// A sink writing into `outputs.dir` (created if missing).
    pub fn new(
        outputs: OutputsConfig,
        min_depth: f32,
        max_depth: f32,
        fps: f64,
        protocol: EvalProtocol,
        camera: Option<Intrinsics>,
    ) -> crate::Result<Self> {
        let field = "outputs.dir (--out)";
        create_output_dir(&outputs.dir, field)?;
        for (wanted, sub) in [
            (outputs.depth_png, "depth"),
            (outputs.colour_png, "colour"),
            (outputs.pointcloud_every > 0, "pointcloud"),
        ] {
            if wanted {
                create_output_dir(&outputs.dir.join(sub), field)?;
            }
        }
        let telemetry_options = TelemetryOptions {
            foxglove: outputs.foxglove.clone(),
            mcap: outputs.mcap.clone(),
            points_stride: 2,
        };
        let telemetry = if telemetry_options.enabled() {
            let telemetry = Telemetry::start(&telemetry_options)?;
            if let Some(port) = telemetry.foxglove_port() {
                tracing::info!(
                    "foxglove: live view on ws://{}:{port} (Foxglove: Open connection → \
                     Foxglove WebSocket)",
                    outputs
                        .foxglove
                        .as_deref()
                        .and_then(|a| a.rsplit_once(':'))
                        .map_or("", |(h, _)| h)
                );
            }
            Some(telemetry)
        } else {
            None
        };
        Ok(Self {
            telemetry,
            outputs,
            camera,
            min_depth,
            max_depth,
            fps,
            video: None,
            metrics_csv: None,
            accumulator: MetricsAccumulator::new(),
            protocol,
            frames: 0,
        })
    }

    /// Per-frame metrics gathered so far (frames with ground truth only).
    pub fn metrics(&self) -> &MetricsAccumulator {
        &self.accumulator
    }

    fn path(&self, sub: &str, index: u64, ext: &str) -> PathBuf {
        self.outputs.dir.join(sub).join(format!("{index:06}.{ext}"))
    }

    fn write_video_frame(
        &mut self,
        resized: &RgbImage,
        colour: &RgbImage,
        t: f64,
    ) -> crate::Result<()> {
        let (w, h) = (resized.width, resized.height);
        if self.video.is_none() {
            let path = self.outputs.dir.join("depth.mp4");
            // Crash-safe: a killed run leaves a playable depth video up to its last second.
            self.video = Some(Mp4Writer::create_recording(&path, w, h * 2, self.fps)?);
        }
        // The input above, its colourised depth below.
        let mut stacked = RgbImage::new(w, h * 2);
        let half = resized.data.len();
        stacked.data[..half].copy_from_slice(&resized.data);
        stacked.data[half..].copy_from_slice(&colour.data);
        if let Some(video) = self.video.as_mut() {
            video.push(&stacked, t)?;
        }
        Ok(())
    }

    fn consume_frame(&mut self, item: DepthFrame) -> crate::Result<()> {
        let DepthFrame { frame, resized, disparity } = item;
        let index = frame.index;
        let depth: DepthMap = disparity.to_depth(self.min_depth, self.max_depth);
        let needs_colour =
            self.outputs.colour_png || self.outputs.video || self.telemetry.is_some();
        let colour = needs_colour.then(|| colourise_depth(&depth));
        if self.outputs.depth_png {
            write_depth_png(&self.path("depth", index, "png"), &depth)?;
        }
        if let Some(colour) = &colour {
            if self.outputs.colour_png {
                write_rgb_png(&self.path("colour", index, "png"), colour)?;
            }
            if self.outputs.video {
                self.write_video_frame(&resized, colour, frame.timestamp)?;
            }
        }
        let every = self.outputs.pointcloud_every as u64;
        let intrinsics = frame.intrinsics.as_ref().or(self.camera.as_ref());
        if let (true, Some(k)) = (every > 0 && index % every == 0, intrinsics) {
            write_ply(&self.path("pointcloud", index, "ply"), &depth, k, Some(&resized))?;
        }
        if let (Some(telemetry), Some(colour)) = (self.telemetry.as_mut(), &colour) {
            telemetry.offer(TelemetryFrame {
                index,
                timestamp: frame.timestamp,
                image: resized.clone(),
                depth: depth.clone(),
                colour: colour.clone(),
                intrinsics: frame.intrinsics.or(self.camera),
            });
        }
        if self.outputs.metrics && frame.gt_depth.is_some() {
            let metrics = score_disparity(&disparity, &frame, &self.protocol)?;
            if self.metrics_csv.is_none() {
                let path = self.outputs.dir.join("metrics.csv");
                self.metrics_csv = Some(MetricsCsvWriter::create(
                    &path,
                    &["frame", "abs_rel", "sq_rel", "rmse", "rmse_log", "a1", "a2", "a3", "scale"],
                )?);
            }
            if let Some(csv) = self.metrics_csv.as_mut() {
                let v = metrics.values();
                csv.write_row(&[
                    index as f64,
                    v[0],
                    v[1],
                    v[2],
                    v[3],
                    v[4],
                    v[5],
                    v[6],
                    metrics.scale_ratio,
                ])?;
            }
            self.accumulator.push(index, metrics);
        }
        self.frames += 1;
        Ok(())
    }
}

impl Sink<DepthFrame> for OutputSink {
    fn consume(&mut self, item: DepthFrame) -> Result<(), StageError> {
        Ok(self.consume_frame(item)?)
    }

    fn finish(&mut self) -> Result<(), StageError> {
        if let Some(video) = self.video.take() {
            video.finish()?;
        }
        if let Some(csv) = self.metrics_csv.take() {
            csv.finish()?;
        }
        if let Some(mut telemetry) = self.telemetry.take() {
            let report = telemetry.finish()?;
            tracing::info!(
                "foxglove/mcap: {} frames published, {} dropped from telemetry (its thread fell \
                 behind){}",
                report.frames,
                report.dropped,
                report.mcap.map_or(String::new(), |p| format!("; recorded {}", p.display()))
            );
        }
        Ok(())
    }
}

/// Finds a model: the explicit one, the config's, or none (with an error saying what to do).
fn resolve_model(options: &LiveOptions) -> crate::Result<PathBuf> {
    options.model.clone().or_else(|| options.config.network.model.clone()).ok_or_else(|| {
        crate::Error::Other(
            "no depth model: pass --model DIR (a folder with encoder.pth + depth.pth, or a \
             .safetensors file) or set network.model in the config"
                .into(),
        )
    })
}

/// Runs the live path until the source ends, Ctrl-C, or an error; returns the pipeline report
/// (also saved as `run_report.json` in the output folder).
pub fn run_live(options: &LiveOptions) -> crate::Result<RunReport> {
    let config = &options.config;
    let model = resolve_model(options)?;
    let arch = config.network.arch;
    let (width, height) = (config.network.width, config.network.height);
    let opened = open_depth_engine(&EngineRequest {
        kind: config.network.engine,
        model: &model,
        arch,
        width,
        height,
        threads: config.network.threads,
    })?;
    tracing::info!("engine: {}", opened.choice);
    let (backend, engine_choice, engine) = (opened.backend, opened.choice, opened.engine);
    let (mean, std) = engine.input_normalisation();
    let preprocessor = Preprocessor::new(width, height, mean, std)?;
    let pool = BufferPool::new(config.pipeline.queue_size + 4, preprocessor.output_len());

    let uri = config.source.resolved_uri();
    let gst_options = GstOptions {
        live: config.source.live,
        timeout: config.source.stall_timeout(),
        ..GstOptions::default()
    };
    let mut source: Box<dyn Source> = if config.source.reconnect_enabled() {
        let policy = ReconnectPolicy {
            give_up_after: config.source.reconnect_give_up_s.map(Duration::from_secs_f64),
            ..ReconnectPolicy::default()
        };
        Box::new(ReconnectingSource::open(&uri, gst_options, policy)?)
    } else {
        crate::source::open(&uri, &gst_options, FrameSelection::all())?
    };
    if let Some(limit) = options.max_frames {
        source = Box::new(crate::source::Limited::new(source, limit));
    }
    let fps = config.source.fps.unwrap_or(30.0);
    let sink = OutputSink::new(
        config.outputs.clone(),
        config.network.min_depth as f32,
        config.network.max_depth as f32,
        fps,
        protocol_for(&uri, config.network.max_depth),
        config.intrinsics(),
    )?;
    let mut adapter_thread = None;
    let adapt = match &options.adapt {
        Some(adapt_options) => {
            let camera = config.camera.as_ref().map(|c| c.intrinsics()).unwrap_or_else(|| {
                // No calibration: a generic 60-degree-wide pinhole at the network size.
                Intrinsics {
                    fx: 0.87 * width as f64,
                    fy: 0.87 * width as f64,
                    cx: width as f64 / 2.0 - 0.5,
                    cy: height as f64 / 2.0 - 0.5,
                    width,
                    height,
                    distortion: None,
                }
            });
            let (publisher, receiver) = weights_exchange();
            let (frames, frames_rx) = crossbeam_channel::bounded(2);
            let adapt_options = adapt_options.clone();
            let on_failure = adapt_options.on_failure;
            let model = model.clone();
            let failure = Arc::new(OnceLock::new());
            let failure_slot = Arc::clone(&failure);
            adapter_thread = Some(
                std::thread::Builder::new()
                    .name("adapt".into())
                    .spawn(move || -> crate::Result<AdaptStats> {
                        if !lower_thread_priority() {
                            tracing::warn!(
                                "adapt: could not lower the adaptation thread's priority"
                            );
                        }
                        let result = build_adapter(&model, arch, &adapt_options, default_device())
                            .and_then(|adapter| {
                                run_adapter_thread(adapter, publisher, frames_rx, 2.0)
                            });
                        if let Err(e) = &result {
                            // Shown at once, not when the source ends (possibly hours later).
                            tracing::error!("adapt: FAILED: {e}");
                            let _ = failure_slot.set(e.to_string());
                        }
                        result
                    })
                    .map_err(|e| {
                        crate::Error::Other(format!("cannot start the adapt thread: {e}"))
                    })?,
            );
            Some(LiveAdaptHook {
                receiver,
                frames,
                camera,
                offered_but_dropped: 0,
                failure,
                on_failure,
                failure_shown: None,
            })
        }
        None => None,
    };
    let preprocess = PreprocessStage {
        #[cfg(feature = "cuda")]
        gpu: engine
            .torch_device()
            .and_then(|device| gpu_preprocess_for(device, (width, height), (mean, std))),
        preprocessor,
        pool: pool.clone(),
    };
    let preprocess_path = preprocess.path();
    let swaps = Arc::new(Mutex::new(WeightSwapStats::default()));
    let report = Pipeline::new(source, config.pipeline.options())?
        .stage(preprocess_path.stage_name(), preprocess)
        .stage("depth", DepthStage { engine, pool, adapt, swaps: Arc::clone(&swaps) })
        .sink("outputs", sink)
        .run();
    // The depth stage (and with it the frame sender) is gone: the adapter finishes, publishes
    // and checkpoints once more, then ends.
    let adapted = adapter_thread.map(|handle| {
        handle.join().map_err(|_| crate::Error::Other("the adapt thread panicked".into()))?
    });
    if let Some(Ok(stats)) = &adapted {
        write_summary_json(&config.outputs.dir.join(ADAPT_REPORT_FILE), stats)?;
    }
    let report = report?;
    write_summary_json(
        &config.outputs.dir.join("run_report.json"),
        &LiveRunReport {
            pipeline: &report,
            preprocess_path,
            engine: backend,
            engine_choice,
            weight_swaps: swaps.lock().map(|s| s.clone()).unwrap_or_default(),
        },
    )?;
    // The live outputs are complete; a failed adaptation still makes the run fail.
    if let Some(Err(e)) = adapted {
        return Err(crate::Error::Other(format!(
            "adaptation failed: {e} (live depth ran to the end with the last published weights; \
             see --adapt-on-failure)"
        )));
    }
    Ok(report)
}

/// The output folder's files, for printing after a run.
pub fn describe_outputs(dir: &Path) -> Vec<String> {
    ["depth.mp4", "depth", "colour", "pointcloud", "metrics.csv", "run_report.json"]
        .iter()
        .map(|name| dir.join(name))
        .filter(|p| p.exists())
        .map(|p| p.display().to_string())
        .collect()
}
