//! Per-frame depth metrics, their accumulation over a sequence and the summary table.
//!
//! Over the valid pixels (N of them, ground truth `g`, prediction `p` after scaling and
//! clamping):
//! `abs_rel = mean(|g − p| / g)`, `sq_rel = mean((g − p)² / g)`, `rmse = sqrt(mean((g − p)²))`,
//! `rmse_log = sqrt(mean((ln g − ln p)²))`, and `a_k` = the fraction of pixels with
//! `max(g / p, p / g) < 1.25^k`.

use super::{EvalError, EvalProtocol};
use crate::frame::DepthMap;
use serde::{Deserialize, Serialize};
use std::fmt::Write as _;

/// The Garg crop fractions (top, bottom, left, right) of the KITTI Eigen evaluation.
const GARG_CROP: [f64; 4] = [0.40810811, 0.99189189, 0.03594771, 0.96405229];

/// Metrics of one frame.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct FrameMetrics {
    pub abs_rel: f64,
    pub sq_rel: f64,
    pub rmse: f64,
    pub rmse_log: f64,
    pub a1: f64,
    pub a2: f64,
    pub a3: f64,
    /// median(gt) / median(pred): applied with median scaling; without it, how far the
    /// prediction is from metric (1 = right scale).
    pub scale_ratio: f64,
    /// The number of pixels evaluated.
    pub valid_pixels: usize,
}

impl FrameMetrics {
    /// The seven metrics in table order: abs_rel, sq_rel, rmse, rmse_log, a1, a2, a3.
    pub fn values(&self) -> [f64; 7] {
        [self.abs_rel, self.sq_rel, self.rmse, self.rmse_log, self.a1, self.a2, self.a3]
    }
}

/// Metrics averaged over frames, with the statistics of the median-scaling ratios.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct MeanMetrics {
    pub abs_rel: f64,
    pub sq_rel: f64,
    pub rmse: f64,
    pub rmse_log: f64,
    pub a1: f64,
    pub a2: f64,
    pub a3: f64,
    /// The number of frames averaged.
    pub frames: usize,
    /// Median over frames of the per-frame scale ratios.
    pub scale_ratio_median: f64,
    /// Population standard deviation over frames of the per-frame scale ratios.
    pub scale_ratio_std: f64,
}

impl MeanMetrics {
    /// The seven metrics in table order: abs_rel, sq_rel, rmse, rmse_log, a1, a2, a3.
    pub fn values(&self) -> [f64; 7] {
        [self.abs_rel, self.sq_rel, self.rmse, self.rmse_log, self.a1, self.a2, self.a3]
    }
}

impl std::fmt::Display for MeanMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&format_metrics_table(&self.values()))
    }
}

/// The Garg crop of a `width` x `height` ground truth as `(x0, y0, x1, y1)`, end-exclusive,
/// with the fractions truncated to integers as the reference evaluation does.
pub fn garg_crop_rect(width: u32, height: u32) -> (u32, u32, u32, u32) {
    let [top, bottom, left, right] = GARG_CROP;
    let h = height as f64;
    let w = width as f64;
    ((left * w) as u32, (top * h) as u32, (right * w) as u32, (bottom * h) as u32)
}

fn check_map(map: &DepthMap, what: &'static str) -> Result<(), EvalError> {
    if map.width == 0
        || map.height == 0
        || map.data.len() != map.width as usize * map.height as usize
    {
        return Err(EvalError::BadSize {
            context: String::new(),
            what,
            width: map.width,
            height: map.height,
            len: map.data.len(),
        });
    }
    Ok(())
}

/// The median of `values` (mean of the two middle values for an even count; NaN when empty),
/// reordering them.
pub fn median(values: &mut [f64]) -> f64 {
    let n = values.len();
    if n == 0 {
        return f64::NAN;
    }
    let (_, &mut upper, _) = values.select_nth_unstable_by(n / 2, f64::total_cmp);
    if n % 2 == 1 {
        upper
    } else {
        let lower = values[..n / 2].iter().copied().fold(f64::NEG_INFINITY, f64::max);
        0.5 * (lower + upper)
    }
}

