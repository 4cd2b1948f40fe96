//! `livedepth demo` (what `make demo` runs): renders a synthetic drive with exact ground truth,
//! encodes it to H.264 mp4 through GStreamer, replays the mp4 through the GStreamer source and the
//! live pipeline with depth (per-stage statistics live, colourised video, depth PNGs, point
//! clouds), then scores the model against the drive's exact depth with the standard metrics.

use crate::app::eval::{EvalOptions, EvalReport, evaluate};
use crate::app::live::{LiveOptions, describe_outputs, run_live};
use crate::config::Config;
use crate::model::Arch;
use crate::sink::video::Mp4Writer;
use crate::source::dataset::FrameSelection;
use crate::synth::{RenderConfig, Renderer, write_dataset_with};
use std::path::{Path, PathBuf};

/// The demo's settings.
#[derive(Clone, Debug)]
pub struct DemoOptions {
    /// Folder for everything the demo writes.
    pub out: PathBuf,
    /// Frames of the synthetic drive.
    pub frames: usize,
    /// Scene seed (a street the model never saw).
    pub seed: u64,
    /// Depth model; the first of [`default_model_candidates`] that exists when `None`.
    pub model: Option<PathBuf>,
}

/// Where the demo looks for a model when none is given: the KITTI-trained RT-MonoDepth-S in
/// `../shared` beside the repository.
pub fn default_model_candidates() -> Vec<PathBuf> {
    vec![PathBuf::from("../shared/models/rtmonodepth_s/m_640x192")]
}

/// What the demo did.
#[derive(Debug)]
pub struct DemoReport {
    pub video: PathBuf,
    pub dataset: PathBuf,
    /// The model used, or `None` when no model was found (the demo then stops after rendering).
    pub model: Option<PathBuf>,
    pub eval: Option<EvalReport>,
    pub outputs: Vec<String>,
}

fn live_config(
    video: &Path,
    out: &Path,
    model: &Path,
    renderer: &Renderer,
    fps: f64,
) -> crate::Result<Config> {
    let k = renderer.intrinsics();
    let text = format!(
        r#"
[source]
uri = "file://{video}"
live = false
fps = {fps}

[camera]
fx = {fx}
fy = {fy}
cx = {cx}
cy = {cy}
width = {w}
height = {h}

[network]
arch = "rtmonodepth-s"
width = 640
height = 192
model = "{model}"

[pipeline]
queue_size = 4
policy = "lossless"
stats_interval_s = 1.0

[outputs]
dir = "{out}"
depth_png = true
colour_png = true
video = true
pointcloud_every = 25
metrics = false
"#,
        video = video.display(),
        model = model.display(),
        out = out.display(),
        fx = k.fx,
        fy = k.fy,
        cx = k.cx,
        cy = k.cy,
        w = k.width,
        h = k.height,
    );
    Ok(Config::from_toml_str(&text, Path::new("<demo>"))?)
}

/// Runs the demo.
pub fn run_demo(options: &DemoOptions) -> crate::Result<DemoReport> {
    let out = &options.out;
    std::fs::create_dir_all(out).map_err(|e| crate::Error::io(out, e))?;
    let out = out.canonicalize().map_err(|e| crate::Error::io(out, e))?;
    let render = RenderConfig {
        frames: options.frames,
        seed: options.seed,
        stops: true,
        ..RenderConfig::default()
    };
    let mut render = render;
    render.scene.moving_objects = 2;
    let renderer = Renderer::new(&render)?;
    let dataset = out.join("drive");
    let video_path = out.join("drive.mp4");

    eprintln!(
        "[1/3] rendering a {}-frame synthetic drive (seed {}) into {} and encoding {}",
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

    let model = match &options.model {
        Some(model) => Some(model.clone()),
        None => default_model_candidates().into_iter().find(|p| p.exists()),
    };
    let Some(model) = model else {
        eprintln!(
            "no depth model found (looked for {}); pass --model DIR with encoder.pth + depth.pth \
             to run live depth on the drive",
            default_model_candidates()
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        );
        return Ok(DemoReport {
            video: video_path,
            dataset,
            model: None,
            eval: None,
            outputs: Vec::new(),
        });
    };

    eprintln!(
        "[2/3] live depth: replaying {} through GStreamer with {}",
        video_path.display(),
        model.display()
    );
    let live_dir = out.join("live");
    let config = live_config(&video_path, &live_dir, &model, &renderer, render.fps)?;
    run_live(&LiveOptions { config, model: None, max_frames: None, adapt: None })?;

    eprintln!("[3/3] scoring against the drive's exact depth (KITTI protocol)");
    let eval = evaluate(&EvalOptions {
        dataset: format!("kitti:{}", dataset.display()),
        model: model.clone(),
        arch: Arch::RtMonoDepthS,
        width: 640,
        height: 192,
        selection: FrameSelection::all(),
        no_median_scaling: false,
        json: Some(out.join("eval.json")),
        plot: Some(out.join("eval.svg")),
        progress: true,
    })?;
    let mut outputs = describe_outputs(&live_dir);
    outputs.push(out.join("eval.json").display().to_string());
    outputs.push(out.join("eval.svg").display().to_string());
    Ok(DemoReport { video: video_path, dataset, model: Some(model), eval: Some(eval), outputs })
}
