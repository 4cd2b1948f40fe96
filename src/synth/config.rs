//! Serde configuration of a synthetic drive: the scene ([`SceneConfig`]), the camera, trajectory
//! and output ([`RenderConfig`]), their defaults and their validation into typed errors.

use super::SynthError;
use crate::camera::Intrinsics;
use serde::{Deserialize, Serialize};
use std::str::FromStr;

/// How the camera moves through the scene.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TrajectoryKind {
    /// A car-mounted camera about 1.6 m above the road, driving along the right lane.
    Car,
    /// A drone flying above the road at varying altitude, with yaw and lateral motion.
    Drone,
    /// A camera about 1.5 m up circling a point on the road at 3 m while looking at it (someone
    /// walking around an object, an inspection orbit): sideways motion with a matching turn,
    /// where a reversed translation plus a compensating rotation explains the images almost as
    /// well. `speed_mps` is the speed along the circle (a walking pace is 0.5).
    Orbit,
}

impl FromStr for TrajectoryKind {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "car" => Ok(Self::Car),
            "drone" => Ok(Self::Drone),
            "orbit" => Ok(Self::Orbit),
            other => {
                Err(format!("unknown trajectory `{other}`: expected `car`, `drone` or `orbit`"))
            }
        }
    }
}

impl std::fmt::Display for TrajectoryKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Car => "car",
            Self::Drone => "drone",
            Self::Orbit => "orbit",
        })
    }
}

/// Explicit pinhole intrinsics in pixels, replacing the KITTI-like default.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PinholeConfig {
    pub fx: f64,
    pub fy: f64,
    pub cx: f64,
    pub cy: f64,
}

/// What the world contains and how it is lit.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SceneConfig {
    /// Half the width of the asphalt (two lanes), metres.
    pub road_half_width_m: f64,
    /// Scales the road's bends: 0 = straight, 1 = gentle (radius down to about 85 m).
    pub curviness: f64,
    /// Fraction of each roadside lined with building facades (the rest: low walls, trees).
    pub building_fraction: f64,
    /// Boxes (crates, parked-car-sized blocks) per 100 m of road, both sides together.
    pub boxes_per_100m: f64,
    /// Distance between lamp posts along each side, metres.
    pub pole_spacing_m: f64,
    /// Number of independently moving boxes (vehicles in the oncoming lane).
    pub moving_objects: usize,
    /// Sun direction: azimuth from the +x (initial driving) direction, counter-clockwise, degrees.
    pub sun_azimuth_deg: f64,
    /// Sun elevation above the horizon, degrees.
    pub sun_elevation_deg: f64,
    /// Ambient light fraction in [0, 1] (shadowed surfaces keep this much light).
    pub ambient: f64,
    /// Whether to cast hard shadows with a shadow ray per sample.
    pub shadows: bool,
}

impl Default for SceneConfig {
    fn default() -> Self {
        Self {
            road_half_width_m: 3.5,
            curviness: 1.0,
            building_fraction: 0.7,
            boxes_per_100m: 8.0,
            pole_spacing_m: 25.0,
            moving_objects: 0,
            sun_azimuth_deg: 135.0,
            sun_elevation_deg: 50.0,
            ambient: 0.45,
            shadows: true,
        }
    }
}

/// A synthetic drive: image size, camera, trajectory, frame rate and the scene.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RenderConfig {
    /// Image width in pixels (even).
    pub width: u32,
    /// Image height in pixels (even).
    pub height: u32,
    /// Number of frames in the drive.
    pub frames: usize,
    /// Frames per second (sets the timestamps and the distance travelled per frame).
    pub fps: f64,
    /// Seed of the scene layout and the trajectory; same seed, same bytes.
    pub seed: u64,
    /// Supersampling factor per axis (K gives K x K samples per pixel).
    pub supersample: u32,
    pub trajectory: TrajectoryKind,
    /// Cruising speed along the road, metres per second.
    pub speed_mps: f64,
    /// Whether the camera stops for a few frames now and then (car waiting, drone hovering).
    pub stops: bool,
    /// Pinhole intrinsics; `None` gives the normalised KITTI intrinsics scaled to the size:
    /// fx = 0.58 W, fy = 1.92 H, cx = W / 2, cy = H / 2.
    pub intrinsics: Option<PinholeConfig>,
    /// Surfaces farther than this (z-depth, metres) are drawn as haze with depth 0 (invalid).
    /// At most 255 m so that depth fits the uint16 x 256 PNG encoding.
    pub far_clip_m: f64,
    pub scene: SceneConfig,
}