/// Evaluates one predicted depth map (any size; resized bilinearly to the ground truth's)
/// against ground truth (metres, 0 invalid) under `protocol`.
pub fn compute_frame_metrics(
    pred: &DepthMap,
    gt: &DepthMap,
    protocol: &EvalProtocol,
) -> Result<FrameMetrics, EvalError> {
    protocol.validate()?;
    check_map(pred, "prediction")?;
    check_map(gt, "ground truth")?;
    if let Some(i) = pred.data.iter().position(|v| !v.is_finite()) {
        return Err(EvalError::NonFinitePrediction {
            context: String::new(),
            x: (i % pred.width as usize) as u32,
            y: (i / pred.width as usize) as u32,
            value: pred.data[i],
        });
    }
    let resized;
    let pred = if (pred.width, pred.height) == (gt.width, gt.height) {
        pred
    } else {
        resized = pred.resized_bilinear(gt.width, gt.height);
        &resized
    };

    let (x0, y0, x1, y1) = if protocol.garg_crop {
        garg_crop_rect(gt.width, gt.height)
    } else {
        (0, 0, gt.width, gt.height)
    };
    let (min, max) = (protocol.min_depth, protocol.max_depth);
    let width = gt.width as usize;
    let mut gt_valid = Vec::new();
    let mut pred_valid = Vec::new();
    for y in y0 as usize..y1 as usize {
        let gt_row = &gt.data[y * width..][x0 as usize..x1 as usize];
        let pred_row = &pred.data[y * width..][x0 as usize..x1 as usize];
        for (&g, &p) in gt_row.iter().zip(pred_row) {
            let g = g as f64;
            if g > min && g < max {
                gt_valid.push(g);
                pred_valid.push(p as f64);
            }
        }
    }
    if gt_valid.is_empty() {
        return Err(EvalError::NoValidPixels {
            context: String::new(),
            min_depth: min,
            max_depth: max,
            garg_crop: protocol.garg_crop,
        });
    }

    let median_pred = median(&mut pred_valid.clone());
    if protocol.median_scaling && (median_pred.is_nan() || median_pred <= 0.0) {
        return Err(EvalError::DegeneratePrediction {
            context: String::new(),
            median: median_pred,
        });
    }
    // Reported either way: without median scaling, how far the prediction is from metric.
    let scale_ratio = median(&mut gt_valid.clone()) / median_pred;
    let applied = if protocol.median_scaling { scale_ratio } else { 1.0 };

    let n = gt_valid.len() as f64;
    let (mut abs_rel, mut sq_rel, mut sq, mut sq_log) = (0.0, 0.0, 0.0, 0.0);
    let (mut a1, mut a2, mut a3) = (0usize, 0usize, 0usize);
    for (&g, &p) in gt_valid.iter().zip(&pred_valid) {
        let p = (p * applied).clamp(min, max);
        let diff = g - p;
        abs_rel += diff.abs() / g;
        sq_rel += diff * diff / g;
        sq += diff * diff;
        let log_diff = g.ln() - p.ln();
        sq_log += log_diff * log_diff;
        let ratio = (g / p).max(p / g);
        a1 += (ratio < 1.25) as usize;
        a2 += (ratio < 1.25 * 1.25) as usize;
        a3 += (ratio < 1.25 * 1.25 * 1.25) as usize;
    }
    Ok(FrameMetrics {
        abs_rel: abs_rel / n,
        sq_rel: sq_rel / n,
        rmse: (sq / n).sqrt(),
        rmse_log: (sq_log / n).sqrt(),
        a1: a1 as f64 / n,
        a2: a2 as f64 / n,
        a3: a3 as f64 / n,
        scale_ratio,
        valid_pixels: gt_valid.len(),
    })
}

/// Collects per-frame metrics over a sequence and averages them.
#[derive(Clone, Debug, Default)]
pub struct MetricsAccumulator {
    rows: Vec<(u64, FrameMetrics)>,
}

impl MetricsAccumulator {
    pub fn new() -> Self {
        Self::default()
    }

    /// Records the metrics of frame `frame`.
    pub fn push(&mut self, frame: u64, metrics: FrameMetrics) {
        self.rows.push((frame, metrics));
    }

    /// Evaluates frame `frame` and records its metrics; errors name the frame.
    pub fn evaluate(
        &mut self,
        frame: u64,
        pred: &DepthMap,
        gt: &DepthMap,
        protocol: &EvalProtocol,
    ) -> Result<FrameMetrics, EvalError> {
        let metrics = compute_frame_metrics(pred, gt, protocol).map_err(|e| e.in_frame(frame))?;
        self.push(frame, metrics);
        Ok(metrics)
    }

    /// The recorded (frame, metrics) rows in push order.
    pub fn rows(&self) -> &[(u64, FrameMetrics)] {
        &self.rows
    }

    pub fn len(&self) -> usize {
        self.rows.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// The per-frame metrics averaged over frames, with the scale ratios' median and
    /// standard deviation; `None` before any frame.
    pub fn mean(&self) -> Option<MeanMetrics> {
        if self.rows.is_empty() {
            return None;
        }
        let n = self.rows.len() as f64;
        let mut sums = [0.0f64; 7];
        for (_, m) in &self.rows {
            for (s, v) in sums.iter_mut().zip(m.values()) {
                *s += v;
            }
        }
        let mut ratios: Vec<f64> = self.rows.iter().map(|(_, m)| m.scale_ratio).collect();
        let ratio_mean = ratios.iter().sum::<f64>() / n;
        let ratio_var = ratios.iter().map(|r| (r - ratio_mean).powi(2)).sum::<f64>() / n;
        let [abs_rel, sq_rel, rmse, rmse_log, a1, a2, a3] = sums.map(|s| s / n);
        Some(MeanMetrics {
            abs_rel,
            sq_rel,
            rmse,
            rmse_log,
            a1,
            a2,
            a3,
            frames: self.rows.len(),
            scale_ratio_median: median(&mut ratios),
            scale_ratio_std: ratio_var.sqrt(),
        })
    }

    /// A per-frame CSV (`frame,abs_rel,…,a3,scale_ratio,valid_pixels`).
    pub fn to_csv(&self) -> String {
        let mut csv =
            String::from("frame,abs_rel,sq_rel,rmse,rmse_log,a1,a2,a3,scale_ratio,valid_pixels\n");
        for (frame, m) in &self.rows {
            let _ = write!(csv, "{frame}");
            for v in m.values() {
                let _ = write!(csv, ",{v:.6}");
            }
            let _ = writeln!(csv, ",{:.6},{}", m.scale_ratio, m.valid_pixels);
        }
        csv
    }
}

/// The seven metrics as a two-line table: a header
/// `abs_rel | sq_rel | rmse | rmse_log | a1 | a2 | a3` and the values to three decimals, in
/// right-aligned columns of width 8.
pub fn format_metrics_table(values: &[f64; 7]) -> String {
    const NAMES: [&str; 7] = ["abs_rel", "sq_rel", "rmse", "rmse_log", "a1", "a2", "a3"];
    let header: Vec<String> = NAMES.iter().map(|n| format!("{n:>8}")).collect();
    let row: Vec<String> = values.iter().map(|v| format!("{v:>8.3}")).collect();
    format!("{}\n{}\n", header.join(" | "), row.join(" | "))
}
