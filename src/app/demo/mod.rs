//! `livedepth demo` (what `make demo` runs), self-contained, one job per file:
//! - [`scene`]: the scene, encoded to an H.264 mp4 as a camera would record it: the real
//!   hand-held kitchen recording that nothing was tuned on (`../shared/data/kitchen_val`) with
//!   the real KITTI model where `../shared` is present, else a synthetic drive ([`drive`])
//!   through a street style the committed base model (models/base_WxH) never saw;
//! - [`live`]: replay the mp4 at the camera's frame rate, paced by the GStreamer clock, into the
//!   live path with depth outputs AND online adaptation on its own thread (adaptation happens
//!   while the video plays; steps and delivered fps are reported);
//! - the frozen and the adapted model are scored in deterministic lock-step
//!   ([`evaluate_adapt_with`] with 0 and S steps per frame, same frames) against the scene's
//!   ground-truth depth;
//! - [`comparison`]: from those two runs, `side_by_side.mp4`: [input | frozen depth | adapted
//!   depth] with abs_rel over time drawn below;
//! - [`report`]: `report.json`, the printed table and the SVG plot of abs_rel over time.
//!
//! [`model`] finds and resolves the depth model.

pub mod comparison;
pub mod drive;
pub mod live;
pub mod model;
pub mod report;
pub mod scene;

pub use drive::demo_render_config;
pub use live::LiveReplay;
pub use model::{BASE_MODEL_DIR, DemoModel, find_existing, find_model, resolve_model};
pub use report::{DemoReport, WindowRow};
pub use scene::{DemoScene, RECORDED_MODEL_DIR, RECORDED_SCENE_DIR, SceneChoice};

use crate::adapt::{AdaptConfig, AdaptLayers};
use crate::app::adapt::{AdaptOptions, PoseInit, default_adapt_size, evaluate_adapt_with};
use crate::app::eval::EvalOptions;
use crate::app::live::describe_outputs;
use crate::scale::MetricScale;
use crate::source::dataset::FrameSelection;
use comparison::{ComparisonVideo, FrozenTrack};
use std::path::{Path, PathBuf};

/// The demo's settings.
#[derive(Clone, Debug)]
pub struct DemoOptions {
    /// Folder for everything the demo writes.
    pub out: PathBuf,
    /// What to replay: the real recording where present, else the synthetic drive.
    pub scene: SceneChoice,
    /// Frames: the whole recording, or 120 frames of synthetic drive, when `None`.
    pub frames: Option<usize>,
    /// Synthetic scene seed (a street the model never saw: the base model trained on seeds
    /// 101..=112).
    pub seed: u64,
    /// Depth model: a `livedepth train` folder, a Monodepth2-format folder (encoder.pth +
    /// depth.pth) or a safetensors file. When `None`: the KITTI RT-MonoDepth-S for the recorded
    /// scene, the committed base model ([`BASE_MODEL_DIR`]) for the synthetic one.
    pub model: Option<PathBuf>,
    /// Adaptation steps per frame S of the lock-step comparison (the adaptation default for the
    /// recorded scene, 2 for the synthetic one, when `None`).
    pub steps_per_frame: Option<usize>,
    /// Also run the live GStreamer replay with asynchronous adaptation (the lock-step report
    /// does not depend on it).
    pub live: bool,
    /// libtorch intra-op threads (`None` leaves libtorch's default; 1 is fastest on a busy
    /// 2-core machine).
    pub threads: Option<usize>,
    /// The live replay's depth backend.
    pub engine: crate::engine::EngineKind,
}

impl Default for DemoOptions {
    fn default() -> Self {
        Self {
            out: PathBuf::from("out/demo"),
            scene: SceneChoice::Auto,
            frames: None,
            seed: 2026,
            model: None,
            steps_per_frame: None,
            live: true,
            threads: Some(1),
            engine: crate::engine::EngineKind::Torch,
        }
    }
}

/// Frames of the synthetic drive when none are asked for.
const SYNTHETIC_FRAMES: usize = 120;

