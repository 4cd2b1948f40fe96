//! The camera's motion between consecutive live frames from a pose network ([`PoseEngine`],
//! libtorch or ONNX Runtime), for the live view's camera pose (`/tf`,
//! [`crate::sink::camera_pose`]). It runs on the telemetry thread, never on the live path.

use super::{PoseEngine, RelativePose};
use crate::frame::RgbImage;
use crate::sink::camera_pose::CameraMotion;
use nalgebra::Isometry3;

/// [`CameraMotion`] from a pose engine: each new frame is paired with the previous one.
pub struct PoseEngineMotion<E> {
    engine: E,
    previous: Option<RgbImage>,
}

impl<E: PoseEngine> PoseEngineMotion<E> {
    pub fn new(engine: E) -> Self {
        Self { engine, previous: None }
    }
}

/// The transform taking current-camera points into the previous camera, from the network's
/// output for the pair (previous, current) stacked in that order. The adapter reads such a
/// pair (source first) as the inverse of the network's [R | t], and so does this.
pub fn previous_from_current(pose: &RelativePose) -> Isometry3<f64> {
    pose.to_isometry().inverse()
}

impl<E: PoseEngine + Send> CameraMotion for PoseEngineMotion<E> {
    fn advance(&mut self, image: &RgbImage) -> Result<Option<Isometry3<f64>>, String> {
        let Some(previous) = self.previous.replace(image.clone()) else { return Ok(None) };
        let pose = self
            .engine
            .predict_pose(&previous, image)
            .map_err(|e| format!("the pose network failed: {e}"))?;
        Ok(Some(previous_from_current(&pose)))
    }
}
