//! Writes a synthetic drive to disk in the KITTI-like layout the rest of livedepth reads:
//!
//! ```text
//! <out>/image_02/data/0000000000.png                     RGB8 PNG
//! <out>/proj_depth/groundtruth/image_02/0000000000.png   uint16 PNG, round(depth * 256), 0 invalid
//! <out>/image_02/cam.txt                                 3x3 K, row-major, 3 lines
//! <out>/image_02/poses.txt                               per frame: 3x4 camera-to-world [R|t]
//! <out>/image_02/timestamps.txt                          per frame: seconds
//! <out>/render.json                                      the RenderConfig used
//! <out>/speed.csv                                        time,speed: the vehicle's speedometer
//! ```
//!
//! `speed.csv` is what a wheel-speed sensor would report (for `--metric-scale speed
//! --speed-file`): the camera's speed at each frame, by central differences of the poses.
//!
//! Every file is written atomically (temporary file, fsync, rename).

use super::SynthError;
use super::render::{RenderedFrame, Renderer};
use crate::frame::{DepthMap, RgbImage};
use nalgebra::Isometry3;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

/// What [`write_dataset`] wrote.
#[derive(Clone, Debug, PartialEq)]
pub struct DatasetSummary {
    pub out_dir: PathBuf,
    pub frames: usize,
    pub width: u32,
    pub height: u32,
    /// Fraction of pixels with valid (non-zero) depth over all frames.
    pub valid_depth_fraction: f64,
    /// Wall-clock seconds spent rendering (excluding PNG encoding and I/O).
    pub render_seconds: f64,
    /// Wall-clock seconds in total.
    pub total_seconds: f64,
}

/// Path of frame `index`'s colour image under `out`.
pub fn rgb_path(out: &Path, index: usize) -> PathBuf {
    out.join("image_02").join("data").join(format!("{index:010}.png"))
}

/// Path of frame `index`'s ground-truth depth PNG under `out`.
pub fn depth_path(out: &Path, index: usize) -> PathBuf {
    out.join("proj_depth").join("groundtruth").join("image_02").join(format!("{index:010}.png"))
}

fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> SynthError + '_ {
    move |source| SynthError::Io { path: path.to_path_buf(), source }
}

/// Writes `path` atomically ([`crate::tempfiles::write_atomic`]): `fill` writes into a buffered
/// temporary file beside it.
fn write_atomically(
    path: &Path,
    fill: impl FnOnce(&mut BufWriter<File>) -> Result<(), SynthError>,
) -> Result<(), SynthError> {
    crate::tempfiles::write_atomic(
        path,
        |temp| {
            let mut writer = BufWriter::new(File::create(temp).map_err(io_error(temp))?);
            fill(&mut writer)?;
            writer.flush().map_err(io_error(temp))
        },
        |e| io_error(path)(e),
    )
}

fn write_text(path: &Path, text: &str) -> Result<(), SynthError> {
    write_atomically(path, |w| w.write_all(text.as_bytes()).map_err(io_error(path)))
}

/// Writes an RGB8 PNG atomically.
pub fn write_rgb_png(path: &Path, image: &RgbImage) -> Result<(), SynthError> {
    let buffer = image::ImageBuffer::<image::Rgb<u8>, &[u8]>::from_raw(
        image.width,
        image.height,
        &image.data,
    )
    .ok_or_else(|| SynthError::BadImage {
        path: path.to_path_buf(),
        reason: format!(
            "{} bytes do not make a {}x{} RGB image",
            image.data.len(),
            image.width,
            image.height
        ),
    })?;
    write_atomically(path, |w| {
        buffer
            .write_to(w, image::ImageFormat::Png)
            .map_err(|source| SynthError::Png { path: path.to_path_buf(), source })
    })
}

/// Writes depth as a uint16 PNG of round(depth * 256) (0 = invalid) atomically. Depths that are
/// not finite or not positive are written as 0; depths beyond 255.99 m saturate.
pub fn write_depth_png(path: &Path, depth: &DepthMap) -> Result<(), SynthError> {
    let encoded: Vec<u16> = depth
        .data
        .iter()
        .map(|&d| {
            if d.is_finite() && d > 0.0 {
                (d * 256.0).round().clamp(1.0, 65535.0) as u16
            } else {
                0
            }
        })
        .collect();
    let buffer = image::ImageBuffer::<image::Luma<u16>, Vec<u16>>::from_raw(
        depth.width,
        depth.height,
        encoded,
    )
    .ok_or_else(|| SynthError::BadImage {
        path: path.to_path_buf(),
        reason: format!(
            "{} values do not make a {}x{} depth map",
            depth.data.len(),
            depth.width,
            depth.height
        ),
    })?;
    write_atomically(path, |w| {
        buffer
            .write_to(w, image::ImageFormat::Png)
            .map_err(|source| SynthError::Png { path: path.to_path_buf(), source })
    })
}