/// The synthetic demo's adaptation: the adapter's defaults, but only the decoder adapts and
/// 2 steps per frame (on two unseen demo scenes adapting the decoder beat adapting all layers:
/// abs_rel 0.196 vs 0.209 and 0.185 vs 0.193; see docs/adapt.md).
fn synthetic_adapt_options(model: &DemoModel, steps_per_frame: Option<usize>) -> AdaptOptions {
    // Spacing k from image motion (1..4, which takes k = 1 for this 10 fps car) scored abs_rel
    // -5.6 % / rmse +5.9 % against -3.7 % / +1.6 % with the default k = 6.
    let config = AdaptConfig {
        steps_per_frame: steps_per_frame.unwrap_or(2),
        seed: 7,
        layers: AdaptLayers::Decoder,
        ..AdaptConfig::default()
    };
    AdaptOptions {
        config,
        pose_model: model.pose.clone(),
        pose_init: PoseInit::DepthEncoder,
        print_every: 20,
        ..AdaptOptions::default()
    }
}

/// The recorded demo's adaptation: exactly what `eval --adapt` and `run --adapt` do without
/// flags (so the demo reproduces the documented figures), steps per frame aside.
fn recorded_adapt_options(model: &DemoModel, steps_per_frame: Option<usize>) -> AdaptOptions {
    let defaults = AdaptConfig::default();
    let config = AdaptConfig {
        steps_per_frame: steps_per_frame.unwrap_or(defaults.steps_per_frame),
        ..defaults
    };
    AdaptOptions { config, pose_model: model.pose.clone(), print_every: 50, ..Default::default() }
}

/// The scene the user asked for, encoded into `out`, and the model that runs on it.
fn prepare(options: &DemoOptions, out: &Path) -> crate::Result<(DemoScene, DemoModel)> {
    // The recorded scene's model: the one asked for, else the shared KITTI model.
    let recorded_model = || options.model.clone().or_else(|| find_existing(RECORDED_MODEL_DIR));
    let recorded = match &options.scene {
        SceneChoice::Synthetic => None,
        SceneChoice::Recorded(dir) => Some(dir.clone()),
        SceneChoice::Auto => match (find_existing(RECORDED_SCENE_DIR), recorded_model()) {
            (Some(dir), Some(_)) => Some(dir),
            _ => {
                tracing::info!(
                    "demo: {RECORDED_SCENE_DIR} or {RECORDED_MODEL_DIR} is absent, so the demo \
                     renders a synthetic drive instead of replaying the real recording"
                );
                None
            }
        },
    };
    match recorded {
        Some(dir) => {
            let path = recorded_model().ok_or_else(|| {
                crate::Error::Other(format!(
                    "demo: the recorded scene's model {RECORDED_MODEL_DIR} is missing (pass \
                     --model DIR, or --scene synthetic)"
                ))
            })?;
            let model = resolve_model(&path)?;
            tracing::info!(
                "[1/{}] encoding {} as a camera would record it",
                stages(options),
                dir.display()
            );
            let scene = scene::recorded_scene(out, &dir, options.frames)?;
            // The adaptation's default input size for this camera, as `eval --adapt` uses.
            let (width, height) = default_adapt_size(scene.width, scene.height);
            Ok((scene, DemoModel { width, height, ..model }))
        }
        None => {
            let model = find_model(options.model.as_deref())?;
            let frames = options.frames.unwrap_or(SYNTHETIC_FRAMES);
            tracing::info!(
                "[1/{}] rendering a {frames}-frame synthetic drive through an unseen scene (seed \
                 {}) and encoding it",
                stages(options),
                options.seed
            );
            Ok((scene::synthetic_scene(out, frames, options.seed)?, model))
        }
    }
}

fn stages(options: &DemoOptions) -> usize {
    if options.live { 5 } else { 4 }
}

