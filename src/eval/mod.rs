//! Depth evaluation with the standard monocular-depth metrics (abs_rel, sq_rel, rmse,
//! rmse_log, a1, a2, a3) and protocol of the Monodepth2 paper's evaluation: the prediction
//! resized bilinearly to the ground-truth size, ground truth valid inside (min, max), optional
//! Garg crop, per-frame median scaling, prediction clamped to [min, max], per-frame metrics
//! averaged over frames.

mod metrics;

pub use metrics::{
    FrameMetrics, MeanMetrics, MetricsAccumulator, compute_frame_metrics, format_metrics_table,
    garg_crop_rect, median,
};

use crate::source::dataset::DatasetKind;

/// Errors of depth evaluation.
#[derive(Debug, thiserror::Error)]
pub enum EvalError {
    /// No ground-truth pixel passed the validity mask (range and crop).
    #[error("{context}no valid ground-truth pixels in ({min_depth}, {max_depth}) m{crop}", crop = if *garg_crop { " inside the Garg crop" } else { "" })]
    NoValidPixels { context: String, min_depth: f64, max_depth: f64, garg_crop: bool },
    /// A zero-sized prediction or ground truth, or a data length that does not match the size.
    #[error("{context}{what}: size {width}x{height} with {len} values is not a valid depth map")]
    BadSize { context: String, what: &'static str, width: u32, height: u32, len: usize },
    /// A NaN or infinite predicted depth.
    #[error("{context}non-finite predicted depth {value} at pixel ({x}, {y})")]
    NonFinitePrediction { context: String, x: u32, y: u32, value: f32 },
    /// A prediction whose median over the valid pixels is not positive (median scaling
    /// impossible).
    #[error("{context}predicted depth has median {median} over the valid pixels; expected > 0")]
    DegeneratePrediction { context: String, median: f64 },
    /// A bad protocol (depth range).
    #[error(
        "evaluation protocol: expected 0 <= min_depth < max_depth, found {min_depth}..{max_depth}"
    )]
    BadProtocol { min_depth: f64, max_depth: f64 },
    /// A frame to evaluate came without ground-truth depth.
    #[error(
        "frame {frame}: the source has no ground-truth depth for it; evaluation needs a dataset with depth (kitti:, kitchen:, tum:)"
    )]
    NoGroundTruth { frame: u64 },
    /// Nothing was evaluated.
    #[error("no frame was evaluated: the frame selection is empty")]
    NoFrames,
}

impl EvalError {
    /// This error with "frame N: " prepended to its message.
    pub fn in_frame(mut self, frame: u64) -> Self {
        let prefix = format!("frame {frame}: ");
        match &mut self {
            EvalError::NoValidPixels { context, .. }
            | EvalError::BadSize { context, .. }
            | EvalError::NonFinitePrediction { context, .. }
            | EvalError::DegeneratePrediction { context, .. } => context.insert_str(0, &prefix),
            EvalError::BadProtocol { .. }
            | EvalError::NoGroundTruth { .. }
            | EvalError::NoFrames => {}
        }
        self
    }
}

/// How predictions are compared with ground truth.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct EvalProtocol {
    /// Ground truth is valid where `min_depth < gt < max_depth`; predictions are clamped to
    /// `[min_depth, max_depth]`.
    pub min_depth: f64,
    pub max_depth: f64,
    /// Evaluate only inside the Garg et al. crop (KITTI).
    pub garg_crop: bool,
    /// Scale each prediction by median(gt) / median(pred) (relative-depth models); off for
    /// metric models.
    pub median_scaling: bool,
}

impl EvalProtocol {
    /// The standard protocol for a dataset: KITTI 1e-3..80 m with the Garg crop; indoor
    /// (kitchen, TUM) 0.1..10 m without crop; median scaling on.
    pub fn for_dataset(kind: DatasetKind) -> Self {
        match kind {
            DatasetKind::Kitti => {
                Self { min_depth: 1e-3, max_depth: 80.0, garg_crop: true, median_scaling: true }
            }
            DatasetKind::Kitchen | DatasetKind::Tum => {
                Self { min_depth: 0.1, max_depth: 10.0, garg_crop: false, median_scaling: true }
            }
        }
    }

    /// Checks the depth range.
    pub fn validate(&self) -> Result<(), EvalError> {
        if self.min_depth.is_finite()
            && self.max_depth.is_finite()
            && self.min_depth >= 0.0
            && self.min_depth < self.max_depth
        {
            Ok(())
        } else {
            Err(EvalError::BadProtocol { min_depth: self.min_depth, max_depth: self.max_depth })
        }
    }
}

/// Scores a predicted disparity against a frame's ground truth: the disparity is resized
/// bilinearly to the ground truth's size, converted to depth (min 0.1 m, max 100 m), then
/// evaluated under `protocol`.
pub fn score_disparity(
    disparity: &crate::engine::Disparity,
    frame: &crate::frame::Frame,
    protocol: &EvalProtocol,
) -> Result<FrameMetrics, EvalError> {
    score_disparity_scaled(disparity, frame, protocol, 1.0)
}

/// [`score_disparity`] with the depth multiplied by `metric_scale` (metres per network unit,
/// from a scale source) before it is scored.
pub fn score_disparity_scaled(
    disparity: &crate::engine::Disparity,
    frame: &crate::frame::Frame,
    protocol: &EvalProtocol,
    metric_scale: f64,
) -> Result<FrameMetrics, EvalError> {
    let gt = frame.gt_depth.as_ref().ok_or(EvalError::NoGroundTruth { frame: frame.index })?;
    let mut depth = disparity.resized_bilinear(gt.width, gt.height).to_depth(0.1, 100.0);
    if metric_scale != 1.0 {
        depth.data.iter_mut().for_each(|d| *d = (f64::from(*d) * metric_scale) as f32);
    }
    compute_frame_metrics(&depth, gt, protocol).map_err(|e| e.in_frame(frame.index))
}
