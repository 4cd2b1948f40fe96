//! The `--adapt` modes of `eval` and `run`: building an [`Adapter`] from the command line
//! (start model, pose network, checkpoint, resume), the deterministic lock-step evaluation
//! (each frame predicted with the current weights and scored, then S steps), and the
//! asynchronous adapter thread that runs beside the live path.

use crate::adapt::metric::AdapterScale;
use crate::adapt::{AdaptConfig, AdaptStats, Adapter, NetFrame, StepOutcome, WeightsPublisher};
use crate::app::adapt_diagnostics::AdaptDiagnostics;
use crate::app::adapt_scale::LockStepScale;
use crate::app::adapt_share::AdapterPulse;
use crate::app::eval::{EvalOptions, EvalReport, FrameRow};
use crate::camera::Intrinsics;
use crate::engine::{Disparity, Preprocessor, default_device};
use crate::eval::{EvalError, EvalProtocol, FrameMetrics, MetricsAccumulator};
use crate::eval::{score_disparity, score_disparity_scaled};
use crate::frame::Frame;
use crate::model::network::{DepthNetwork, PoseNetwork};
use crate::model::{Arch, ModelError};
use crate::pipeline::StatusBoard;
use crate::scale::SharedScale;
use crate::source::dataset::open_dataset;
use crossbeam_channel::{Receiver, TryRecvError};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use tch::{Device, Tensor};

/// How the pose network starts when no pose weights are given.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PoseInit {
    /// Freshly initialised.
    Random,
    /// Encoder copied from the depth encoder (first convolution split over both frames).
    DepthEncoder,
}

impl std::str::FromStr for PoseInit {
    type Err = crate::Error;
    fn from_str(s: &str) -> crate::Result<Self> {
        match s {
            "random" => Ok(Self::Random),
            "encoder" | "depth-encoder" => Ok(Self::DepthEncoder),
            _ => Err(crate::Error::Other(format!(
                "--pose-init: expected random or encoder, got `{s}`"
            ))),
        }
    }
}

/// What a live run does when its adaptation thread fails (a checkpoint that cannot be written,
/// a libtorch error): either way the failure is printed at once, the live status shows it and the
/// run exits non-zero at the end.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum AdaptFailurePolicy {
    /// Live depth goes on with the last published weights (a camera keeps serving depth).
    #[default]
    Continue,
    /// The run stops.
    Stop,
}

impl std::str::FromStr for AdaptFailurePolicy {
    type Err = crate::Error;
    fn from_str(s: &str) -> crate::Result<Self> {
        match s {
            "continue" => Ok(Self::Continue),
            "stop" => Ok(Self::Stop),
            other => Err(crate::Error::Other(format!(
                "--adapt-on-failure: expected continue or stop, got `{other}`"
            ))),
        }
    }
}

/// What `--adapt` adds to `eval` and `run`.
#[derive(Clone, Debug)]
pub struct AdaptOptions {
    pub config: AdaptConfig,
    /// Pose weights (pose_encoder.pth + pose.pth folder, or safetensors); else `pose_init`.
    pub pose_model: Option<PathBuf>,
    pub pose_init: PoseInit,
    /// Checkpoint file (every `checkpoint_every` steps and at the end).
    pub checkpoint: Option<PathBuf>,
    /// Continue from this checkpoint.
    pub resume: Option<PathBuf>,
    /// Print a status line every this many frames (0 = never).
    pub print_every: usize,
    /// Lock-step only: write the per-frame diagnosis CSV here (adapted, frozen and served
    /// abs_rel, the guard's fresh-triplet scores against the ground-truth motion).
    pub diagnose: Option<PathBuf>,
    /// The camera's orientation per frame (`--gyro`), where the pose refinement starts its
    /// rotations ([`crate::app::gyro`]).
    pub gyro: Option<crate::app::gyro::GyroSource>,
    /// Live runs only: what happens when the adaptation thread fails.
    pub on_failure: AdaptFailurePolicy,
    /// Live runs only: the share of the time the live path yields to a starving adapter
    /// ([`crate::app::adapt_share`]; 0: never).
    pub min_share: f64,
}

impl Default for AdaptOptions {
    fn default() -> Self {
        Self {
            config: AdaptConfig::default(),
            pose_model: None,
            pose_init: PoseInit::DepthEncoder,
            checkpoint: None,
            resume: None,
            print_every: 25,
            diagnose: None,
            gyro: None,
            on_failure: AdaptFailurePolicy::Continue,
            min_share: crate::app::adapt_share::DEFAULT_MIN_SHARE,
        }
    }
}

