//! Metric scale without ground truth (`--metric-scale`): a self-supervised monocular network
//! predicts depth up to an unknown factor; a scale source turns its units into metres frame by
//! frame, with a confidence and what it fell back to when it could not measure.
//!
//! - `none`: the network's units (Monodepth2's disparity → depth mapping).
//! - `ground` ([`ground`]): a camera at a known height above a road (`--camera-height M`).
//! - `speed` ([`speed`]): the vehicle's odometry (a speed sidecar, `--speed-file F`; live, a
//!   Zenoh key, `--speed-key KEY`, [`live_speed`]; or in replay the dataset's ground-truth
//!   camera positions) against the adapter's motion; it also supervises the pose network's
//!   translation, so it needs `--adapt`.

pub mod ground;
pub mod live_speed;
pub mod speed;
pub mod tally;

use serde::Serialize;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// The scale source (`--metric-scale`).
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[serde(tag = "source", rename_all = "lowercase")]
pub enum MetricScale {
    /// The network's own units.
    #[default]
    None,
    /// A camera `camera_height` metres above the ground plane.
    Ground { camera_height: f64 },
    /// Metres travelled by the vehicle's odometry: a timestamped speed sidecar, the speed
    /// published on a Zenoh key (live), or (neither) the dataset's ground-truth camera
    /// positions.
    Speed {
        speed_file: Option<PathBuf>,
        #[serde(skip_serializing_if = "Option::is_none")]
        speed_key: Option<String>,
    },
}

impl MetricScale {
    /// `--metric-scale NAME` with `--camera-height` (needed by `ground`), and `--speed-file` or
    /// `--speed-key` (used by `speed`, one of them at most); errors name the flags.
    pub fn from_flags(
        name: &str,
        camera_height: Option<f64>,
        speed_file: Option<&Path>,
        speed_key: Option<&str>,
    ) -> Result<Self, String> {
        if let (Some(file), false) = (speed_file, name == "speed") {
            return Err(format!(
                "--speed-file {}: only used with --metric-scale speed (got `{name}`)",
                file.display()
            ));
        }
        if let Some(key) = speed_key {
            if name != "speed" {
                return Err(format!(
                    "--speed-key {key}: only used with --metric-scale speed (got `{name}`)"
                ));
            }
            if let Some(file) = speed_file {
                return Err(format!(
                    "--speed-file {} and --speed-key {key}: expected one speed input, not both",
                    file.display()
                ));
            }
            crate::sink::zenoh_live::check_input_key(key)
                .map_err(|e| format!("--speed-key {e}"))?;
        }
        match name {
            "speed" => Ok(MetricScale::Speed {
                speed_file: speed_file.map(Path::to_path_buf),
                speed_key: speed_key.map(str::to_owned),
            }),
            "none" => Ok(MetricScale::None),
            "ground" => match camera_height {
                Some(h) if h.is_finite() && h > 0.0 => Ok(MetricScale::Ground { camera_height: h }),
                Some(h) => {
                    Err(format!("--camera-height {h}: expected a positive height in metres"))
                }
                None => Err("--metric-scale ground needs --camera-height M (the camera's height \
                             above the road in metres, 1.65 for KITTI)"
                    .into()),
            },
            other => Err(format!("--metric-scale `{other}`: expected none, ground or speed")),
        }
    }

    /// The per-frame ground-plane estimator of `ground` (None for the other sources).
    pub fn ground_estimator(&self) -> Option<ground::GroundScale> {
        match *self {
            MetricScale::Ground { camera_height } => Some(ground::GroundScale::new(camera_height)),
            MetricScale::None | MetricScale::Speed { .. } => None,
        }
    }

    /// The flag value naming this source.
    pub fn name(&self) -> &'static str {
        match self {
            MetricScale::None => "none",
            MetricScale::Ground { .. } => "ground",
            MetricScale::Speed { .. } => "speed",
        }
    }

    pub fn is_none(&self) -> bool {
        *self == MetricScale::None
    }
}

