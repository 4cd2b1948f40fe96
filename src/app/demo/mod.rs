//! `livedepth demo` (what `make demo` runs), self-contained: renders a synthetic drive through a
//! scene variant the committed base model (models/base_WxH, trained on other seeds and the
//! default scene style) never saw, encodes it to H.264 mp4 through GStreamer, replays the mp4
//! through the GStreamer source and the live pipeline with depth AND online adaptation
//! (colourised video, depth PNGs, point clouds), then scores the frozen and the adapted model in
//! deterministic lock-step ([`evaluate_adapt`] with 0 and S steps per frame, same frames)
//! against the drive's exact depth, and writes a report (JSON + printed table) and an SVG plot
//! of abs_rel over time, adapted vs frozen.

use crate::adapt::{AdaptConfig, AdaptLayers, AdaptStats};
use crate::app::adapt::{AdaptOptions, PoseInit, evaluate_adapt};
use crate::app::eval::{EvalOptions, EvalReport};
use crate::app::live::{LiveOptions, describe_outputs, run_live};
use crate::config::{
    CameraConfig, Config, NetworkConfig, OutputsConfig, PipelineConfig, QueuePolicy, SourceConfig,
};
use crate::model::Arch;
use crate::sink::plot::{Series, write_line_plot};
use crate::sink::video::Mp4Writer;
use crate::source::dataset::FrameSelection;
use crate::synth::{RenderConfig, Renderer, SceneConfig, TrajectoryKind, write_dataset_with};
use crate::train::TrainedModel;
use serde::Serialize;
use std::path::{Path, PathBuf};

/// The committed base model's folder, relative to the repository root.
pub const BASE_MODEL_DIR: &str = "models/base_320x96";

/// The demo's settings.
#[derive(Clone, Debug)]
pub struct DemoOptions {
    /// Folder for everything the demo writes.
    pub out: PathBuf,
    /// Frames of the synthetic drive.
    pub frames: usize,
    /// Scene seed (a street the model never saw: the base model trained on seeds 101..=112).
    pub seed: u64,
    /// Depth model: a `livedepth train` folder, a Monodepth2-format folder (encoder.pth +
    /// depth.pth) or a safetensors file; the first of [`default_model_candidates`] when `None`.
    pub model: Option<PathBuf>,
    /// Adaptation steps per frame S of the lock-step comparison.
    pub steps_per_frame: usize,
    /// Also run the live GStreamer replay with asynchronous adaptation (the lock-step report
    /// does not depend on it).
    pub live: bool,
    /// libtorch intra-op threads (`None` leaves libtorch's default; 1 is fastest on a busy
    /// 2-core machine).
    pub threads: Option<usize>,
}

impl Default for DemoOptions {
    fn default() -> Self {
        Self {
            out: PathBuf::from("out/demo"),
            frames: 120,
            seed: 2026,
            model: None,
            steps_per_frame: 2,
            live: true,
            threads: Some(1),
        }
    }
}

/// Where the demo looks for a model when none is given: the committed base model (relative to
/// the current folder, then to this source tree).
pub fn default_model_candidates() -> Vec<PathBuf> {
    vec![PathBuf::from(BASE_MODEL_DIR), Path::new(env!("CARGO_MANIFEST_DIR")).join(BASE_MODEL_DIR)]
}

/// A depth model as the demo uses it.
#[derive(Clone, Debug, Serialize)]
pub struct DemoModel {
    /// What the user named (folder or file).
    pub path: PathBuf,
    /// Depth weights (folder or safetensors file).
    pub depth: PathBuf,
    /// Pose weights, when the model has them (a `livedepth train` folder).
    pub pose: Option<PathBuf>,
    #[serde(serialize_with = "serialize_arch")]
    pub arch: Arch,
    pub width: u32,
    pub height: u32,
}

fn serialize_arch<S: serde::Serializer>(arch: &Arch, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(arch.name())
}