/// Copies the depth encoder into the pose encoder where shapes allow; the first convolution
/// (3 input channels there, 6 here) gets the depth weights halved on both frames.
pub fn init_pose_from_depth_encoder(
    pose: &mut PoseNetwork,
    depth: &DepthNetwork,
) -> Result<usize, ModelError> {
    let depth_vars = depth.var_store().variables();
    let mut copied = 0;
    tch::no_grad(|| -> Result<(), ModelError> {
        for (name, mut var) in pose.var_store().variables() {
            let Some(rest) = name.strip_prefix("pose_encoder.") else { continue };
            let Some(src) = depth_vars.get(&format!("encoder.{rest}")) else { continue };
            let (dst_shape, src_shape) = (var.size(), src.size());
            if dst_shape == src_shape {
                var.f_copy_(src)?;
                copied += 1;
            } else if dst_shape.len() == 4
                && src_shape.len() == 4
                && dst_shape[1] == 2 * src_shape[1]
                && dst_shape[0] == src_shape[0]
            {
                var.f_copy_(&(Tensor::f_cat(&[src, src], 1)? * 0.5))?;
                copied += 1;
            }
        }
        Ok(())
    })?;
    Ok(copied)
}

/// The pose network that goes with a depth model: the one named (`--pose-model`), else the one
/// a training output folder carries, else none.
pub fn pose_model_for(
    named: Option<&std::path::Path>,
    model: &std::path::Path,
) -> crate::Result<Option<std::path::PathBuf>> {
    Ok(match named {
        Some(path) => Some(path.to_path_buf()),
        None if crate::train::TrainedModel::is_trained_dir(model) => {
            Some(crate::train::TrainedModel::open(model)?.pose)
        }
        None => None,
    })
}

/// The adapter for a start model: the student from `model`, the companion pose network from
/// `options`, checkpointing and resume applied.
pub fn build_adapter(
    model: &std::path::Path,
    arch: Arch,
    options: &AdaptOptions,
    device: Device,
) -> crate::Result<Adapter> {
    let student = DepthNetwork::load(model, arch, device)?;
    let pose_arch = arch.companion_pose();
    tch::manual_seed(options.config.pose_init_seed.unwrap_or(options.config.seed) as i64);
    let pose = match pose_model_for(options.pose_model.as_deref(), model)?.as_ref() {
        Some(path) => {
            tracing::info!("adapt: pose network from {}", path.display());
            PoseNetwork::load(path, pose_arch, device)?
        }
        None => {
            // Fresh layers are drawn on the CPU whatever the device, so that a seed starts from
            // the same weights on a GPU as on the CPU: the CUDA generator draws other numbers,
            // and on the first GPU runs seeds 0 and 2 started with their translation reversed.
            let mut drawn = PoseNetwork::new(pose_arch, Device::Cpu);
            if options.pose_init == PoseInit::DepthEncoder {
                init_pose_from_depth_encoder(&mut drawn, &student)?;
            }
            if device == Device::Cpu {
                drawn
            } else {
                let mut pose = PoseNetwork::new(pose_arch, device);
                pose.copy_weights_from(&drawn)?;
                pose
            }
        }
    };
    let mut adapter = Adapter::new(options.config.clone(), student, pose)?;
    tracing::info!("adapt: networks on {device:?}, loss on {}", adapter.loss_backend());
    if let Some(path) = &options.checkpoint {
        if path.is_dir() {
            return Err(crate::Error::Other(format!(
                "--checkpoint {}: expected a file path (e.g. adapt.safetensors), but it is a \
                 folder",
                path.display()
            )));
        }
        // A run killed while checkpointing (SIGKILL, a second Ctrl-C) leaves its temporary
        // file beside the checkpoint; only such files of processes that are gone are removed.
        let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
        crate::tempfiles::sweep_stale_and_tell(dir);
        adapter = adapter.with_checkpoint(path);
    }
    if let Some(path) = &options.resume {
        adapter.resume(path)?;
    }
    Ok(adapter)
}

/// Rows of the network input that `eval --adapt` uses when no size is given.
pub const DEFAULT_ADAPT_HEIGHT: u32 = 96;

