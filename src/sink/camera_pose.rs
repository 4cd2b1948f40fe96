//! The camera's pose for the live view's `/tf` channel: the motion between consecutive
//! published frames, from a [`CameraMotion`] (the pose network,
//! `engine::camera_motion::PoseTracker`), chained into the camera's pose in the frame of the
//! first published frame (`odom`: the first camera's optical frame, x right, y down, z
//! forward). Each step's translation is in metres when the frame carries a metric scale, else
//! in the network's units.
//!
//! It runs on the telemetry thread: when the network is slow, telemetry drops frames (the motion
//! is then measured across the gap), and the live path never waits.

use super::foxglove_live::TelemetryFrame;
use crate::frame::RgbImage;
use foxglove::messages::{FrameTransform, Quaternion, Timestamp, Vector3};
use nalgebra::Isometry3;
use std::sync::{Arc, Mutex};

/// The parent frame of the camera's pose.
pub const ODOM_FRAME: &str = "odom";
/// The camera's frame (the images, depth and point clouds are in it).
pub const CAMERA_FRAME: &str = "camera";

/// Measures how the camera moved between consecutive images it is given.
pub trait CameraMotion: Send {
    /// The motion from the previous image given to `image`, as the transform taking points in
    /// the current camera's frame into the previous camera's frame (network units); None for
    /// the first image. An error stops the camera pose for the rest of the run.
    fn advance(&mut self, image: &RgbImage) -> Result<Option<Isometry3<f64>>, String>;
}

/// Where the live path hands the telemetry thread its [`CameraMotion`] (set once the network
/// is loaded; none: no `/tf`).
pub type MotionSlot = Arc<Mutex<Option<Box<dyn CameraMotion>>>>;

/// The chained pose (see the module docs).
#[derive(Default)]
pub struct CameraTrack {
    odom_from_camera: Isometry3<f64>,
    /// Path length so far (metres or network units, as the steps were).
    travelled: f64,
}

impl CameraTrack {
    /// The camera's pose at `frame`, or None without a motion source (or after it failed:
    /// the failure is logged once and the slot emptied).
    pub fn next(
        &mut self,
        slot: &MotionSlot,
        frame: &TelemetryFrame,
        stamp: Timestamp,
    ) -> Option<FrameTransform> {
        let mut motion = slot.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let step = match motion.as_mut()?.advance(&frame.image) {
            Ok(step) => step,
            Err(reason) => {
                tracing::warn!("camera pose: {reason}; /tf stops for the rest of the run");
                *motion = None;
                return None;
            }
        };
        if let Some(mut step) = step {
            if let Some(scale) = frame.scale {
                step.translation.vector *= scale.scale;
            }
            self.travelled += step.translation.vector.norm();
            self.odom_from_camera *= step;
        }
        Some(frame_transform(&self.odom_from_camera, stamp))
    }

    /// Path length so far.
    pub fn travelled(&self) -> f64 {
        self.travelled
    }
}

/// `odom → camera` as a Foxglove frame transform.
fn frame_transform(odom_from_camera: &Isometry3<f64>, stamp: Timestamp) -> FrameTransform {
    let t = odom_from_camera.translation.vector;
    let q = odom_from_camera.rotation;
    FrameTransform {
        timestamp: Some(stamp),
        parent_frame_id: ODOM_FRAME.into(),
        child_frame_id: CAMERA_FRAME.into(),
        translation: Some(Vector3 { x: t.x, y: t.y, z: t.z }),
        rotation: Some(Quaternion { x: q.i, y: q.j, z: q.k, w: q.w }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::DepthMap;
    use crate::pool::Pooled;
    use nalgebra::{Translation3, UnitQuaternion, Vector3 as V3};

    /// Moves 1 unit forward and turns 0.1 rad left (about -y) per image.
    struct Forward;

    impl CameraMotion for Forward {
        fn advance(&mut self, image: &RgbImage) -> Result<Option<Isometry3<f64>>, String> {
            if image.data[0] == 0 {
                return Ok(None);
            }
            if image.data[0] == 9 {
                return Err("the network failed".into());
            }
            let previous_from_current = Isometry3::from_parts(
                Translation3::new(0.0, 0.0, 1.0),
                UnitQuaternion::from_scaled_axis(V3::new(0.0, -0.1, 0.0)),
            );
            Ok(Some(previous_from_current))
        }
    }

    fn frame(first_byte: u8, scale: Option<f64>) -> TelemetryFrame {
        TelemetryFrame {
            index: 0,
            timestamp: 0.0,
            image: Pooled::detached(RgbImage { width: 1, height: 1, data: vec![first_byte, 0, 0] }),
            depth: Pooled::detached(DepthMap::from_data(1, 1, vec![1.0])),
            colour: Pooled::detached(RgbImage { width: 1, height: 1, data: vec![0; 3] }),
            intrinsics: None,
            scale: scale.map(|scale| crate::scale::ScaleEstimate {
                scale,
                confidence: 1.0,
                fallback: None,
            }),
        }
    }

    #[test]
    fn steps_chain_in_the_first_cameras_frame_and_scale_to_metres() {
        let slot: MotionSlot = Arc::new(Mutex::new(None));
        let mut track = CameraTrack::default();
        let stamp = Timestamp::new(0, 0);
        assert!(track.next(&slot, &frame(0, None), stamp).is_none(), "no motion source");
        *slot.lock().unwrap() = Some(Box::new(Forward));
        let first = track.next(&slot, &frame(0, None), stamp).unwrap();
        assert_eq!(first.translation.unwrap().z, 0.0);
        assert_eq!(
            (first.parent_frame_id.as_str(), first.child_frame_id.as_str()),
            ("odom", "camera")
        );
        let second = track.next(&slot, &frame(1, None), stamp).unwrap();
        assert!((second.translation.unwrap().z - 1.0).abs() < 1e-12);
        // The second step goes 2 m along the turned camera's z: it bends left (-x).
        let third = track.next(&slot, &frame(1, Some(2.0)), stamp).unwrap().translation.unwrap();
        assert!((third.z - (1.0 + 2.0 * 0.1f64.cos())).abs() < 1e-12, "{third:?}");
        assert!((third.x + 2.0 * 0.1f64.sin()).abs() < 1e-12, "{third:?}");
        assert!((track.travelled() - 3.0).abs() < 1e-12);
        // A failing network stops the pose, once.
        assert!(track.next(&slot, &frame(9, None), stamp).is_none());
        assert!(slot.lock().unwrap().is_none());
    }
}