/// Resolves a model path: a `livedepth train` folder (sidecar gives architecture, input size,
/// depth and pose files), a Monodepth2-format folder (input size from its encoder.pth, else
/// 640x192; RT-MonoDepth-S) or a safetensors depth file (640x192, RT-MonoDepth-S).
pub fn resolve_model(path: &Path) -> crate::Result<DemoModel> {
    if TrainedModel::is_trained_dir(path) {
        let trained = TrainedModel::open(path)?;
        return Ok(DemoModel {
            path: path.to_path_buf(),
            depth: trained.depth,
            pose: Some(trained.pose),
            arch: trained.sidecar.arch()?,
            width: trained.sidecar.width,
            height: trained.sidecar.height,
        });
    }
    if !path.exists() {
        return Err(crate::Error::Other(format!(
            "{}: no such model (expected a `livedepth train` folder with train.json, a folder \
             with encoder.pth + depth.pth, or a .safetensors file)",
            path.display()
        )));
    }
    let (width, height) = if path.is_dir() {
        crate::model::trained_input_size(path)?.unwrap_or((640, 192))
    } else {
        (640, 192)
    };
    Ok(DemoModel {
        path: path.to_path_buf(),
        depth: path.to_path_buf(),
        pose: None,
        arch: Arch::RtMonoDepthS,
        width,
        height,
    })
}

/// The demo's scene: a street style the base model never saw (low evening sun from the other
/// side, darker ambient, fewer facades and more clutter, stronger bends, oncoming traffic, a
/// faster drive) at the KITTI-like 640x192.
pub fn demo_render_config(frames: usize, seed: u64) -> RenderConfig {
    RenderConfig {
        frames,
        seed,
        trajectory: TrajectoryKind::Car,
        speed_mps: 10.0,
        stops: false,
        scene: SceneConfig {
            curviness: 1.5,
            building_fraction: 0.35,
            boxes_per_100m: 14.0,
            pole_spacing_m: 18.0,
            moving_objects: 2,
            sun_azimuth_deg: 250.0,
            sun_elevation_deg: 28.0,
            ambient: 0.35,
            ..SceneConfig::default()
        },
        ..RenderConfig::default()
    }
}

/// One window of the abs_rel-over-time comparison.
#[derive(Clone, Debug, Serialize)]
pub struct WindowRow {
    pub first_frame: usize,
    pub last_frame: usize,
    pub frozen_abs_rel: f64,
    pub adapted_abs_rel: f64,
}

/// The demo report (written as `report.json`).
#[derive(Clone, Debug, Serialize)]
pub struct DemoReport {
    pub video: PathBuf,
    pub dataset: PathBuf,
    pub model: DemoModel,
    pub scene: RenderConfig,
    pub steps_per_frame: usize,
    pub adapt_config: AdaptConfig,
    /// Lock-step, 0 steps per frame.
    pub frozen: EvalReport,
    /// Lock-step, `steps_per_frame` steps per frame, same frames.
    pub adapted: EvalReport,
    pub adapt_stats: AdaptStats,
    pub windows: Vec<WindowRow>,
    /// Frames delivered by the live replay with adaptation (0 when skipped).
    pub live_frames: u64,
    pub report_json: PathBuf,
    pub plot: PathBuf,
    pub outputs: Vec<String>,
}

impl DemoReport {
    /// The two-row table of the seven metrics, frozen vs adapted, plus the relative change.
    pub fn table(&self) -> String {
        const NAMES: [&str; 7] = ["abs_rel", "sq_rel", "rmse", "rmse_log", "a1", "a2", "a3"];
        let mut s = format!("{:>9} |", "");
        for n in NAMES {
            s += &format!(" {n:>8} |");
        }
        s.pop();
        s.push('\n');
        for (label, report) in [("frozen", &self.frozen), ("adapted", &self.adapted)] {
            s += &format!("{label:>9} |");
            for v in report.values() {
                s += &format!(" {v:>8.3} |");
            }
            s.pop();
            s.push('\n');
        }
        s
    }
}

