//! `livedepth run`: wires the live path's stages ([`crate::stages`]) for a config: the source
//! (reconnecting where the config asks), `preprocess`, `depth` with the engine `--engine` names
//! (and, with `--adapt`, the adapter thread and the hook that installs its weights between
//! frames), and the `outputs` sink; then writes `run_report.json` (pipeline statistics, which
//! preprocessing and which engine ran, how adapted weights reached the engine, and the live
//! speed input's figures with `--speed-key`).

use crate::adapt::{AdaptStats, WeightsReceiver, weights_exchange};
use crate::app::adapt::{AdaptFailurePolicy, AdaptFrame, build_adapter, run_adapter_thread};
use crate::app::adapt_share::{AdapterPulse, StarvationGuard};
use crate::app::fleet::FleetShare;
use crate::app::fleet_merges::{MergeInstaller, spawn_merge_installer};
use crate::app::gyro::{GyroSource, Orientations};
use crate::app::gyro_bag::{ImuTopic, read_track};
use crate::app::gyro_live::{LiveGyroReport, LiveOrientations, OrientationInput};
use crate::app::priority::{AdaptPriority, run_at_lowest_priority};
use crate::app::replay::ADAPT_REPORT_FILE;
use crate::camera::Intrinsics;
use crate::config::Config;
use crate::engine::camera_motion::PoseEngineMotion;
use crate::engine::{
    EngineKind, EngineRequest, LiveDepthEngine, Preprocessor, WeightSwapStats, default_device,
    open_depth_engine,
};
use crate::eval::EvalProtocol;
use crate::frame::{Frame, RgbImage};
use crate::pipeline::{Pipeline, RunReport, StageError};
use crate::scale::live_speed::{LiveSpeed, LiveSpeedReport};
use crate::scale::speed::Odometry;
use crate::scale::{MetricScale, ScaleSummary};
use crate::sink::metrics::write_summary_json;
use crate::source::Source;
use crate::source::dataset::{DatasetKind, FrameSelection};
use crate::source::gst::GstOptions;
use crate::source::reconnect::{ReconnectPolicy, ReconnectingSource};
#[cfg(feature = "cuda")]
use crate::stages::gpu_preprocess_for;
use crate::stages::{
    BufferPool, DepthStage, FrameHook, OutputSink, PreprocessPath, PreprocessStage,
};
use crossbeam_channel::Sender;
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
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
    /// The metric scale source's figures (`--metric-scale`), when one was active.
    #[serde(skip_serializing_if = "Option::is_none")]
    metric_scale: Option<ScaleSummary>,
    /// The live speed input's figures (`--speed-key`).
    #[serde(skip_serializing_if = "Option::is_none")]
    speed_input: Option<LiveSpeedReport>,
    /// The live orientation input's figures (`--gyro zenoh:KEY`).
    #[serde(skip_serializing_if = "Option::is_none")]
    gyro_input: Option<LiveGyroReport>,
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
    /// `--metric-scale speed`: the odometry read for every frame (metres travelled).
    odometry: Option<Odometry>,
    /// `--gyro`: the camera's orientation, read for each frame.
    orientations: Option<OrientationInput>,
    /// Yields to the adapter while it starves (`--adapt-min-share`).
    starvation: StarvationGuard,
    /// When the current frame's forward pass started.
    forward_started: Option<Instant>,
}

impl Drop for LiveAdaptHook {
    fn drop(&mut self) {
        if self.starvation.spells > 0 {
            tracing::info!(
                "adapt: the depth stage yielded {:.1} s to the starving adapter in {} spells \
                 (--adapt-min-share)",
                self.starvation.yielded.as_secs_f64(),
                self.starvation.spells
            );
        }
    }
}

/// How often a live run repeats that its adaptation failed.
const FAILURE_REMINDER: Duration = Duration::from_secs(2);

impl FrameHook for LiveAdaptHook {
    /// Installs adapted weights when some wait; true when new ones went live.
    fn before_frame(&mut self, engine: &mut LiveDepthEngine) -> Result<bool, StageError> {
        let refreshed = engine.refresh_weights(&self.receiver)?;
        self.forward_started = Some(Instant::now());
        Ok(refreshed)
    }

    /// Offers the frame to the adapter; once the adapter has failed, shows the failure (at once,
    /// then every [`FAILURE_REMINDER`]) and, under [`AdaptFailurePolicy::Stop`], stops the run.
    /// While the adapter starves, it then yields the CPU ([`StarvationGuard`]).
    fn after_frame(&mut self, frame: &Frame, resized: &RgbImage) -> Result<(), StageError> {
        if let Some(started) = self.forward_started.take() {
            let now = Instant::now();
            let pause = self.starvation.yield_after(now.saturating_duration_since(started), now);
            if !pause.is_zero() {
                std::thread::sleep(pause);
            }
        }
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
        // Read for every frame, also those the adapter is too busy to take: the odometer
        // integrates the whole path.
        let odometer = match self.odometry.as_mut() {
            Some(odometry) => odometry.reading(frame, "the source")?,
            None => None,
        };
        // Looked up for every frame too, so that a gyro file that ends early stops the run at
        // the same frame whatever the adapter is doing.
        let orientation = match self.orientations.as_mut() {
            Some(input) => input.read(frame)?,
            None => None,
        };
        // The adapter is busy with earlier frames: skip the copy of this one.
        if self.frames.is_full() {
            self.offered_but_dropped += 1;
            return Ok(());
        }
        let offer = AdaptFrame {
            index: frame.index,
            resized: resized.clone(),
            camera,
            odometer,
            orientation,
        };
        if self.frames.try_send(offer).is_err() {
            self.offered_but_dropped += 1;
        }
        Ok(())
    }
}