/// The network input size `eval --adapt` uses when no size is given: 96 rows, and the width that
/// keeps the camera's aspect, rounded to a multiple of 32 (128x96 for a 4:3 camera, 320x96 for
/// KITTI's 1242x375). Small inputs adapt best: the KITTI network scores best indoors at 128x96
/// frozen, and the adaptation defaults were chosen at that size (docs/adapt.md).
pub fn default_adapt_size(camera_width: u32, camera_height: u32) -> (u32, u32) {
    let aspect = f64::from(camera_width.max(1)) / f64::from(camera_height.max(1));
    let width = (aspect * f64::from(DEFAULT_ADAPT_HEIGHT) / 32.0).round().max(1.0) as u32 * 32;
    (width, DEFAULT_ADAPT_HEIGHT)
}

/// One status line: steps/s, loss parts, masked fraction, publishes, rollbacks, guards.
pub fn status_line(stats: &AdaptStats, steps_per_second: f64) -> String {
    format!(
        "adapt: {} steps ({:.2}/s) loss {:.4} (photo {:.4} smooth {:.5} distill {:.4} on {:.0}%) \
         masked {:.0}% drift {:.4} k {} | serving {} (loss ratio {:.3}, deviation {:.3}, {} switches) | published {} \
         rollbacks {} rejected {} stationary {}",
        stats.steps,
        steps_per_second,
        stats.last_total,
        stats.last_photometric,
        stats.last_smoothness,
        stats.last_distill,
        100.0 * stats.last_distill_fraction,
        100.0 * stats.last_masked_fraction,
        stats.last_anchor_drift,
        stats.fresh.k,
        stats.serving,
        stats.serve_ratio,
        stats.serve_deviation,
        stats.serve_switches,
        stats.published,
        stats.rollbacks,
        stats.rejected,
        stats.skipped_stationary
    )
}

/// One scored frame of a lock-step run, as [`evaluate_adapt_with`]'s callback sees it.
pub struct LockStepFrame<'a> {
    /// Position in the run (0 = first frame).
    pub position: usize,
    /// The dataset frame (RGB, ground truth, intrinsics).
    pub frame: &'a Frame,
    /// The prediction at the network size, made before any step saw this frame.
    pub disparity: &'a Disparity,
    pub metrics: &'a FrameMetrics,
}

/// Deterministic lock-step evaluation with adaptation: frames in order; each is first predicted
/// with the served weights and scored, then fed to the adapter, which takes `steps_per_frame`
/// steps. One thread of control, so one seed gives the same numbers.
pub fn evaluate_adapt(
    options: &EvalOptions,
    adapt: &AdaptOptions,
) -> crate::Result<(EvalReport, AdaptStats)> {
    evaluate_adapt_with(options, adapt, |_| Ok(()))
}