fn live_config(
    video: &Path,
    out: &Path,
    model: &DemoModel,
    renderer: &Renderer,
    fps: f64,
) -> crate::Result<Config> {
    let config = Config {
        source: SourceConfig {
            uri: format!("file://{}", video.display()),
            live: Some(false),
            fps: Some(fps),
        },
        camera: Some(CameraConfig::pinhole(&renderer.intrinsics())),
        network: NetworkConfig::new(
            model.arch,
            model.width,
            model.height,
            Some(model.depth.clone()),
        ),
        pipeline: PipelineConfig {
            queue_size: 4,
            policy: QueuePolicy::Lossless,
            stats_interval_s: 2.0,
        },
        outputs: OutputsConfig {
            dir: out.to_path_buf(),
            depth_png: true,
            colour_png: true,
            video: true,
            pointcloud_every: 25,
            metrics: false,
        },
    };
    config.validate(Path::new("<demo>"))?;
    Ok(config)
}

/// The demo's adaptation: the adapter's defaults, but only the decoder adapts (on two unseen
/// demo scenes this beat adapting all layers: abs_rel 0.196 vs 0.209 and 0.185 vs 0.193; see
/// docs/adapt.md).
fn adapt_options(model: &DemoModel, steps_per_frame: usize) -> AdaptOptions {
    let config = AdaptConfig {
        steps_per_frame,
        seed: 7,
        layers: AdaptLayers::Decoder,
        ..AdaptConfig::default()
    };
    AdaptOptions {
        config,
        pose_model: model.pose.clone(),
        pose_init: PoseInit::DepthEncoder,
        checkpoint: None,
        resume: None,
        print_every: 20,
    }
}