/// The live side of `--zenoh-pull-weights` without `--adapt`: installs the fleet's merges
/// between frames, never waiting.
struct MergeInstallHook {
    receiver: WeightsReceiver,
}

impl FrameHook for MergeInstallHook {
    fn before_frame(&mut self, engine: &mut LiveDepthEngine) -> Result<bool, StageError> {
        Ok(engine.refresh_weights(&self.receiver)?)
    }

    fn after_frame(&mut self, _frame: &Frame, _resized: &RgbImage) -> Result<(), StageError> {
        Ok(())
    }
}

/// Tells a helper thread to stop when dropped, also when the run ends early with an error.
struct StopOnDrop(Arc<AtomicBool>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Release);
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
    let metric_scale = MetricScale::from_flags(
        &config.network.metric_scale,
        config.network.camera_height,
        config.network.speed_file.as_deref(),
        config.network.speed_key.as_deref(),
    )
    .map_err(crate::Error::Other)?;
    // `speed` reads the odometry for every frame up front, so a bad sidecar fails at start. A
    // live key is subscribed to once the outputs' Zenoh session is open.
    let speed_key = match &metric_scale {
        MetricScale::Speed { speed_key, .. } => speed_key.clone(),
        _ => None,
    };
    let mut odometry = match &metric_scale {
        MetricScale::Speed { speed_key: Some(_), .. } if options.adapt.is_some() => None,
        MetricScale::Speed { speed_file, .. } if options.adapt.is_some() => {
            Some(Odometry::open(speed_file.as_deref()).map_err(crate::Error::Other)?)
        }
        MetricScale::Speed { .. } => {
            return Err(crate::Error::Other(crate::scale::speed::NEEDS_ADAPT.into()));
        }
        _ => None,
    };
    let scale_summary = Arc::new(Mutex::new(None));
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
    // A recording with `[source] fps` plays at that rate, as its camera delivered it.
    if let (Some(fps), false) = (config.source.fps, source.is_live()) {
        source = Box::new(crate::source::paced::Paced::new(source, fps));
    }
    let fps = config.source.fps.unwrap_or(30.0);
    let sink = OutputSink::new(
        config.outputs.clone(),
        config.network.min_depth as f32,
        config.network.max_depth as f32,
        fps,
        protocol_for(&uri, config.network.max_depth),
        config.intrinsics(),
    )?
    .with_metric_scale(metric_scale, Arc::clone(&scale_summary));
    if sink.has_telemetry() {
        publish_camera_pose(&sink, options, &model)?;
    }
    let (mut speed_stats, mut gyro_stats) = (None, None);
    if let Some(key) = speed_key {
        let session = sink.zenoh_session().ok_or_else(|| {
            crate::Error::Other(format!(
                "--speed-key {key}: needs a Zenoh session to read it on: add --zenoh (or an \
                 [outputs.zenoh] table)"
            ))
        })?;
        let live = LiveSpeed::subscribe_at_start(&session, &key).map_err(crate::Error::Other)?;
        speed_stats = Some(live.stats());
        odometry = Some(Odometry::Live(live));
    }
    // With a live view or recording, its status messages carry the per-stage statistics and
    // the adaptation status.
    let status_board = sink.status_board();
    let mut adapter_thread = None;
    let adapt = match &options.adapt {
        Some(adapt_options) => {
            // A gyro file is read and checked before anything starts.
            let orientations = match &adapt_options.gyro {
                Some(GyroSource::Zenoh(key)) => {
                    let session = sink.zenoh_session().ok_or_else(|| {
                        crate::Error::Other(format!(
                            "--gyro zenoh:{key}: needs a Zenoh session to read it on: add \
                             --zenoh (or an [outputs.zenoh] table)"
                        ))
                    })?;
                    let live = LiveOrientations::subscribe_at_start(&session, key)
                        .map_err(crate::Error::Other)?;
                    gyro_stats = Some(live.stats());
                    Some(OrientationInput::Live(live))
                }
                Some(GyroSource::Bag(spec)) => {
                    let imu = ImuTopic::parse(spec)
                        .map_err(|e| crate::Error::Other(format!("--gyro mcap:{spec}: {e}")))?;
                    Some(OrientationInput::Recorded(read_track(&uri, &imu)?))
                }
                Some(source) => Some(OrientationInput::Recorded(Orientations::open(source)?)),
                None => None,
            };
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
            let board = status_board.clone();
            let zenoh = sink.zenoh_session().zip(config.outputs.zenoh.clone());
            let shared_scale = sink.shared_scale();
            let priority = AdaptPriority::from_env()?;
            let pulse = AdapterPulse::new();
            let starvation = StarvationGuard::new(pulse.clone(), adapt_options.min_share)?;
            adapter_thread = Some(
                std::thread::Builder::new()
                    .name("adapt".into())
                    .spawn(move || -> crate::Result<AdaptStats> {
                        // Ended, failed or panicked: it wants no more CPU, so the live path
                        // never yields to it again.
                        let _ended = pulse.ended_on_drop();
                        let result = run_at_lowest_priority(priority, || {
                            let adapter =
                                build_adapter(&model, arch, &adapt_options, default_device())?;
                            // With Zenoh, the adapted weights are shared with the fleet.
                            let fleet = zenoh
                                .map(|(session, z)| FleetShare::new(session, &z, adapter.student()))
                                .transpose()?;
                            run_adapter_thread(
                                adapter,
                                &pulse,
                                publisher,
                                frames_rx,
                                2.0,
                                board,
                                fleet,
                                shared_scale,
                            )
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
            Some(Box::new(LiveAdaptHook {
                receiver,
                frames,
                camera,
                offered_but_dropped: 0,
                failure,
                on_failure,
                failure_shown: None,
                odometry,
                orientations,
                starvation,
                forward_started: None,
            }) as Box<dyn FrameHook>)
        }
        None => None,
    };
    // Without adaptation, `--zenoh-pull-weights` installs the fleet's merges in the engine.
    let pull_stop = StopOnDrop(Arc::new(AtomicBool::new(false)));
    let mut merge_installer = None;
    let adapt = match (adapt, sink.zenoh_session(), &config.outputs.zenoh) {
        (None, Some(session), Some(zenoh)) if zenoh.pull_weights => {
            let (publisher, receiver) = weights_exchange();
            let installer = MergeInstaller {
                session,
                fleet: zenoh.fleet.clone(),
                model: model.clone(),
                arch,
                device: default_device(),
                publisher,
            };
            merge_installer = Some(spawn_merge_installer(installer, Arc::clone(&pull_stop.0))?);
            Some(Box::new(MergeInstallHook { receiver }) as Box<dyn FrameHook>)
        }
        (adapt, ..) => adapt,
    };
    let preprocess = PreprocessStage::new(
        preprocessor,
        pool.clone(),
        #[cfg(feature = "cuda")]
        engine
            .torch_device()
            .and_then(|device| gpu_preprocess_for(device, (width, height), (mean, std))),
    );
    let preprocess_path = preprocess.path();
    let swaps = Arc::new(Mutex::new(WeightSwapStats::default()));
    let mut pipeline_options = config.pipeline.options();
    pipeline_options.status_board = status_board;
    let report = Pipeline::new(source, pipeline_options)?
        .stage(preprocess_path.stage_name(), preprocess)
        .stage("depth", DepthStage::new(engine, pool, adapt, Arc::clone(&swaps)))
        .sink("outputs", sink)
        .run();
    // The depth stage (and with it the frame sender) is gone: the adapter finishes, publishes
    // and checkpoints once more, then ends.
    drop(pull_stop);
    if let Some(handle) = merge_installer {
        let installed = handle
            .join()
            .map_err(|_| crate::Error::Other("the fleet-pull thread panicked".into()))??;
        tracing::info!("fleet: {installed} merges handed to the live engine");
    }
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
            metric_scale: scale_summary.lock().ok().and_then(|s| s.clone()),
            speed_input: speed_stats.map(|stats| stats.report()),
            gyro_input: gyro_stats.map(|stats| stats.report()),
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

/// Puts the camera's pose on the live view's `/tf`, from the pose network of `--adapt
/// --pose-model`, else of a trained model folder; without either, says how to get one.
fn publish_camera_pose(
    sink: &OutputSink,
    options: &LiveOptions,
    model: &Path,
) -> crate::Result<()> {
    let named = options.adapt.as_ref().and_then(|a| a.pose_model.as_deref());
    let Some(path) = crate::app::adapt::pose_model_for(named, model)? else {
        tracing::info!(
            "camera pose: no pose network, so no /tf (use a trained model folder, or --adapt \
             --pose-model DIR)"
        );
        return Ok(());
    };
    let network = &options.config.network;
    let engine = crate::engine::TorchPoseEngine::load(
        &path,
        network.arch.companion_pose(),
        network.width,
        network.height,
        default_device(),
    )?;
    sink.set_camera_motion(Box::new(PoseEngineMotion::new(engine)));
    tracing::info!("camera pose: /tf (odom → camera) from the pose network {}", path.display());
    Ok(())
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