impl Default for RenderConfig {
    fn default() -> Self {
        Self {
            width: 640,
            height: 192,
            frames: 200,
            fps: 10.0,
            seed: 0,
            supersample: 2,
            trajectory: TrajectoryKind::Car,
            speed_mps: 8.0,
            stops: false,
            intrinsics: None,
            far_clip_m: 200.0,
            scene: SceneConfig::default(),
        }
    }
}

fn invalid(field: &'static str, expected: &'static str, got: impl ToString) -> SynthError {
    SynthError::InvalidConfig { field, expected, got: got.to_string() }
}

fn check_finite_in(
    field: &'static str,
    value: f64,
    ok: impl Fn(f64) -> bool,
    expected: &'static str,
) -> Result<(), SynthError> {
    if value.is_finite() && ok(value) { Ok(()) } else { Err(invalid(field, expected, value)) }
}

impl RenderConfig {
    /// Reads a JSON render config (such as a dataset's render.json; missing fields take their
    /// defaults, except that an orbit with no `speed_mps` walks at
    /// [`ORBIT_WALKING_SPEED_MPS`](super::ORBIT_WALKING_SPEED_MPS)) and validates it.
    pub fn from_json_file(path: &std::path::Path) -> Result<Self, SynthError> {
        let text = std::fs::read_to_string(path)
            .map_err(|source| SynthError::Io { path: path.to_path_buf(), source })?;
        let parse_error = |e: serde_json::Error| SynthError::ConfigFile {
            path: path.to_path_buf(),
            reason: e.to_string(),
        };
        let mut config: Self = serde_json::from_str(&text).map_err(parse_error)?;
        // The default speed is a car's 8 m/s, which would take an orbit round its 3 m circle in
        // 2.4 s: an orbit file that names no speed walks.
        #[derive(Deserialize)]
        struct NamedSpeed {
            speed_mps: Option<serde::de::IgnoredAny>,
        }
        let named: NamedSpeed = serde_json::from_str(&text).map_err(parse_error)?;
        if config.trajectory == TrajectoryKind::Orbit && named.speed_mps.is_none() {
            config.speed_mps = super::trajectory::ORBIT_WALKING_SPEED_MPS;
        }
        config.validate()?;
        Ok(config)
    }

