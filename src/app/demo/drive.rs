//! The demo's drive: a synthetic street in a style the base model never saw, rendered with
//! exact depth and poses in the KITTI layout and encoded to an H.264 mp4 as a camera would
//! record it.

use crate::sink::video::Mp4Writer;
use crate::synth::{RenderConfig, Renderer, SceneConfig, TrajectoryKind, write_dataset_with};
use std::path::Path;

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

/// Renders `render` into the dataset folder `dataset` and encodes it to `video` at its frame
/// rate; returns the renderer (for the camera intrinsics).
pub fn render_drive(
    render: &RenderConfig,
    dataset: &Path,
    video: &Path,
) -> crate::Result<Renderer> {
    let renderer = Renderer::new(render)?;
    let mut writer = Mp4Writer::create(video, render.width, render.height, render.fps)?;
    write_dataset_with(&renderer, dataset, true, |frame| {
        writer.push(&frame.rgb, frame.timestamp)?;
        Ok::<(), crate::Error>(())
    })?;
    writer.finish()?;
    Ok(renderer)
}