/// [`evaluate_adapt`], handing every scored frame to `on_frame` (before the adapter sees it),
/// e.g. to draw the prediction.
pub fn evaluate_adapt_with(
    options: &EvalOptions,
    adapt: &AdaptOptions,
    mut on_frame: impl FnMut(LockStepFrame<'_>) -> crate::Result<()>,
) -> crate::Result<(EvalReport, AdaptStats)> {
    let dataset = open_dataset(&options.dataset).map_err(crate::source::SourceError::from)?;
    let indices =
        options.selection.indices(dataset.len()).map_err(crate::source::SourceError::from)?;
    let mut protocol = EvalProtocol::for_dataset(dataset.kind());
    protocol.median_scaling &= !options.no_median_scaling;
    let mut adapter = build_adapter(&options.model, options.arch, adapt, default_device())?;
    let (mean, std) = options.arch.normalisation();
    let mut preprocessor = Preprocessor::new(options.width, options.height, mean, std)?;
    let mut accumulator = MetricsAccumulator::new();
    let started = Instant::now();
    let steps_at_start = adapter.stats().steps;
    let mut diagnostics = adapt.diagnose.as_deref().map(AdaptDiagnostics::create).transpose()?;
    let mut metric = LockStepScale::new(&options.metric_scale)?;
    let orientations = adapt.gyro.as_ref().map(crate::app::gyro::Orientations::open).transpose()?;
    for (position, &index) in indices.iter().enumerate() {
        let frame = dataset.frame(index).map_err(crate::source::SourceError::from)?;
        let camera = frame.intrinsics.ok_or_else(|| {
            crate::Error::Other(format!(
                "{}: frame {index} has no intrinsics; adaptation needs the camera matrix",
                dataset.name()
            ))
        })?;
        let resized = preprocessor.resize(&frame.rgb)?;
        let mut net_frame = NetFrame::from_resized(position as u64, resized, &camera);
        net_frame.odometer = metric.odometer(&frame, position as u64, dataset.name())?;
        if let Some(orientations) = &orientations {
            net_frame.orientation = Some(orientations.at(&frame, dataset.name())?);
        }
        let data = adapter.predict(&net_frame)?;
        let disparity = Disparity::from_data(options.width, options.height, data);
        let serving = adapter.stats().serving;
        let scale = metric.scale_for(&disparity, &frame, serving, (0.1, 100.0))?;
        let metrics =
            score_disparity_scaled(&disparity, &frame, &protocol, scale.map_or(1.0, |e| e.scale))?;
        accumulator.push(position as u64, metrics);
        on_frame(LockStepFrame {
            position,
            frame: &frame,
            disparity: &disparity,
            metrics: &metrics,
        })?;
        // The diagnosis scores the adapted and the frozen weights before the steps, as served.
        let diagnosed = match diagnostics.is_some() {
            true => {
                let (adapted, frozen) = adapter.predict_adapted_and_frozen(&net_frame)?;
                let score = |data| {
                    score_disparity(
                        &Disparity::from_data(options.width, options.height, data),
                        &frame,
                        &protocol,
                    )
                };
                Some((score(adapted)?, score(frozen)?))
            }
            false => None,
        };
        if adapter.observe(net_frame) {
            for _ in 0..adapt.config.steps_per_frame {
                adapter.step()?;
            }
        }
        metric.after_steps(adapter.stats());
        if let (Some(d), Some((adapted, frozen))) = (diagnostics.as_mut(), &diagnosed) {
            d.record(position, &frame, &metrics, adapted, frozen, adapter.stats())?;
        }
        if adapt.print_every > 0 && (position + 1) % adapt.print_every == 0 {
            let rate = (adapter.stats().steps - steps_at_start) as f64
                / started.elapsed().as_secs_f64().max(1e-9);
            tracing::info!(
                "[frame {}/{}] abs_rel {:.4} | {}",
                position + 1,
                indices.len(),
                metrics_abs_rel(&accumulator),
                status_line(adapter.stats(), rate)
            );
        }
    }
    adapter.finish()?;
    if let Some(d) = diagnostics {
        d.finish()?;
    }
    let mean = accumulator.mean().ok_or(EvalError::NoFrames)?;
    let per_frame = accumulator
        .rows()
        .iter()
        .map(|&(position, metrics)| FrameRow {
            frame: indices.get(position as usize).copied().unwrap_or(position as usize),
            metrics,
        })
        .collect();
    let mut report = EvalReport::new(options, protocol, mean, per_frame);
    report.metric_scale = metric.summary();
    if let Some(path) = &options.json {
        crate::sink::metrics::write_summary_json(
            path,
            &AdaptEvalJson { report: &report, adapt: adapter.stats(), config: &adapt.config },
        )?;
    }
    if let Some(path) = &options.plot {
        crate::app::eval::write_per_frame_plot(path, &report)?;
    }
    Ok((report, adapter.stats().clone()))
}

#[derive(serde::Serialize)]
struct AdaptEvalJson<'a> {
    #[serde(flatten)]
    report: &'a EvalReport,
    adapt: &'a AdaptStats,
    config: &'a AdaptConfig,
}

fn metrics_abs_rel(acc: &MetricsAccumulator) -> f64 {
    acc.mean().map(|m| m.abs_rel).unwrap_or(f64::NAN)
}

/// Mean abs_rel of the report's frames per window of `window` frames (by position).
pub fn windowed_abs_rel(report: &EvalReport, window: usize) -> Vec<(usize, usize, f64)> {
    let window = window.max(1);
    report
        .per_frame
        .chunks(window)
        .map(|rows| {
            let mean = rows.iter().map(|r| r.metrics.abs_rel).sum::<f64>() / rows.len() as f64;
            (rows[0].frame, rows[rows.len() - 1].frame, mean)
        })
        .collect()
}

/// A frame for the asynchronous adapter: the image at the network size and its camera.
pub struct AdaptFrame {
    pub index: u64,
    pub resized: crate::frame::RgbImage,
    pub camera: Intrinsics,
    /// Metres travelled up to this frame (`--metric-scale speed`).
    pub odometer: Option<f64>,
    /// The camera's orientation at this frame (`--gyro`).
    pub orientation: Option<nalgebra::UnitQuaternion<f64>>,
}

/// How often the adapter thread posts its status on a status board.
const BOARD_EVERY: Duration = Duration::from_millis(500);

