//! Camera trajectories through the scene: a car driving the right lane of the road (optionally
//! stopping now and then), a drone flying above it with varying altitude, yaw, pitch and
//! lateral offset, or a camera circling a point on the road while looking at it. Poses are
//! camera-to-world with the camera frame x right, y down, z forward.

use super::config::{RenderConfig, TrajectoryKind};
use super::scene::{Road, random_stream};
use nalgebra::{Isometry3, Matrix3, Rotation3, Translation3, UnitQuaternion, Vector2, Vector3};
use rand::RngExt;
use rand_pcg::Pcg64Mcg;
use std::f64::consts::{PI, TAU};

/// Arc length along the road where every drive starts, metres.
pub const START_ARC_LENGTH_M: f64 = 40.0;
/// Height of the car camera above the road, metres.
pub const CAR_CAMERA_HEIGHT_M: f64 = 1.6;
/// Radius of the orbit, metres: with its sway the camera stays on the asphalt (half width
/// 3.5 m by default), clear of the lamp posts and boxes on the sidewalks.
pub const ORBIT_RADIUS_M: f64 = 3.0;
/// How far the hand-held orbit's radius sways either way, metres.
const ORBIT_SWAY_M: f64 = 0.2;
/// The narrowest road an orbit fits on: its circle, its sway and a margin (3.5 m).
pub(crate) const ORBIT_MIN_ROAD_HALF_WIDTH_M: f64 = ORBIT_RADIUS_M + ORBIT_SWAY_M + 0.3;
/// Arc length of the orbit's centre on the road's centre line, metres: far enough along that
/// the street behind the camera reaches the far clip (255 m at most; the scene starts 60 m
/// before the road's start).
pub const ORBIT_CENTRE_ARC_LENGTH_M: f64 = START_ARC_LENGTH_M + 260.0;
/// The orbit's speed along its circle when none is given: a walking pace, metres per second.
pub const ORBIT_WALKING_SPEED_MPS: f64 = 0.5;

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
        if cfg.trajectory == TrajectoryKind::Orbit {
            return (
                ORBIT_CENTRE_ARC_LENGTH_M - ORBIT_RADIUS_M,
                ORBIT_CENTRE_ARC_LENGTH_M + ORBIT_RADIUS_M,
            );
        }
        let span = cfg.frames as f64 / cfg.fps * cfg.speed_mps;
        (START_ARC_LENGTH_M, START_ARC_LENGTH_M + span)
    }

    /// The trajectory of `cfg` along `road`.
    pub fn generate(cfg: &RenderConfig, road: &Road) -> Self {
        let mut phase_rng = random_stream(cfg.seed, 50);
        let phases: [f64; 6] = std::array::from_fn(|_| phase_rng.random_range(0.0..TAU));
        let factor =
            speed_profile(cfg.frames, cfg.fps, cfg.stops, &mut random_stream(cfg.seed, 51));
        let mut poses = Vec::with_capacity(cfg.frames);
        let mut timestamps = Vec::with_capacity(cfg.frames);
        // Arc length along the road (car, drone), and distance along the orbit's circle.
        let mut s = START_ARC_LENGTH_M;
        let mut circled = 0.0;
        for (i, f) in factor.iter().enumerate() {
            let t = i as f64 / cfg.fps;
            if i > 0 {
                s += cfg.speed_mps * f / cfg.fps;
                circled += cfg.speed_mps * f / cfg.fps;
            }
            let pose = match cfg.trajectory {
                TrajectoryKind::Car => road_pose(cfg, road, s, t, &phases, false),
                TrajectoryKind::Drone => road_pose(cfg, road, s, t, &phases, true),
                TrajectoryKind::Orbit => orbit_pose(road, circled, t, &phases),
            };
            poses.push(pose);
            timestamps.push(t);
        }
        Self { poses, timestamps }
    }
}

/// The car's (or with `drone`, the drone's) pose at arc length `s` along the road, at time `t`.
fn road_pose(
    cfg: &RenderConfig,
    road: &Road,
    s: f64,
    t: f64,
    phases: &[f64; 6],
    drone: bool,
) -> Isometry3<f64> {
    let hw = road.half_width;
    // The car's sway follows the distance driven, so a stopped car stands still; the drone's
    // follows time, so a hovering drone keeps swaying.
    let clock =
        if !drone && cfg.speed_mps > 0.0 { (s - START_ARC_LENGTH_M) / cfg.speed_mps } else { t };
    let wave = |period: f64, phase: usize| (TAU * clock / period + phases[phase]).sin();
    let (lateral, height, yaw_offset, pitch, roll) = if drone {
        (
            0.55 * hw * wave(15.0, 0),
            7.0 + 2.5 * wave(20.0, 1) + 1.0 * wave(7.0, 5),
            20f64.to_radians() * wave(11.0, 2),
            -(14f64.to_radians()) + 6f64.to_radians() * wave(9.0, 3),
            3f64.to_radians() * wave(5.0, 4),
        )
    } else {
        (
            -0.5 * hw + 0.15 * wave(9.0, 0),
            CAR_CAMERA_HEIGHT_M + 0.02 * wave(1.3, 1),
            1.5f64.to_radians() * wave(7.0, 2),
            0.6f64.to_radians() * wave(2.1, 3),
            0.4f64.to_radians() * wave(3.3, 4),
        )
    };
    let (ground, heading) = road.point(s, lateral);
    let rotation = camera_rotation(heading + yaw_offset, pitch, roll);
    Isometry3::from_parts(Translation3::new(ground.x, ground.y, height), rotation)
}