    /// Checks every field, naming the first bad one and what it should be.
    pub fn validate(&self) -> Result<(), SynthError> {
        if self.width == 0 || !self.width.is_multiple_of(2) || self.width > 16384 {
            return Err(invalid("width", "an even number of pixels in 2..=16384", self.width));
        }
        if self.height == 0 || !self.height.is_multiple_of(2) || self.height > 16384 {
            return Err(invalid("height", "an even number of pixels in 2..=16384", self.height));
        }
        if self.frames == 0 || self.frames > 1_000_000 {
            return Err(invalid("frames", "at least 1 frame (at most 1 million)", self.frames));
        }
        check_finite_in("fps", self.fps, |v| v > 0.0 && v <= 1000.0, "a frame rate in (0, 1000]")?;
        if self.supersample == 0 || self.supersample > 8 {
            return Err(invalid("supersample", "a factor in 1..=8", self.supersample));
        }
        check_finite_in(
            "speed_mps",
            self.speed_mps,
            |v| (0.0..=60.0).contains(&v),
            "metres per second in [0, 60]",
        )?;
        check_finite_in(
            "far_clip_m",
            self.far_clip_m,
            |v| v > 1.0 && v <= 255.0,
            "metres in (1, 255]",
        )?;
        if let Some(k) = &self.intrinsics {
            check_finite_in(
                "intrinsics.fx",
                k.fx,
                |v| v > 0.0,
                "a positive focal length in pixels",
            )?;
            check_finite_in(
                "intrinsics.fy",
                k.fy,
                |v| v > 0.0,
                "a positive focal length in pixels",
            )?;
            check_finite_in("intrinsics.cx", k.cx, |_| true, "a finite principal point in pixels")?;
            check_finite_in("intrinsics.cy", k.cy, |_| true, "a finite principal point in pixels")?;
        }
        if self.trajectory == TrajectoryKind::Orbit {
            // The circle stays on the asphalt, where nothing stands, only when nothing drives.
            if self.scene.moving_objects > 0 {
                return Err(invalid(
                    "scene.moving_objects",
                    "0 for the orbit trajectory (vehicles would drive through the camera)",
                    self.scene.moving_objects,
                ));
            }
            if self.scene.road_half_width_m < super::trajectory::ORBIT_MIN_ROAD_HALF_WIDTH_M {
                return Err(invalid(
                    "scene.road_half_width_m",
                    "at least 3.5 m for the orbit trajectory (its circle must stay on the road)",
                    self.scene.road_half_width_m,
                ));
            }
        }
        let total_m = self.frames as f64 / self.fps * self.speed_mps;
        if total_m > 200_000.0 {
            return Err(invalid(
                "frames",
                "a drive shorter than 200 km (frames / fps * speed_mps)",
                self.frames,
            ));
        }
        self.scene.validate()
    }

    /// The camera intrinsics of every frame.
    pub fn camera_intrinsics(&self) -> Intrinsics {
        let (w, h) = (self.width as f64, self.height as f64);
        let k = self.intrinsics.unwrap_or(PinholeConfig {
            fx: 0.58 * w,
            fy: 1.92 * h,
            cx: 0.5 * w,
            cy: 0.5 * h,
        });
        Intrinsics {
            fx: k.fx,
            fy: k.fy,
            cx: k.cx,
            cy: k.cy,
            width: self.width,
            height: self.height,
            distortion: None,
        }
    }
}

impl SceneConfig {
    /// Checks every field, naming the first bad one (as `scene.<field>`).
    pub fn validate(&self) -> Result<(), SynthError> {
        check_finite_in(
            "scene.road_half_width_m",
            self.road_half_width_m,
            |v| (2.0..=20.0).contains(&v),
            "metres in [2, 20]",
        )?;
        check_finite_in(
            "scene.curviness",
            self.curviness,
            |v| (0.0..=3.0).contains(&v),
            "a factor in [0, 3]",
        )?;
        check_finite_in(
            "scene.building_fraction",
            self.building_fraction,
            |v| (0.0..=1.0).contains(&v),
            "a fraction in [0, 1]",
        )?;
        check_finite_in(
            "scene.boxes_per_100m",
            self.boxes_per_100m,
            |v| (0.0..=100.0).contains(&v),
            "a count in [0, 100]",
        )?;
        check_finite_in(
            "scene.pole_spacing_m",
            self.pole_spacing_m,
            |v| v >= 2.0,
            "metres, at least 2",
        )?;
        if self.moving_objects > 10_000 {
            return Err(invalid("scene.moving_objects", "at most 10000", self.moving_objects));
        }
        check_finite_in("scene.sun_azimuth_deg", self.sun_azimuth_deg, |_| true, "finite degrees")?;
        check_finite_in(
            "scene.sun_elevation_deg",
            self.sun_elevation_deg,
            |v| v > 0.0 && v <= 90.0,
            "degrees in (0, 90]",
        )?;
        check_finite_in(
            "scene.ambient",
            self.ambient,
            |v| (0.0..=1.0).contains(&v),
            "a fraction in [0, 1]",
        )?;
        Ok(())
    }
}
