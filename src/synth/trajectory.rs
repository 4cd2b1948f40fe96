//! Camera trajectories through the scene: a car driving the right lane of the road (optionally
//! stopping now and then) or a drone flying above it with varying altitude, yaw, pitch and
//! lateral offset. Poses are camera-to-world with the camera frame x right, y down, z forward.

use super::config::{RenderConfig, TrajectoryKind};
use super::scene::{Road, random_stream};
use nalgebra::{Isometry3, Matrix3, Rotation3, Translation3, UnitQuaternion, Vector3};
use rand::RngExt;
use rand_pcg::Pcg64Mcg;
use std::f64::consts::TAU;

/// Arc length along the road where every drive starts, metres.
pub const START_ARC_LENGTH_M: f64 = 40.0;
/// Height of the car camera above the road, metres.
pub const CAR_CAMERA_HEIGHT_M: f64 = 1.6;

/// Camera-to-world rotation of a camera heading `yaw` (radians from +x, counter-clockwise
/// about world +z), pitched up by `pitch` and rolled by `roll` (clockwise seen from behind).
pub fn camera_rotation(yaw: f64, pitch: f64, roll: f64) -> UnitQuaternion<f64> {
    let forward = Vector3::new(yaw.cos(), yaw.sin(), 0.0);
    let right = Vector3::new(yaw.sin(), -yaw.cos(), 0.0);
    let down = Vector3::new(0.0, 0.0, -1.0);
    let level = Rotation3::from_matrix_unchecked(Matrix3::from_columns(&[right, down, forward]));
    let pitch_up = Rotation3::from_axis_angle(&Vector3::x_axis(), pitch);
    let roll_about_z = Rotation3::from_axis_angle(&Vector3::z_axis(), roll);
    UnitQuaternion::from_rotation_matrix(&(level * pitch_up * roll_about_z))
}

/// Speed factor (0..1) per frame: 1 while cruising, 0 while stopped, cosine ramps between.
fn speed_profile(frames: usize, fps: f64, stops: bool, rng: &mut Pcg64Mcg) -> Vec<f64> {
    let mut factor = vec![1.0; frames];
    if !stops {
        return factor;
    }
    let ramp = (fps * 0.8).round().max(1.0) as usize;
    let mut start = rng.random_range(15..35usize);
    while start < frames {
        let hold = rng.random_range(5..16usize);
        // Slow down over `ramp` frames, stand still `hold` frames, speed up over `ramp`.
        for k in 0..ramp {
            let w = 0.5 * (1.0 + (std::f64::consts::PI * (k + 1) as f64 / ramp as f64).cos());
            if let Some(f) = factor.get_mut(start + k) {
                *f = w;
            }
            if let Some(f) = factor.get_mut(start + ramp + hold + k) {
                *f = 1.0 - w;
            }
        }
        for k in 0..hold {
            if let Some(f) = factor.get_mut(start + ramp + k) {
                *f = 0.0;
            }
        }
        start += 2 * ramp + hold + rng.random_range(30..80usize);
    }
    factor
}

/// Camera-to-world poses and timestamps of every frame of the drive.
#[derive(Clone, Debug)]
pub struct Trajectory {
    pub poses: Vec<Isometry3<f64>>,
    pub timestamps: Vec<f64>,
}

impl Trajectory {
    /// The arc lengths the drive covers (for sizing the scene) without needing the road.
    pub fn arc_length_span(cfg: &RenderConfig) -> (f64, f64) {
        let span = cfg.frames as f64 / cfg.fps * cfg.speed_mps;
        (START_ARC_LENGTH_M, START_ARC_LENGTH_M + span)
    }

    /// The trajectory of `cfg` along `road`.
    pub fn generate(cfg: &RenderConfig, road: &Road) -> Self {
        let mut phase_rng = random_stream(cfg.seed, 50);
        let phases: [f64; 6] = std::array::from_fn(|_| phase_rng.random_range(0.0..TAU));
        let factor =
            speed_profile(cfg.frames, cfg.fps, cfg.stops, &mut random_stream(cfg.seed, 51));
        let hw = road.half_width;
        let mut poses = Vec::with_capacity(cfg.frames);
        let mut timestamps = Vec::with_capacity(cfg.frames);
        let mut s = START_ARC_LENGTH_M;
        for (i, f) in factor.iter().enumerate() {
            let t = i as f64 / cfg.fps;
            if i > 0 {
                s += cfg.speed_mps * f / cfg.fps;
            }
            // The car's sway follows the distance driven, so a stopped car stands still; the
            // drone's follows time, so a hovering drone keeps swaying.
            let clock = match cfg.trajectory {
                TrajectoryKind::Car if cfg.speed_mps > 0.0 => {
                    (s - START_ARC_LENGTH_M) / cfg.speed_mps
                }
                _ => t,
            };
            let wave = |period: f64, phase: usize| (TAU * clock / period + phases[phase]).sin();
            let (lateral, height, yaw_offset, pitch, roll) = match cfg.trajectory {
                TrajectoryKind::Car => (
                    -0.5 * hw + 0.15 * wave(9.0, 0),
                    CAR_CAMERA_HEIGHT_M + 0.02 * wave(1.3, 1),
                    1.5f64.to_radians() * wave(7.0, 2),
                    0.6f64.to_radians() * wave(2.1, 3),
                    0.4f64.to_radians() * wave(3.3, 4),
                ),
                TrajectoryKind::Drone => (
                    0.55 * hw * wave(15.0, 0),
                    7.0 + 2.5 * wave(20.0, 1) + 1.0 * wave(7.0, 5),
                    20f64.to_radians() * wave(11.0, 2),
                    -(14f64.to_radians()) + 6f64.to_radians() * wave(9.0, 3),
                    3f64.to_radians() * wave(5.0, 4),
                ),
            };
            let (ground, heading) = road.point(s, lateral);
            let rotation = camera_rotation(heading + yaw_offset, pitch, roll);
            poses.push(Isometry3::from_parts(
                Translation3::new(ground.x, ground.y, height),
                rotation,
            ));
            timestamps.push(t);
        }
        Self { poses, timestamps }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn level_camera_axes() {
        let r = camera_rotation(0.0, 0.0, 0.0);
        // Camera z (forward) is world +x, camera y (down) is world -z, camera x (right) -y.
        assert!((r * Vector3::z() - Vector3::x()).norm() < 1e-12);
        assert!((r * Vector3::y() + Vector3::z()).norm() < 1e-12);
        assert!((r * Vector3::x() + Vector3::y()).norm() < 1e-12);
        // Pitching up raises the forward axis.
        let up = camera_rotation(0.0, 0.2, 0.0) * Vector3::z();
        assert!(up.z > 0.19);
    }

    #[test]
    fn stops_hold_the_camera_still() {
        let mut rng = Pcg64Mcg::seed_from_u64(3);
        let f = speed_profile(200, 10.0, true, &mut rng);
        assert!(f.contains(&0.0));
        assert!(f.iter().all(|&v| (0.0..=1.0).contains(&v)));
    }
}
