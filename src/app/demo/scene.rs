//! The demo's scene: what it replays, adapts on and scores.
//! - **recorded** (the default where `../shared` is present): the continuation of the real
//!   hand-held kitchen recording (`../shared/data/kitchen_val`, frames 300–549, never used to
//!   tune anything) with the real KITTI-trained RT-MonoDepth-S, at the adaptation defaults that
//!   `eval --adapt` and `run --adapt` use;
//! - **synthetic**: a rendered drive through a street style the committed base model never saw
//!   (what a fresh clone without `../shared` runs).
//!
//! Either way the frames are encoded to an H.264 mp4 at the camera's frame rate, as a camera
//! would have recorded them, and the live part replays that file.

use super::drive::{demo_render_config, render_drive};
use super::model::find_existing;
use crate::config::CameraConfig;
use crate::sink::video::Mp4Writer;
use crate::source::SourceError;
use crate::source::dataset::open_dataset;
use crate::synth::RenderConfig;
use serde::Serialize;
use std::path::{Path, PathBuf};

/// The recorded scene's folder, relative to the repository root.
pub const RECORDED_SCENE_DIR: &str = "../shared/data/kitchen_val";
/// The model the recorded scene runs by default, relative to the repository root.
pub const RECORDED_MODEL_DIR: &str = "../shared/models/rtmonodepth_s/m_640x192";
/// The recorded scene's abs_rel windows (the 50-frame windows of docs/adapt.md).
const RECORDED_WINDOW: usize = 50;

/// Which scene the user asked for (`demo --scene`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum SceneChoice {
    /// The recorded scene where it and its model are present, else the synthetic drive.
    #[default]
    Auto,
    /// The rendered drive.
    Synthetic,
    /// A 7-Scenes-layout recording (`kitchen:` dataset) in this folder.
    Recorded(PathBuf),
}

impl std::str::FromStr for SceneChoice {
    type Err = crate::Error;
    fn from_str(s: &str) -> crate::Result<Self> {
        match s {
            "auto" => Ok(Self::Auto),
            "synthetic" => Ok(Self::Synthetic),
            "recorded" => Ok(Self::Recorded(
                find_existing(RECORDED_SCENE_DIR).unwrap_or_else(|| RECORDED_SCENE_DIR.into()),
            )),
            other if Path::new(other).is_dir() => Ok(Self::Recorded(other.into())),
            other => Err(crate::Error::Other(format!(
                "demo --scene: expected auto, synthetic, recorded or a folder in the 7-Scenes \
                 layout (frame-NNNNNN.color.jpg, .depth.png, .pose.txt), got `{other}`"
            ))),
        }
    }
}

/// The scene as the demo runs it (in `report.json` as `scene`).
#[derive(Clone, Debug, Serialize)]
pub struct DemoScene {
    /// `recorded` or `synthetic`.
    pub kind: &'static str,
    /// One line for titles and the console.
    pub description: String,
    /// The input column's title in the side-by-side video.
    pub input_label: String,
    /// The ground-truth dataset the lock-step runs score against (`kitchen:DIR`, `kitti:DIR`).
    pub dataset_spec: String,
    /// The folder of that dataset.
    pub dataset: PathBuf,
    /// The scene encoded as a camera would record it.
    pub video: PathBuf,
    pub frames: usize,
    /// The camera's frame rate (the video's and the paced replay's).
    pub fps: f64,
    pub width: u32,
    pub height: u32,
    /// The camera's calibration at `width` x `height`.
    pub camera: CameraConfig,
    /// Frames per abs_rel window in the report.
    pub window: usize,
    /// The renderer's settings (synthetic scene only).
    pub render: Option<RenderConfig>,
}

/// Renders the synthetic drive (`frames` frames, scene `seed`) into `out/drive` and encodes
/// `out/drive.mp4`.
pub fn synthetic_scene(out: &Path, frames: usize, seed: u64) -> crate::Result<DemoScene> {
    let render = demo_render_config(frames, seed);
    let dataset = out.join("drive");
    let video = out.join("drive.mp4");
    let renderer = render_drive(&render, &dataset, &video)?;
    Ok(DemoScene {
        kind: "synthetic",
        description: format!("an unseen synthetic drive (seed {seed}, {frames} frames)"),
        input_label: "input (unseen drive)".into(),
        dataset_spec: format!("kitti:{}", dataset.display()),
        dataset,
        video,
        frames: render.frames,
        fps: render.fps,
        width: render.width,
        height: render.height,
        camera: CameraConfig::pinhole(&renderer.intrinsics()),
        window: (render.frames / 6).max(1),
        render: Some(render),
    })
}

/// Encodes the first `frames` frames (all when `None`) of the 7-Scenes-layout recording in
/// `dir` to `out/recording.mp4` at the recording's frame rate.
pub fn recorded_scene(out: &Path, dir: &Path, frames: Option<usize>) -> crate::Result<DemoScene> {
    let dataset = open_dataset(&format!("kitchen:{}", dir.display())).map_err(SourceError::from)?;
    let read = |i: usize| dataset.frame(i).map_err(SourceError::from);
    let count = frames.unwrap_or(usize::MAX).min(dataset.len());
    if count < 2 {
        return Err(crate::Error::Other(format!(
            "demo scene {}: expected at least 2 frames, found {}",
            dir.display(),
            dataset.len()
        )));
    }
    let first = read(0)?;
    let last = read(count - 1)?;
    let span = last.timestamp - first.timestamp;
    let fps = if span > 0.0 { (count - 1) as f64 / span } else { 30.0 };
    let intrinsics = first.intrinsics.ok_or_else(|| {
        crate::Error::Other(format!(
            "demo scene {}: the recording has no intrinsics",
            dir.display()
        ))
    })?;
    let (width, height) = (first.rgb.width, first.rgb.height);
    let video = out.join("recording.mp4");
    let mut writer = Mp4Writer::create(&video, width, height, fps)?;
    writer.push(&first.rgb, 0.0)?;
    for i in 1..count {
        let frame = read(i)?;
        writer.push(&frame.rgb, frame.timestamp - first.timestamp)?;
    }
    writer.finish()?;
    let name = dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    Ok(DemoScene {
        kind: "recorded",
        description: format!(
            "the real hand-held recording {} ({count} frames at {fps:.0} fps, never tuned on)",
            dir.display()
        ),
        input_label: format!("input ({name}, real)"),
        dataset_spec: format!("kitchen:{}", dir.display()),
        dataset: dir.to_path_buf(),
        video,
        frames: count,
        fps,
        width,
        height,
        camera: CameraConfig::pinhole(&intrinsics),
        window: RECORDED_WINDOW,
        render: None,
    })
}