/// Runs the demo.
pub fn run_demo(options: &DemoOptions) -> crate::Result<DemoReport> {
    let model_path = match &options.model {
        Some(model) => model.clone(),
        None => default_model_candidates().into_iter().find(|p| p.exists()).ok_or_else(|| {
            crate::Error::Other(format!(
                "no depth model: {BASE_MODEL_DIR} is missing (run `make base-model`, or pass \
                 --model DIR)"
            ))
        })?,
    };
    let model = resolve_model(&model_path)?;
    if let Some(threads) = options.threads {
        tch::set_num_threads(threads.max(1) as i32);
    }
    if options.frames < 8 {
        return Err(crate::Error::Other(format!(
            "demo --frames: expected at least 8 frames, got {}",
            options.frames
        )));
    }
    let out = &options.out;
    std::fs::create_dir_all(out).map_err(|e| crate::Error::io(out, e))?;
    let out = out.canonicalize().map_err(|e| crate::Error::io(out, e))?;
    let render = demo_render_config(options.frames, options.seed);
    let renderer = Renderer::new(&render)?;
    let dataset = out.join("drive");
    let video_path = out.join("drive.mp4");
    let stages = if options.live { 4 } else { 3 };

    eprintln!(
        "[1/{stages}] rendering a {}-frame synthetic drive through an unseen scene (seed {}) into \
         {} and encoding {}",
        render.frames,
        render.seed,
        dataset.display(),
        video_path.display()
    );
    let mut video = Mp4Writer::create(&video_path, render.width, render.height, render.fps)?;
    write_dataset_with(&renderer, &dataset, true, |frame| {
        video.push(&frame.rgb, frame.timestamp)?;
        Ok::<(), crate::Error>(())
    })?;
    video.finish()?;

    let adapt = adapt_options(&model, options.steps_per_frame);
    let live_dir = out.join("live");
    let mut live_frames = 0;
    if options.live {
        eprintln!(
            "[2/{stages}] live depth + online adaptation: replaying {} through GStreamer with {}",
            video_path.display(),
            model.path.display()
        );
        let config = live_config(&video_path, &live_dir, &model, &renderer, render.fps)?;
        let report = run_live(&LiveOptions {
            config,
            model: None,
            max_frames: None,
            adapt: Some(adapt.clone()),
        })?;
        live_frames = report.frames_delivered;
    }

    let eval_options = |json: &str| EvalOptions {
        dataset: format!("kitti:{}", dataset.display()),
        model: model.depth.clone(),
        arch: model.arch,
        width: model.width,
        height: model.height,
        selection: FrameSelection::all(),
        no_median_scaling: false,
        json: Some(out.join(json)),
        plot: None,
        progress: false,
    };
    eprintln!("[{}/{stages}] lock-step evaluation, frozen (0 steps per frame)", stages - 1);
    let frozen_adapt = AdaptOptions {
        config: AdaptConfig { steps_per_frame: 0, ..adapt.config.clone() },
        print_every: 0,
        ..adapt.clone()
    };
    let (frozen, _) = evaluate_adapt(&eval_options("eval_frozen.json"), &frozen_adapt)?;
    eprintln!(
        "[{stages}/{stages}] lock-step evaluation, adapted ({} steps per frame, same frames)",
        options.steps_per_frame
    );
    let (adapted, adapt_stats) = evaluate_adapt(&eval_options("eval_adapted.json"), &adapt)?;

    let window = (options.frames / 6).max(1);
    let windows = frozen
        .per_frame
        .chunks(window)
        .zip(adapted.per_frame.chunks(window))
        .map(|(f, a)| WindowRow {
            first_frame: f[0].frame,
            last_frame: f[f.len() - 1].frame,
            frozen_abs_rel: f.iter().map(|r| r.metrics.abs_rel).sum::<f64>() / f.len() as f64,
            adapted_abs_rel: a.iter().map(|r| r.metrics.abs_rel).sum::<f64>() / a.len() as f64,
        })
        .collect();
    let plot = out.join("abs_rel_over_time.svg");
    let rolling = |report: &EvalReport| -> Vec<(f64, f64)> {
        let values: Vec<f64> = report.per_frame.iter().map(|r| r.metrics.abs_rel).collect();
        (0..values.len())
            .map(|i| {
                let lo = i.saturating_sub(9);
                let mean = values[lo..=i].iter().sum::<f64>() / (i + 1 - lo) as f64;
                (report.per_frame[i].frame as f64, mean)
            })
            .collect()
    };
    let per_frame = |report: &EvalReport| -> Vec<(f64, f64)> {
        report.per_frame.iter().map(|r| (r.frame as f64, r.metrics.abs_rel)).collect()
    };
    write_line_plot(
        &plot,
        &format!("abs_rel over time, {} on an unseen synthetic drive", model.path.display()),
        "frame",
        "abs_rel",
        &[
            Series { name: "frozen".into(), points: per_frame(&frozen) },
            Series { name: "adapted".into(), points: per_frame(&adapted) },
            Series { name: "frozen (10-frame mean)".into(), points: rolling(&frozen) },
            Series { name: "adapted (10-frame mean)".into(), points: rolling(&adapted) },
        ],
    )?;
    let report_json = out.join("report.json");
    let mut outputs = if options.live { describe_outputs(&live_dir) } else { Vec::new() };
    for name in ["eval_frozen.json", "eval_adapted.json"] {
        outputs.push(out.join(name).display().to_string());
    }
    outputs.push(plot.display().to_string());
    outputs.push(report_json.display().to_string());
    let report = DemoReport {
        video: video_path,
        dataset,
        model,
        scene: render,
        steps_per_frame: options.steps_per_frame,
        adapt_config: adapt.config,
        frozen,
        adapted,
        adapt_stats,
        windows,
        live_frames,
        report_json: report_json.clone(),
        plot,
        outputs,
    };
    crate::sink::metrics::write_summary_json(&report_json, &report)?;
    Ok(report)
}
