//! The metric scale of a lock-step `eval --adapt` run (`--metric-scale`): each frame is scored
//! in metres with the scale known before the adapter sees it (the online rule), from
//!
//! - `ground`: the road plane fitted in the served depth of this frame;
//! - `speed`: the adapter's fresh triplets against the odometry ([`AdapterScale`]), with the
//!   odometry read from `--speed-file` at the frame's timestamp, or from the dataset's
//!   ground-truth camera positions (standing in for a visual-inertial odometry input; see
//!   [`Odometry`]). The same readings go into the frames the adapter trains on, for
//!   velocity supervision.

use crate::adapt::metric::AdapterScale;
use crate::adapt::{AdaptStats, Served};
use crate::engine::Disparity;
use crate::frame::Frame;
use crate::scale::ground::GroundScale;
use crate::scale::speed::Odometry;
use crate::scale::{MetricScale, ScaleEstimate, ScaleSummary};

enum Source {
    None,
    Ground(GroundScale),
    Speed { odometry: Odometry, scale: AdapterScale },
}

/// The scale source of one lock-step run, and the estimates it served.
pub(crate) struct LockStepScale {
    source: MetricScale,
    state: Source,
    estimates: Vec<ScaleEstimate>,
}

impl LockStepScale {
    pub(crate) fn new(source: &MetricScale) -> crate::Result<Self> {
        let state = match source {
            MetricScale::None => Source::None,
            MetricScale::Ground { camera_height } => {
                Source::Ground(GroundScale::new(*camera_height))
            }
            MetricScale::Speed { speed_key: Some(key), .. } => {
                return Err(crate::Error::Other(format!(
                    "--speed-key {key}: a live input, read by `run`; a lock-step evaluation \
                     replays recorded frames: pass --speed-file FILE (time,speed) instead"
                )));
            }
            MetricScale::Speed { speed_file, speed_key: None } => {
                let odometry =
                    Odometry::open(speed_file.as_deref()).map_err(crate::Error::Other)?;
                Source::Speed { odometry, scale: AdapterScale::new() }
            }
        };
        Ok(Self { source: source.clone(), state, estimates: Vec::new() })
    }

    /// The odometer reading of `frame` (metres; `speed` only), recorded for the scale and
    /// handed to the adapter's frame for velocity supervision. `position` is the frame's
    /// place in the run (the adapter's frame index); `dataset` names the data in errors.
    pub(crate) fn odometer(
        &mut self,
        frame: &Frame,
        position: u64,
        dataset: &str,
    ) -> crate::Result<Option<f64>> {
        let Source::Speed { odometry, scale } = &mut self.state else { return Ok(None) };
        let reading = odometry.reading(frame, dataset).map_err(crate::Error::Other)?;
        if let Some(metres) = reading {
            scale.record(position, metres);
        }
        Ok(reading)
    }

    /// The scale this frame is scored with (None for `none`): for `ground` measured on this
    /// frame's prediction, for `speed` what the triplets before it gave.
    pub(crate) fn scale_for(
        &mut self,
        disparity: &Disparity,
        frame: &Frame,
        serving: Served,
        depth_range: (f32, f32),
    ) -> crate::Result<Option<ScaleEstimate>> {
        let estimate = match &mut self.state {
            Source::None => return Ok(None),
            Source::Ground(ground) => {
                let k = frame.intrinsics.ok_or_else(|| {
                    crate::Error::Other(format!(
                        "frame {}: --metric-scale ground needs the camera's intrinsics, and this \
                         dataset gives none",
                        frame.index
                    ))
                })?;
                ground.update(&disparity.to_depth(depth_range.0, depth_range.1), &k)
            }
            Source::Speed { scale, .. } => scale.current(serving),
        };
        self.estimates.push(estimate);
        Ok(Some(estimate))
    }

    /// After the adapter's steps on a frame.
    pub(crate) fn after_steps(&mut self, stats: &AdaptStats) {
        if let Source::Speed { scale, .. } = &mut self.state {
            scale.after_steps(stats);
        }
    }

    /// The run's scale figures (None for `none`).
    pub(crate) fn summary(&self) -> Option<ScaleSummary> {
        (!self.source.is_none()).then(|| ScaleSummary::of(self.source.clone(), &self.estimates))
    }
}