/// The orbiting camera's pose after `circled` metres along its circle, at time `t`: it
/// starts on the right of the road and circles the centre counter-clockwise (seen from above),
/// facing it, with a hand's sway in radius, height, yaw, pitch (looking down) and roll.
fn orbit_pose(road: &Road, circled: f64, t: f64, phases: &[f64; 6]) -> Isometry3<f64> {
    let (centre, road_heading) = road.point(ORBIT_CENTRE_ARC_LENGTH_M, 0.0);
    let angle = road_heading - 0.5 * PI + circled / ORBIT_RADIUS_M;
    let wave = |period: f64, phase: usize| (TAU * t / period + phases[phase]).sin();
    let radius = ORBIT_RADIUS_M + ORBIT_SWAY_M * wave(6.0, 0);
    let position = centre + radius * Vector2::new(angle.cos(), angle.sin());
    let yaw = angle + PI + 3f64.to_radians() * wave(4.0, 2);
    let pitch = -(12f64.to_radians()) + 2f64.to_radians() * wave(3.1, 3);
    let rotation = camera_rotation(yaw, pitch, 1.5f64.to_radians() * wave(5.3, 4));
    let height = 1.5 + 0.1 * wave(7.0, 1);
    Isometry3::from_parts(Translation3::new(position.x, position.y, height), rotation)
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
    fn the_orbit_road_width_error_states_the_limit_the_check_applies() {
        let orbit_on = |road_half_width_m| RenderConfig {
            trajectory: TrajectoryKind::Orbit,
            scene: super::super::SceneConfig { road_half_width_m, ..Default::default() },
            ..RenderConfig::default()
        };
        assert!(orbit_on(ORBIT_MIN_ROAD_HALF_WIDTH_M).validate().is_ok());
        let err = orbit_on(ORBIT_MIN_ROAD_HALF_WIDTH_M - 0.01)
            .validate()
            .expect_err("a road narrower than the limit is refused")
            .to_string();
        let limit = format!("at least {ORBIT_MIN_ROAD_HALF_WIDTH_M:.1} m");
        assert!(err.contains(&limit), "the message should say {limit:?}: {err}");
    }

    #[test]
    fn stops_hold_the_camera_still() {
        let mut rng = Pcg64Mcg::seed_from_u64(3);
        let f = speed_profile(200, 10.0, true, &mut rng);
        assert!(f.contains(&0.0));
        assert!(f.iter().all(|&v| (0.0..=1.0).contains(&v)));
    }

    #[test]
    fn the_orbit_circles_its_centre_facing_it() {
        let cfg = RenderConfig {
            trajectory: TrajectoryKind::Orbit,
            speed_mps: 0.5,
            fps: 30.0,
            frames: 300,
            ..RenderConfig::default()
        };
        let road = Road::straight(3.5, 500.0);
        let trajectory = Trajectory::generate(&cfg, &road);
        assert_eq!(trajectory.poses.len(), 300);
        let (centre, _) = road.point(ORBIT_CENTRE_ARC_LENGTH_M, 0.0);
        let mut angles = Vec::new();
        for pose in &trajectory.poses {
            let p = pose.translation.vector;
            let to_centre = Vector2::new(centre.x - p.x, centre.y - p.y);
            let r = to_centre.norm();
            assert!((ORBIT_RADIUS_M - 0.21..=ORBIT_RADIUS_M + 0.21).contains(&r), "radius {r}");
            assert!(road.lateral(p.x, p.y).abs() < 3.5, "off the asphalt at {p:?}");
            let forward = pose.rotation * Vector3::z();
            let heading = Vector2::new(forward.x, forward.y).normalize();
            let off = heading.dot(&(to_centre / r)).clamp(-1.0, 1.0).acos().to_degrees();
            assert!(off < 4.0, "looks {off} degrees away from the centre");
            angles.push((p.y - centre.y).atan2(p.x - centre.x));
        }
        // Counter-clockwise by the distance travelled: 10 s at 0.5 m/s on a 3 m circle.
        let swept: f64 = angles.windows(2).map(|w| (w[1] - w[0] + PI).rem_euclid(TAU) - PI).sum();
        assert!((swept - 5.0 / ORBIT_RADIUS_M).abs() < 0.05, "swept {swept} rad");
        assert_eq!("orbit".parse::<TrajectoryKind>(), Ok(TrajectoryKind::Orbit));
        assert!("circle".parse::<TrajectoryKind>().unwrap_err().contains("orbit"));
    }
}