/// One line of poses.txt: the 3x4 camera-to-world matrix [R|t], row-major.
pub fn pose_line(pose: &Isometry3<f64>) -> String {
    let m = pose.to_homogeneous();
    let mut values = Vec::with_capacity(12);
    for r in 0..3 {
        for c in 0..4 {
            values.push(format!("{:.9e}", m[(r, c)]));
        }
    }
    values.join(" ")
}

/// Writes one rendered frame's colour and depth PNGs under `out`.
pub fn write_frame(out: &Path, frame: &RenderedFrame) -> Result<(), SynthError> {
    write_rgb_png(&rgb_path(out, frame.index), &frame.rgb)?;
    write_depth_png(&depth_path(out, frame.index), &frame.depth)
}

/// The `time,speed` sidecar of a drive: per frame, metres per second between its neighbours
/// (one-sided at the ends).
pub fn speed_csv(poses: &[Isometry3<f64>], timestamps: &[f64]) -> String {
    let n = poses.len().min(timestamps.len());
    let mut out = String::from("time,speed\n");
    for i in 0..n {
        let (a, b) = (i.saturating_sub(1), (i + 1).min(n.saturating_sub(1)));
        let dt = timestamps[b] - timestamps[a];
        let distance = (poses[b].translation.vector - poses[a].translation.vector).norm();
        let speed = if dt > 0.0 { distance / dt } else { 0.0 };
        out.push_str(&format!("{:.9},{speed:.6}\n", timestamps[i]));
    }
    out
}

/// Renders every frame of `renderer` into `out_dir` (created if missing) in the KITTI-like
/// layout, with a progress bar on stderr when `progress` is set. Metadata (render.json, cam.txt,
/// poses.txt, timestamps.txt) is written first, then the frames in order.
pub fn write_dataset(
    renderer: &Renderer,
    out_dir: &Path,
    progress: bool,
) -> Result<DatasetSummary, SynthError> {
    write_dataset_with(renderer, out_dir, progress, |_| Ok::<(), SynthError>(()))
}

/// [`write_dataset`], also handing each frame, once written, to `each_frame` (e.g. a video
/// encoder). An error from `each_frame` stops the writing and is returned; `E` is any error
/// type that a [`SynthError`] converts into (such as `livedepth::Error`).
pub fn write_dataset_with<E: From<SynthError>>(
    renderer: &Renderer,
    out_dir: &Path,
    progress: bool,
    mut each_frame: impl FnMut(&RenderedFrame) -> Result<(), E>,
) -> Result<DatasetSummary, E> {
    let started = std::time::Instant::now();
    let image_dir = out_dir.join("image_02");
    for dir in
        [image_dir.join("data"), out_dir.join("proj_depth").join("groundtruth").join("image_02")]
    {
        std::fs::create_dir_all(&dir).map_err(io_error(&dir))?;
    }

    let json_path = out_dir.join("render.json");
    let json = serde_json::to_string_pretty(renderer.config())
        .map_err(|source| SynthError::Json { path: json_path.clone(), source })?;
    write_text(&json_path, &(json + "\n"))?;

    let k = renderer.intrinsics().matrix();
    let cam: String = (0..3)
        .map(|r| format!("{:.9e} {:.9e} {:.9e}\n", k[(r, 0)], k[(r, 1)], k[(r, 2)]))
        .collect();
    write_text(&image_dir.join("cam.txt"), &cam)?;
    let poses: String = renderer.poses().iter().map(|p| pose_line(p) + "\n").collect();
    write_text(&image_dir.join("poses.txt"), &poses)?;
    let stamps: String = renderer.timestamps().iter().map(|t| format!("{t:.9}\n")).collect();
    write_text(&image_dir.join("timestamps.txt"), &stamps)?;
    write_text(&out_dir.join("speed.csv"), &speed_csv(renderer.poses(), renderer.timestamps()))?;

    let bar = if progress {
        let bar = indicatif::ProgressBar::new(renderer.len() as u64);
        if let Ok(style) = indicatif::ProgressStyle::with_template(
            "rendering {bar:40} {pos}/{len} frames [{elapsed_precise} < {eta_precise}]",
        ) {
            bar.set_style(style);
        }
        bar
    } else {
        indicatif::ProgressBar::hidden()
    };
    let mut render_seconds = 0.0;
    let mut valid = 0usize;
    let mut total = 0usize;
    for index in 0..renderer.len() {
        let t0 = std::time::Instant::now();
        let frame = renderer.render_frame(index)?;
        render_seconds += t0.elapsed().as_secs_f64();
        valid += frame.depth.data.iter().filter(|&&d| d > 0.0).count();
        total += frame.depth.data.len();
        write_frame(out_dir, &frame)?;
        each_frame(&frame)?;
        bar.inc(1);
    }
    bar.finish_and_clear();
    Ok(DatasetSummary {
        out_dir: out_dir.to_path_buf(),
        frames: renderer.len(),
        width: renderer.intrinsics().width,
        height: renderer.intrinsics().height,
        valid_depth_fraction: if total == 0 { 0.0 } else { valid as f64 / total as f64 },
        render_seconds,
        total_seconds: started.elapsed().as_secs_f64(),
    })
}
