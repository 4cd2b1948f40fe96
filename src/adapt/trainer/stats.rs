//! What the adapter reports: its counters and last loss parts ([`AdaptStats`], printed live
//! and saved in checkpoints), the never-worse guard's score of each fresh triplet
//! ([`FreshScore`]).

use crate::adapt::serve_guard::Served;
use serde::{Deserialize, Serialize};

/// Counters and the last step's loss parts (printed live, saved in checkpoints).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct AdaptStats {
    /// Accepted (applied) steps.
    pub steps: u64,
    /// Steps rejected for a non-finite input, loss or gradient.
    pub rejected: u64,
    /// Steps skipped because the camera was stationary.
    pub skipped_stationary: u64,
    pub rollbacks: u64,
    pub published: u64,
    pub checkpoints: u64,
    /// Triplets formed so far.
    pub triplets: u64,
    /// Of those, triplets whose three frames carried a gyro's orientation (`--gyro`): their
    /// pose refinement and the never-worse guard's scoring start at the measured rotations.
    #[serde(default)]
    pub rotation_priors: u64,
    pub last_total: f64,
    pub last_photometric: f64,
    pub last_smoothness: f64,
    pub last_distill: f64,
    /// Auto-masked fraction of the live sample.
    pub last_masked_fraction: f64,
    /// Fraction of pixels that received pseudo-depth supervision.
    pub last_distill_fraction: f64,
    /// Held-back loss of the student and of the frozen start at the last check.
    pub last_holdout_student: f64,
    pub last_holdout_anchor: f64,
    /// Mean |‖t‖ − metres travelled| of the last step's supervised translations (velocity
    /// supervision), metres; 0 when no triplet carried a distance.
    #[serde(default)]
    pub last_velocity: f64,
    /// Largest |θ − θ₀| over the adapted depth weights after the last accepted step.
    #[serde(default)]
    pub last_anchor_drift: f64,
    /// What the never-worse guard serves now, how often that changed, and its last window's
    /// loss ratio adapted / frozen (below 1: adaptation helps on the current scene).
    #[serde(default)]
    pub serving: Served,
    #[serde(default)]
    pub serve_switches: u64,
    #[serde(default, deserialize_with = "nan_if_null")]
    pub serve_ratio: f64,
    /// The window's mean log-depth deviation of the adapted from the frozen depth.
    #[serde(default, deserialize_with = "nan_if_null")]
    pub serve_deviation: f64,
    /// Fleet merges this adapter continued from (`run --adapt --fleet`).
    #[serde(default)]
    pub fleet_merges_adopted: u64,
    /// The last fresh triplet (scored before training on it): its spacing k, the photometric
    /// loss of the adapted and of the frozen weights, the current pose network's motion
    /// (axis-angle, translation: target→prev inverted, target→next) and the parallax that
    /// motion implies at the adapted depth's median, in pixels (f·|t| / median depth).
    #[serde(default)]
    pub fresh: FreshScore,
}

/// JSON has no NaN: serde_json writes a non-finite value as `null`; read it back as NaN.
fn nan_if_null<'de, D: serde::Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    Ok(Option::<f64>::deserialize(d)?.unwrap_or(f64::NAN))
}

/// The never-worse guard's view of one fresh triplet (see [`AdaptStats::fresh`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct FreshScore {
    pub target_index: u64,
    pub k: u64,
    #[serde(deserialize_with = "nan_if_null")]
    pub adapted_loss: f64,
    #[serde(deserialize_with = "nan_if_null")]
    pub frozen_loss: f64,
    /// [rx, ry, rz, tx, ty, tz] for (prev, target) and (target, next), network units.
    pub motion: [[f32; 6]; 2],
    #[serde(deserialize_with = "nan_if_null")]
    pub parallax_px: f64,
    /// Focal length fx at the network size, pixels.
    #[serde(deserialize_with = "nan_if_null")]
    pub fx: f64,
    /// Frozen median depth over adapted median depth on the target.
    #[serde(deserialize_with = "nan_if_null")]
    pub frozen_scale: f64,
    /// Among the pixels whose per-pixel minimum photometric error differs between the two
    /// (by more than 1e-3): the fraction where the adapted weights' error is lower, and the
    /// ratio of their summed errors adapted / frozen.
    #[serde(deserialize_with = "nan_if_null")]
    pub win_fraction: f64,
    #[serde(deserialize_with = "nan_if_null")]
    pub changed_ratio: f64,
    /// σ of log D_adapted − log D_frozen over the target's pixels (scale-invariant deviation).
    #[serde(deserialize_with = "nan_if_null")]
    pub deviation: f64,
    /// Pearson correlation of log D_adapted and log D_frozen over the target's pixels.
    #[serde(default, deserialize_with = "nan_if_null")]
    pub log_depth_correlation: f64,
    /// The live sample's refined motion (same layout as `motion`) and the refinement's
    /// photometric loss before / after, from the last step (zero without refinement).
    pub refined_motion: [[f32; 6]; 2],
    pub refine_loss: [f32; 2],
    /// With an odometry (`--metric-scale speed`, CPU loss backend): the lengths of the live
    /// sample's two translations at the photometric optimum along the refined directions, in
    /// the adapted depth's units (zero otherwise).
    #[serde(default)]
    pub travel_units: [f32; 2],
}
