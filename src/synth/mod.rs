//! Synthetic drives with exact ground truth: a CPU ray caster (rayon over rows) renders a
//! procedurally textured street — road with lane markings, sidewalks, grass and gravel,
//! building facades, walls, boxes, lamp posts, trees and optionally moving vehicles — seen
//! from a car, drone or orbit trajectory, with exact z-depth and camera-to-world poses.
//!
//! Entry points: [`RenderConfig`] → [`Renderer::new`] → [`Renderer::render_frame`] (one
//! [`RenderedFrame`] at a time, e.g. for an encoder), [`SyntheticSource`] (a frame
//! [`crate::source::Source`]) and [`write_dataset`] / [`write_dataset_with`] (the KITTI-like
//! layout on disk, optionally handing each frame to a callback such as a video encoder).
//! [`render_view`] renders any [`Scene`] from any pose.
//!
//! Conventions: world frame z up (the road lies on z = 0 and starts along +x); camera frame x
//! right, y down, z forward; depth is the camera-frame z in metres, 0 where invalid (sky).

mod config;
mod dataset;
mod geometry;
mod material;
mod noise;
mod render;
mod scene;
mod source;
mod trajectory;

pub use config::{PinholeConfig, RenderConfig, SceneConfig, TrajectoryKind};
pub use dataset::{
    DatasetSummary, depth_path, pose_line, rgb_path, write_dataset, write_dataset_with,
    write_depth_png, write_frame, write_rgb_png,
};
pub use geometry::{OrientedBox, SurfaceHit, VerticalCylinder};
pub use render::{RenderedFrame, Renderer, ViewOptions, render_view};
pub use scene::{Lighting, Material, MovingObject, Road, Scene, SceneObject, Shape};
pub use source::SyntheticSource;
pub use trajectory::{
    CAR_CAMERA_HEIGHT_M, ORBIT_RADIUS_M, ORBIT_WALKING_SPEED_MPS, camera_rotation,
};

use std::path::PathBuf;

/// Errors of the synthetic renderer and dataset writer.
#[derive(Debug, thiserror::Error)]
pub enum SynthError {
    #[error("render config field `{field}`: expected {expected}, got {got}")]
    InvalidConfig { field: &'static str, expected: &'static str, got: String },
    #[error("{}: not a valid render config: {reason}", path.display())]
    ConfigFile { path: PathBuf, reason: String },
    #[error("frame index {index} is out of range: the drive has {len} frames")]
    FrameOutOfRange { index: usize, len: usize },
    #[error("{}: {source}", path.display())]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{}: could not encode PNG: {source}", path.display())]
    Png { path: PathBuf, source: image::ImageError },
    #[error("{}: {reason}", path.display())]
    BadImage { path: PathBuf, reason: String },
    #[error("{}: could not serialise the render config: {source}", path.display())]
    Json { path: PathBuf, source: serde_json::Error },
}