/// Runs the demo.
pub fn run_demo(options: &DemoOptions) -> crate::Result<DemoReport> {
    if let Some(threads) = options.threads {
        tch::set_num_threads(threads.max(1) as i32);
    }
    if options.frames.is_some_and(|f| f < 8) {
        return Err(crate::Error::Other(format!(
            "demo --frames: expected at least 8 frames, got {}",
            options.frames.unwrap_or_default()
        )));
    }
    let out = &options.out;
    crate::tempfiles::create_output_dir(out, "demo --out")?;
    let out = out.canonicalize().map_err(|e| crate::Error::io(out, e))?;
    let (scene, model) = prepare(options, &out)?;
    let stages = stages(options);
    let adapt = match scene.kind {
        "recorded" => recorded_adapt_options(&model, options.steps_per_frame),
        _ => synthetic_adapt_options(&model, options.steps_per_frame),
    };
    let steps_per_frame = adapt.config.steps_per_frame;

    let live_dir = out.join("live");
    let live = if options.live {
        tracing::info!(
            "[2/{stages}] live depth + online adaptation: replaying {} at the camera's {:.0} fps \
             through GStreamer (paced) with {} at {}x{}",
            scene.video.display(),
            scene.fps,
            model.path.display(),
            model.width,
            model.height
        );
        let replay = live::run_live_replay(&scene, &live_dir, &model, &adapt, options.engine)?;
        tracing::info!("{}", replay.summary());
        Some(replay)
    } else {
        None
    };

    let eval_options = |json: &str| EvalOptions {
        dataset: scene.dataset_spec.clone(),
        model: model.depth.clone(),
        arch: model.arch,
        width: model.width,
        height: model.height,
        selection: FrameSelection { start: 0, end: Some(scene.frames), step: 1 },
        no_median_scaling: false,
        json: Some(out.join(json)),
        plot: None,
        progress: false,
        engine: crate::engine::EngineKind::Torch,
        metric_scale: Default::default(),
    };
    tracing::info!("[{}/{stages}] lock-step evaluation, frozen (0 steps per frame)", stages - 2);
    let frozen_adapt = AdaptOptions {
        config: AdaptConfig { steps_per_frame: 0, ..adapt.config.clone() },
        print_every: 0,
        ..adapt.clone()
    };
    let mut track = FrozenTrack::default();
    let (frozen, _) = evaluate_adapt_with(&eval_options("eval_frozen.json"), &frozen_adapt, |f| {
        track.record(&f)
    })?;
    let side_by_side = out.join("side_by_side.mp4");
    tracing::info!(
        "[{}/{stages}] lock-step evaluation, adapted ({steps_per_frame} steps per frame, same \
         frames), drawing {}",
        stages - 1,
        side_by_side.display()
    );
    let column = (scene.width, scene.height);
    let mut video = ComparisonVideo::create(
        &side_by_side,
        column,
        scene.fps,
        track,
        &scene.input_label,
        steps_per_frame,
    )?;
    let (adapted, adapt_stats) =
        evaluate_adapt_with(&eval_options("eval_adapted.json"), &adapt, |f| video.push(&f))?;
    video.finish()?;
    // Metres without ground truth: the same adaptation with the speed scale source (the
    // odometer is the path through the frames' ground-truth positions, standing in for the
    // vehicle's odometry or a visual-inertial one), scored without median scaling.
    tracing::info!(
        "[{stages}/{stages}] lock-step evaluation in metres (--metric-scale speed, no median \
         scaling, same frames)"
    );
    let metric_options = EvalOptions {
        no_median_scaling: true,
        metric_scale: MetricScale::Speed { speed_file: None, speed_key: None },
        ..eval_options("eval_metric.json")
    };
    let (metric, _) = evaluate_adapt_with(&metric_options, &adapt, |_| Ok(()))?;

    let windows = report::windows(&frozen, &adapted, scene.window);
    let plot = out.join("abs_rel_over_time.svg");
    report::write_abs_rel_plot(&plot, &model.path, &scene.description, &frozen, &adapted)?;
    let report_json = out.join("report.json");
    let mut outputs = if options.live { describe_outputs(&live_dir) } else { Vec::new() };
    for name in ["eval_frozen.json", "eval_adapted.json", "eval_metric.json"] {
        outputs.push(out.join(name).display().to_string());
    }
    for path in [&side_by_side, &plot, &report_json] {
        outputs.push(path.display().to_string());
    }
    let report = DemoReport {
        video: scene.video.clone(),
        dataset: scene.dataset.clone(),
        model,
        scene,
        steps_per_frame,
        adapt_config: adapt.config,
        frozen,
        adapted,
        metric,
        adapt_stats,
        windows,
        live,
        side_by_side,
        report_json: report_json.clone(),
        plot,
        outputs,
    };
    crate::sink::metrics::write_summary_json(&report_json, &report)?;
    Ok(report)
}
