//! Metric scale from the adapter (`--metric-scale speed`): the odometry says how many metres
//! the camera travelled between the frames of each fresh triplet, the adapter's motion for the
//! same frames says it in the adapted depth's units: the translation length at the photometric
//! optimum along the refined direction where the adapter searched it (CPU backend), else the
//! refined motion, else the pose network's. Their ratio, filtered by
//! [`SpeedScale`], is metres per unit of the adapted depth; while the never-worse guard serves
//! the frozen weights it is converted with the fresh triplet's frozen/adapted median ratio.
//!
//! Both drivers use it: the lock-step `eval --adapt` and the live adapter thread of `run`.

use super::AdaptStats;
use super::serve_guard::Served;
use crate::scale::speed::SpeedScale;
use crate::scale::{ScaleEstimate, ScaleFallback};
use std::collections::VecDeque;

/// Odometer readings kept for frames not yet in a scored triplet.
const READINGS: usize = 64;

/// Turns the adapter's fresh triplets into a metric scale.
#[derive(Debug, Default)]
pub struct AdapterScale {
    /// (frame index, metres travelled) of recent frames.
    readings: VecDeque<(u64, f64)>,
    speed: SpeedScale,
    last_target: Option<u64>,
    /// The estimate for the adapted depth, and the frozen/adapted median ratio with it.
    adapted: Option<ScaleEstimate>,
    frozen_scale: f64,
}

impl AdapterScale {
    pub fn new() -> Self {
        Self { frozen_scale: 1.0, ..Self::default() }
    }

    /// Records the odometer reading (metres) of frame `index`, before the adapter sees it.
    pub fn record(&mut self, index: u64, odometer: f64) {
        if self.readings.len() == READINGS {
            self.readings.pop_front();
        }
        self.readings.push_back((index, odometer));
    }

    fn reading(&self, index: u64) -> Option<f64> {
        self.readings.iter().rev().find(|(i, _)| *i == index).map(|&(_, d)| d)
    }

    /// After the adapter's steps on a frame: measures the fresh triplet if it is new. Returns
    /// whether a new triplet was measured.
    pub fn after_steps(&mut self, stats: &AdaptStats) -> bool {
        let fresh = &stats.fresh;
        if self.last_target == Some(fresh.target_index) || fresh.k == 0 {
            return false;
        }
        let (t, k) = (fresh.target_index, fresh.k);
        let (Some(prev), Some(target), Some(next)) =
            (t.checked_sub(k).and_then(|i| self.reading(i)), self.reading(t), self.reading(t + k))
        else {
            return false;
        };
        self.last_target = Some(t);
        // The translation lengths in the adapted depth's units: searched along the refined
        // directions where the adapter did (CPU backend), else the refined or network motion.
        let length = |row: &[f32; 6]| {
            row[3..].iter().map(|&v| f64::from(v) * f64::from(v)).sum::<f64>().sqrt()
        };
        let units = if fresh.travel_units.iter().all(|&u| u > 0.0) {
            fresh.travel_units.map(f64::from)
        } else if fresh.refine_loss[0] > 0.0 {
            fresh.refined_motion.each_ref().map(length)
        } else {
            fresh.motion.each_ref().map(length)
        };
        let mut estimate = self.speed.current();
        for (metres, units) in
            [((target - prev).abs(), units[0]), ((next - target).abs(), units[1])]
        {
            estimate = self.speed.update(metres, units);
        }
        self.adapted = Some(estimate);
        if fresh.frozen_scale.is_finite() && fresh.frozen_scale > 0.0 {
            self.frozen_scale = fresh.frozen_scale;
        }
        true
    }

    /// The scale for the depth of the weights now served (`serving`): metres per unit.
    pub fn current(&self, serving: Served) -> ScaleEstimate {
        let estimate = self.adapted.unwrap_or_else(|| self.speed.current());
        match (serving, estimate.fallback) {
            // No scale yet: the network's units either way.
            (_, Some(ScaleFallback::None)) | (Served::Adapted, _) => estimate,
            // Frozen depth = frozen_scale × adapted depth in units: fewer metres per unit.
            (Served::Frozen, _) => {
                ScaleEstimate { scale: estimate.scale / self.frozen_scale, ..estimate }
            }
        }
    }

    /// Pairs measured, and pairs skipped because the camera stood still.
    pub fn counts(&self) -> (u64, u64) {
        self.speed.counts()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stats(target: u64, k: u64, translation: f32, frozen_scale: f64) -> AdaptStats {
        let mut s = AdaptStats::default();
        s.fresh.target_index = target;
        s.fresh.k = k;
        s.fresh.motion = [[0.0, 0.0, 0.0, 0.0, 0.0, translation]; 2];
        s.fresh.frozen_scale = frozen_scale;
        s
    }

    #[test]
    fn metres_over_motion_for_the_served_weights() {
        let mut scale = AdapterScale::new();
        for i in 0..20 {
            scale.record(i, 0.5 * i as f64);
        }
        assert!(!scale.after_steps(&stats(4, 6, 0.1, 2.0)), "frame -2 has no reading");
        // Frames t-2, t, t+2: 1 m each way, 0.1 units: 10 m per adapted unit.
        assert!(scale.after_steps(&stats(4, 2, 0.1, 2.0)));
        assert!(!scale.after_steps(&stats(4, 2, 0.1, 2.0)), "the same triplet counts once");
        assert_eq!(scale.current(Served::Adapted).fallback, Some(ScaleFallback::None));
        for target in 5..9 {
            assert!(scale.after_steps(&stats(target, 2, 0.1, 2.0)));
        }
        let adapted = scale.current(Served::Adapted);
        assert!((adapted.scale - 10.0).abs() < 1e-6 && adapted.fallback.is_none(), "{adapted:?}");
        let frozen = scale.current(Served::Frozen);
        assert!((frozen.scale - 5.0).abs() < 1e-6, "{frozen:?}");
        assert_eq!(scale.counts(), (10, 0));
    }
}