/// What a source served when it could not measure this frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ScaleFallback {
    /// The scale of the recent frames that could be measured.
    Previous,
    /// No scale yet: the network's units (scale 1).
    None,
}

/// One frame's scale.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct ScaleEstimate {
    /// Metres per network unit.
    pub scale: f64,
    /// How well this frame was measured, 0 to 1 (for `ground`, the plane's inlier share).
    pub confidence: f64,
    /// Set when this frame could not be measured.
    pub fallback: Option<ScaleFallback>,
}

/// The latest scale of a source measured on another thread (`speed`: the adapter thread), read
/// by the outputs for every frame.
#[derive(Clone, Debug)]
pub struct SharedScale(Arc<Mutex<ScaleEstimate>>);

impl Default for SharedScale {
    fn default() -> Self {
        Self(Arc::new(Mutex::new(ScaleEstimate {
            scale: 1.0,
            confidence: 0.0,
            fallback: Some(ScaleFallback::None),
        })))
    }
}

impl SharedScale {
    pub fn set(&self, estimate: ScaleEstimate) {
        if let Ok(mut slot) = self.0.lock() {
            *slot = estimate;
        }
    }

    /// The latest estimate.
    pub fn get(&self) -> ScaleEstimate {
        self.0.lock().map(|e| *e).unwrap_or(ScaleEstimate {
            scale: 1.0,
            confidence: 0.0,
            fallback: Some(ScaleFallback::None),
        })
    }
}

/// A sequence's scale figures, for reports.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct ScaleSummary {
    pub source: MetricScale,
    /// Frames measured, frames that used the previous scale, frames without any scale.
    pub measured: u64,
    pub previous: u64,
    pub unscaled: u64,
    /// Median and spread (population standard deviation) of the served scales.
    pub scale_median: f64,
    pub scale_std: f64,
}

impl ScaleSummary {
    /// The summary of `estimates` from `source` ([`tally::ScaleTally`]).
    pub fn of(source: MetricScale, estimates: &[ScaleEstimate]) -> Self {
        let mut tally = tally::ScaleTally::new();
        estimates.iter().for_each(|e| tally.push(e));
        tally.summary(source)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_parse_or_say_what_is_missing() {
        assert_eq!(MetricScale::from_flags("none", None, None, None).unwrap(), MetricScale::None);
        assert_eq!(
            MetricScale::from_flags("ground", Some(1.65), None, None).unwrap(),
            MetricScale::Ground { camera_height: 1.65 }
        );
        let ground = |h| MetricScale::from_flags("ground", h, None, None).unwrap_err();
        assert!(ground(None).contains("--camera-height"));
        assert!(ground(Some(-1.0)).contains("positive"));
        let lidar = MetricScale::from_flags("lidar", None, None, None).unwrap_err();
        assert!(lidar.contains("none, ground or speed"));
        let file = Path::new("speed.csv");
        assert_eq!(
            MetricScale::from_flags("speed", None, Some(file), None).unwrap(),
            MetricScale::Speed { speed_file: Some(file.to_path_buf()), speed_key: None }
        );
        let stray = MetricScale::from_flags("ground", Some(1.65), Some(file), None).unwrap_err();
        assert!(stray.contains("--speed-file speed.csv"), "{stray}");
        let key = Some("vehicle/car-1/speed");
        assert_eq!(
            MetricScale::from_flags("speed", None, None, key).unwrap(),
            MetricScale::Speed { speed_file: None, speed_key: key.map(str::to_owned) }
        );
        let both = MetricScale::from_flags("speed", None, Some(file), key).unwrap_err();
        assert!(both.contains("--speed-key") && both.contains("not both"), "{both}");
        let stray = MetricScale::from_flags("none", None, None, key).unwrap_err();
        assert!(stray.contains("--speed-key vehicle/car-1/speed"), "{stray}");
        let wild = MetricScale::from_flags("speed", None, None, Some("vehicle/**")).unwrap_err();
        assert!(wild.starts_with("--speed-key") && wild.contains("wildcard"), "{wild}");
    }
}
