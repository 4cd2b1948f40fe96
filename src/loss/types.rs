//! The loss's public types: its settings ([`LossConfig`]), inputs ([`LossInputs`], [`Pose6`]),
//! outputs with gradients ([`LossOutputs`], [`ScaleLoss`]) and errors ([`LossError`]).

use std::path::PathBuf;

/// Errors of the loss: bad shapes, non-finite values, bad configuration, unreadable files.
#[derive(Debug, thiserror::Error)]
pub enum LossError {
    #[error("loss input `{field}`: expected {expected}, got {got}")]
    Shape { field: String, expected: String, got: String },
    #[error("loss input `{field}` holds a non-finite value (NaN or infinity) at index {index}")]
    NonFinite { field: String, index: usize },
    #[error("loss config `{field}`: expected {expected}, got {got}")]
    Config { field: &'static str, expected: &'static str, got: String },
    #[error("{}: {reason}", path.display())]
    File { path: PathBuf, reason: String },
    #[error("{}: {source}", path.display())]
    Io { path: PathBuf, source: std::io::Error },
}

/// Loss hyper-parameters (Monodepth2's defaults).
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LossConfig {
    pub min_depth: f32,
    pub max_depth: f32,
    pub ssim_weight: f32,
    pub smoothness_weight: f32,
    pub automask: bool,
    pub tie_break_std: f32,
    pub seed: u64,
}

impl Default for LossConfig {
    fn default() -> Self {
        Self {
            min_depth: 0.1,
            max_depth: 100.0,
            ssim_weight: 0.85,
            smoothness_weight: 1e-3,
            automask: true,
            tie_break_std: 1e-5,
            seed: 0,
        }
    }
}

impl LossConfig {
    /// Checks every field, naming the first bad one.
    pub fn validate(&self) -> Result<(), LossError> {
        let bad = |field, expected, got: f32| {
            Err(LossError::Config { field, expected, got: got.to_string() })
        };
        if !(self.min_depth.is_finite() && self.min_depth > 0.0) {
            return bad("min_depth", "a finite value > 0", self.min_depth);
        }
        if !(self.max_depth.is_finite() && self.max_depth > self.min_depth) {
            return bad("max_depth", "a finite value > min_depth", self.max_depth);
        }
        if !(0.0..=1.0).contains(&self.ssim_weight) {
            return bad("ssim_weight", "a value in [0, 1]", self.ssim_weight);
        }
        if !(self.smoothness_weight.is_finite() && self.smoothness_weight >= 0.0) {
            return bad("smoothness_weight", "a finite value >= 0", self.smoothness_weight);
        }
        if !(self.tie_break_std.is_finite() && self.tie_break_std >= 0.0) {
            return bad("tie_break_std", "a finite value >= 0", self.tie_break_std);
        }
        Ok(())
    }
}

/// Pose network output for one source: axis-angle + translation; `invert` as Monodepth2 does for
/// the source before the target (T = inverse(transform(axis_angle, translation))).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Pose6<T = f32> {
    pub axis_angle: [T; 3],
    pub translation: [T; 3],
    pub invert: bool,
}

impl<T: Copy> Pose6<T> {
    /// The pose as one row of six values, axis-angle then translation: the layout of the pose
    /// network's output rows and of the fused CUDA loss's pose input.
    pub fn row(&self) -> [T; 6] {
        let (r, t) = (self.axis_angle, self.translation);
        [r[0], r[1], r[2], t[0], t[1], t[2]]
    }

    /// The pose of a [`Pose6::row`] (its first six values).
    pub fn from_row(row: &[T], invert: bool) -> Self {
        Self { axis_angle: [row[0], row[1], row[2]], translation: [row[3], row[4], row[5]], invert }
    }
}

impl Pose6<f32> {
    /// The length of the translation.
    pub fn translation_length(&self) -> f32 {
        self.translation.iter().map(|v| v * v).sum::<f32>().sqrt()
    }
}

/// One target frame with its sources, disparities and poses.
#[derive(Debug, Clone, Copy)]
pub struct LossInputs<'a, T = f32> {
    /// Full network resolution W x H.
    pub width: usize,
    pub height: usize,
    /// Planar 3 x H x W, RGB in [0, 1].
    pub target: &'a [T],
    /// Each planar 3 x H x W.
    pub sources: &'a [&'a [T]],
    /// Scale s: sigmoid disparity at (H >> s) x (W >> s).
    pub disparities: &'a [&'a [T]],
    /// Target at each scale's resolution, 3 x (H>>s) x (W>>s); [0] is `target` (for smoothness).
    pub target_pyramid: &'a [&'a [T]],
    /// One per source.
    pub poses: &'a [Pose6<T>],
    /// fx, fy, cx, cy at W x H (pixel centres at integer coordinates).
    pub intrinsics: [T; 4],
    /// Explicit noise, n_sources x H x W; None = N(0, tie_break_std) from `seed`.
    pub tie_break_noise: Option<&'a [T]>,
}

/// The two parts of one scale's loss.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct ScaleLoss<T = f32> {
    pub photometric: T,
    /// Already weighted by smoothness_weight / 2^s.
    pub smoothness: T,
}

/// Loss, its parts and its gradients.
#[derive(Debug, Clone, Default)]
pub struct LossOutputs<T = f32> {
    pub total: T,
    /// Mean over scales of the photometric (per-pixel minimum) part.
    pub photometric: T,
    /// Mean over scales of the weighted smoothness part.
    pub smoothness: T,
    pub per_scale: Vec<ScaleLoss<T>>,
    /// Scale 0: per-pixel minimum, H x W.
    pub min_error: Vec<T>,
    /// Scale 0: 1 where a warped error is the minimum.
    pub automask: Vec<u8>,
    /// Scale 0: fraction of pixels where an identity error won.
    pub masked_fraction: T,
    /// Scale 0: argmin index into [identity_0..identity_{n-1}, warped_0..warped_{n-1}]
    /// (without automask: warped index i).
    pub winner: Vec<u8>,
    /// d total / d disparity, per scale, same shapes as inputs (each empty after `forward`).
    pub grad_disparities: Vec<Vec<T>>,
    /// d total / d (axis_angle, translation), per source.
    pub grad_poses: Vec<[T; 6]>,
    /// d total / d (fx, fy, cx, cy).
    pub grad_intrinsics: [T; 4],
}
