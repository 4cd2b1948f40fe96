//! Metric scale without ground truth (`--metric-scale`): a self-supervised monocular network
//! predicts depth up to an unknown factor; a scale source turns its units into metres frame by
//! frame, with a confidence and what it fell back to when it could not measure.
//!
//! - `none`: the network's units (Monodepth2's disparity → depth mapping).
//! - `ground` ([`ground`]): a camera at a known height above a road (`--camera-height M`).

pub mod ground;

use serde::Serialize;

/// The scale source (`--metric-scale`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
#[serde(tag = "source", rename_all = "lowercase")]
pub enum MetricScale {
    /// The network's own units.
    #[default]
    None,
    /// A camera `camera_height` metres above the ground plane.
    Ground { camera_height: f64 },
}

impl MetricScale {
    /// `--metric-scale NAME` with `--camera-height` (needed by `ground`); errors name the flags.
    pub fn from_flags(name: &str, camera_height: Option<f64>) -> Result<Self, String> {
        match name {
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
            other => Err(format!("--metric-scale `{other}`: expected none or ground")),
        }
    }

    /// A per-sequence estimator of this source (None for `none`).
    pub fn estimator(&self) -> Option<ground::GroundScale> {
        match *self {
            MetricScale::None => None,
            MetricScale::Ground { camera_height } => Some(ground::GroundScale::new(camera_height)),
        }
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
    /// The summary of `estimates` from `source`.
    pub fn of(source: MetricScale, estimates: &[ScaleEstimate]) -> Self {
        let count =
            |f: Option<ScaleFallback>| estimates.iter().filter(|e| e.fallback == f).count() as u64;
        let mut scales: Vec<f64> = estimates.iter().map(|e| e.scale).collect();
        scales.sort_by(f64::total_cmp);
        let n = scales.len().max(1) as f64;
        let mean = scales.iter().sum::<f64>() / n;
        Self {
            source,
            measured: count(None),
            previous: count(Some(ScaleFallback::Previous)),
            unscaled: count(Some(ScaleFallback::None)),
            scale_median: scales.get(scales.len() / 2).copied().unwrap_or(1.0),
            scale_std: (scales.iter().map(|s| (s - mean).powi(2)).sum::<f64>() / n).sqrt(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_parse_or_say_what_is_missing() {
        assert_eq!(MetricScale::from_flags("none", None).unwrap(), MetricScale::None);
        assert_eq!(
            MetricScale::from_flags("ground", Some(1.65)).unwrap(),
            MetricScale::Ground { camera_height: 1.65 }
        );
        assert!(MetricScale::from_flags("ground", None).unwrap_err().contains("--camera-height"));
        assert!(MetricScale::from_flags("ground", Some(-1.0)).unwrap_err().contains("positive"));
        assert!(MetricScale::from_flags("lidar", None).unwrap_err().contains("none or ground"));
    }
}