/// Accepted steps per second over `running`.
fn steps_per_second(stats: &AdaptStats, running: Duration) -> f64 {
    stats.steps as f64 / running.as_secs_f64().max(1e-9)
}

/// The adaptation status for a live view: every [`AdaptStats`] field, plus steps per second.
pub fn adapt_status(stats: &AdaptStats, running: Duration) -> serde_json::Value {
    let rate = steps_per_second(stats, running);
    let mut value = serde_json::to_value(stats).unwrap_or(serde_json::Value::Null);
    if let Some(map) = value.as_object_mut() {
        map.insert("steps_per_s".into(), serde_json::json!(rate));
    }
    value
}

/// Runs the adapter until `frames` disconnects: drains the newest frames (never making the
/// sender wait: it uses `try_send` on a bounded channel), then steps as fast as it can,
/// publishing through `publisher`; a final publish and checkpoint at the end. Prints a status
/// line every `print_every_s` seconds. It tells `pulse` when it waits for frames and when it
/// got a step done, so that the live path can yield to it when it starves.
#[allow(clippy::too_many_arguments)]
pub fn run_adapter_thread(
    mut adapter: Adapter,
    pulse: &AdapterPulse,
    publisher: WeightsPublisher,
    frames: Receiver<AdaptFrame>,
    print_every_s: f64,
    board: Option<StatusBoard>,
    mut fleet: Option<crate::app::fleet::FleetShare>,
    metric: Option<SharedScale>,
) -> crate::Result<AdaptStats> {
    // `--metric-scale speed`: the scale the outputs use comes from the fresh triplets.
    let mut scale = metric.as_ref().map(|_| AdapterScale::new());
    adapter = adapter.with_publisher(publisher);
    // Built: that counts as getting something done.
    pulse.progressed();
    let started = Instant::now();
    let mut last_print = Instant::now();
    let mut last_post = Instant::now();
    if let Some(board) = &board {
        // Ready: the live view shows adaptation from now on, before the first step.
        board.set_adapt(adapt_status(adapter.stats(), Duration::ZERO));
    }
    let mut open = true;
    while open {
        // Take every frame waiting; block only when there is nothing to train on.
        loop {
            let next = if adapter.has_live() {
                frames.try_recv()
            } else {
                pulse.waiting();
                let next = frames.recv().map_err(|_| TryRecvError::Disconnected);
                pulse.working();
                next
            };
            match next {
                Ok(f) => {
                    let mut frame = NetFrame::from_resized(f.index, &f.resized, &f.camera);
                    frame.odometer = f.odometer;
                    frame.orientation = f.orientation;
                    if let (Some(scale), Some(odometer)) = (scale.as_mut(), f.odometer) {
                        scale.record(f.index, odometer);
                    }
                    adapter.observe(frame);
                }
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => {
                    open = false;
                    break;
                }
            }
        }
        if open {
            let outcome = adapter.step()?;
            pulse.progressed();
            if let Some(StepOutcome::Rejected(reason)) = outcome {
                tracing::info!("adapt: step rejected: {reason}");
            }
        }
        if let (Some(scale), Some(shared)) = (scale.as_mut(), &metric)
            && scale.after_steps(adapter.stats())
        {
            shared.set(scale.current(adapter.stats().serving));
        }
        if let Some(fleet) = fleet.as_mut() {
            fleet.adopt_merge(&mut adapter);
            fleet.maybe_share(&adapter, false);
        }
        if let Some(board) = &board
            && last_post.elapsed() >= BOARD_EVERY
        {
            board.set_adapt(adapt_status(adapter.stats(), started.elapsed()));
            last_post = Instant::now();
        }
        if print_every_s > 0.0 && last_print.elapsed().as_secs_f64() >= print_every_s {
            let rate = steps_per_second(adapter.stats(), started.elapsed());
            tracing::info!("{}", status_line(adapter.stats(), rate));
            last_print = Instant::now();
        }
    }
    if let Some(fleet) = fleet.as_mut() {
        // A merge that arrived during the last step still counts.
        fleet.adopt_merge(&mut adapter);
    }
    adapter.finish()?;
    if let Some(fleet) = fleet.as_mut() {
        fleet.maybe_share(&adapter, true);
    }
    if let Some(board) = &board {
        board.set_adapt(adapt_status(adapter.stats(), started.elapsed()));
    }
    let rate = steps_per_second(adapter.stats(), started.elapsed());
    tracing::info!("{} (final)", status_line(adapter.stats(), rate));
    Ok(adapter.stats().clone())
}
