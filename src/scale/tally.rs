//! [`ScaleTally`]: a sequence's served scales summed up as they come, in constant memory, for a
//! live run that may last days: counts per fallback, mean and spread (Welford), and the median
//! from a histogram of the scale's logarithm with bins 0.1 % wide (reported at the bin's
//! centre, so within 0.05 % of the exact median).

use super::{MetricScale, ScaleEstimate, ScaleFallback, ScaleSummary};
use std::collections::BTreeMap;

/// Width of a median bin in ln(scale): 0.1 %.
const BIN: f64 = 0.001;

/// Bin of scales below every logarithm (zero, negative).
const NO_LOG: i64 = i64::MIN;

/// Bin of scales above every logarithm (+infinity, NaN), which sort last as before.
const ABOVE_ALL: i64 = i64::MAX;

/// See the module docs.
#[derive(Clone, Debug, Default)]
pub struct ScaleTally {
    measured: u64,
    previous: u64,
    unscaled: u64,
    count: u64,
    mean: f64,
    /// Sum of squared differences from the mean (Welford).
    m2: f64,
    /// Scales per bin of ln(scale) / [`BIN`]; only bins seen are stored (a few hundred for a
    /// real sequence).
    bins: BTreeMap<i64, u64>,
}

impl ScaleTally {
    /// An empty tally.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds one frame's served scale.
    pub fn push(&mut self, estimate: &ScaleEstimate) {
        match estimate.fallback {
            None => self.measured += 1,
            Some(ScaleFallback::Previous) => self.previous += 1,
            Some(ScaleFallback::None) => self.unscaled += 1,
        }
        let scale = estimate.scale;
        self.count += 1;
        let delta = scale - self.mean;
        self.mean += delta / self.count as f64;
        self.m2 += delta * (scale - self.mean);
        let bin = match scale {
            s if s > 0.0 && s.is_finite() => (s.ln() / BIN).round() as i64,
            s if s <= 0.0 => NO_LOG,
            _ => ABOVE_ALL,
        };
        *self.bins.entry(bin).or_insert(0) += 1;
    }

    /// The median scale (of an even count, the upper of the two middle ones) at its bin's
    /// centre; 1 when empty.
    fn median(&self) -> f64 {
        let rank = self.count / 2;
        let mut seen = 0;
        for (&bin, &n) in &self.bins {
            seen += n;
            if seen > rank {
                return match bin {
                    NO_LOG => 0.0,
                    ABOVE_ALL => f64::INFINITY,
                    _ => (bin as f64 * BIN).exp(),
                };
            }
        }
        1.0
    }

    /// The summary for reports, with `source` named.
    pub fn summary(&self, source: MetricScale) -> ScaleSummary {
        ScaleSummary {
            source,
            measured: self.measured,
            previous: self.previous,
            unscaled: self.unscaled,
            scale_median: self.median(),
            scale_std: (self.m2 / self.count.max(1) as f64).max(0.0).sqrt(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::ScaleTally;
    use crate::scale::{MetricScale, ScaleEstimate, ScaleFallback, ScaleSummary};

    fn estimate(scale: f64, fallback: Option<ScaleFallback>) -> ScaleEstimate {
        ScaleEstimate { scale, confidence: 1.0, fallback }
    }

    #[test]
    fn the_tally_matches_the_exact_summary_within_its_bin() {
        let mut tally = ScaleTally::new();
        let mut all = Vec::new();
        for i in 0..1001 {
            let fallback = match i % 7 {
                0 => Some(ScaleFallback::Previous),
                1 => Some(ScaleFallback::None),
                _ => None,
            };
            let e = estimate(0.5 + 3.0 * ((i * 37) % 1001) as f64 / 1001.0, fallback);
            tally.push(&e);
            all.push(e);
        }
        let streamed = tally.summary(MetricScale::None);
        let mut scales: Vec<f64> = all.iter().map(|e| e.scale).collect();
        scales.sort_by(f64::total_cmp);
        let exact_median = scales[scales.len() / 2];
        let mean = scales.iter().sum::<f64>() / scales.len() as f64;
        let exact_std =
            (scales.iter().map(|s| (s - mean).powi(2)).sum::<f64>() / scales.len() as f64).sqrt();
        assert!((streamed.scale_median / exact_median - 1.0).abs() < 5.1e-4, "{streamed:?}");
        assert!((streamed.scale_std - exact_std).abs() < 1e-9, "{streamed:?}");
        assert_eq!((streamed.measured, streamed.previous, streamed.unscaled), (715, 143, 143));
        assert_eq!(ScaleSummary::of(MetricScale::None, &all), streamed);
    }

    #[test]
    fn an_empty_tally_and_scales_without_a_logarithm() {
        assert_eq!(ScaleTally::new().summary(MetricScale::None).scale_median, 1.0);
        let mut tally = ScaleTally::new();
        for s in [0.0, 0.0, 2.0] {
            tally.push(&estimate(s, None));
        }
        assert_eq!(tally.summary(MetricScale::None).scale_median, 0.0);
        // Infinite and NaN scales sort above every other, as a sorted list has them.
        let mut above = ScaleTally::new();
        for s in [f64::INFINITY, f64::NAN, 2.0] {
            above.push(&estimate(s, None));
        }
        assert_eq!(above.summary(MetricScale::None).scale_median, f64::INFINITY);
        // A day of frames at 30 fps keeps a handful of bins, not 2.6 million scales.
        let mut long = ScaleTally::new();
        for i in 0..2_592_000u64 {
            long.push(&estimate(10.0 + (i % 5) as f64 * 0.1, None));
        }
        assert_eq!(long.bins.len(), 5);
        assert!((long.summary(MetricScale::None).scale_median / 10.2 - 1.0).abs() < 5e-4);
    }
}
