//! The adaptation settings (serde, all fields defaulted): optimiser, which layers adapt, triplet
//! and replay sizes, the stationary-skip rule, publishing and checkpoint cadence, guards and
//! self-distillation. Every part can be switched off for ablations.

use super::AdaptError;
use crate::loss::LossConfig;
use serde::{Deserialize, Serialize};

/// Which depth-network variables an adaptation step updates.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AdaptLayers {
    /// Every weight of encoder and decoder.
    All,
    /// The decoder only (variables under `depth.`).
    Decoder,
    /// Biases and normalisation parameters only: the cheapest steps.
    NormBias,
}

impl AdaptLayers {
    /// Whether a variable named `name` with `dims` dimensions adapts (the trainer's choice, and
    /// the weights a TensorRT engine must be able to refit).
    pub fn adapts(self, name: &str, dims: usize) -> bool {
        match self {
            Self::All => true,
            Self::Decoder => name.starts_with("depth."),
            Self::NormBias => dims == 1,
        }
    }
}

impl std::str::FromStr for AdaptLayers {
    type Err = AdaptError;
    fn from_str(s: &str) -> Result<Self, AdaptError> {
        match s {
            "all" => Ok(Self::All),
            "decoder" => Ok(Self::Decoder),
            "norm-bias" | "norm_bias" => Ok(Self::NormBias),
            _ => Err(AdaptError::config("layers", "all, decoder or norm-bias", s)),
        }
    }
}

/// Where the distillation teacher comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TeacherKind {
    /// A frozen copy of the starting depth network.
    Frozen,
    /// An exponential moving average of the student.
    Ema,
}

impl std::str::FromStr for TeacherKind {
    type Err = AdaptError;
    fn from_str(s: &str) -> Result<Self, AdaptError> {
        match s {
            "frozen" => Ok(Self::Frozen),
            "ema" => Ok(Self::Ema),
            _ => Err(AdaptError::config("distill.teacher", "frozen or ema", s)),
        }
    }
}

/// Self-distillation from a teacher's depth (scale-invariant log-depth loss).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DistillConfig {
    pub enabled: bool,
    pub teacher: TeacherKind,
    /// EMA decay per step (teacher = decay · teacher + (1 − decay) · student).
    pub ema_decay: f64,
    /// Initial weight λ of the pseudo-depth loss.
    pub lambda: f64,
    /// Forgetting factor γ: the weight at step n is λ·max(γⁿ, `lambda_floor`).
    pub gamma: f64,
    /// Lowest relative weight the forgetting factor decays to (0 = decay to nothing): a floor
    /// keeps the teacher's depth prior in the loss for the whole run.
    pub lambda_floor: f64,
    /// Pseudo-supervise only where the teacher's depth warps consistently into at least one
    /// source (photometric error below `consistency_threshold`) and the pixel is not
    /// auto-masked.
    pub multiview_mask: bool,
    pub consistency_threshold: f32,
}

impl Default for DistillConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            teacher: TeacherKind::Frozen,
            ema_decay: 0.99,
            lambda: 0.1,
            gamma: 0.98,
            lambda_floor: 0.0,
            multiview_mask: true,
            consistency_threshold: 0.15,
        }
    }
}

/// Guards against divergence and forgetting.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GuardConfig {
    /// Roll back to the last good weights when the held-back loss worsens too much.
    pub rollback: bool,
    /// Held-back triplets kept for the check (every `holdout_every`-th triplet goes there).
    pub holdout_size: usize,
    pub holdout_every: usize,
    /// Check every this many accepted steps.
    pub check_every: u64,
    /// Roll back when student loss > (1 + threshold) · teacher loss on the held-back set.
    pub threshold: f64,
    /// Forgetting guard (decoupled L2-SP): after every accepted step each adapted depth weight
    /// moves this fraction of the way back to its start value, θ ← θ − ρ·(θ − θ₀). With Adam
    /// moving a weight by about `learning_rate` per step, its drift from θ₀ stays within about
    /// `learning_rate / ρ`. 0 switches the guard off.
    pub anchor_pull: f64,
    /// Never-worse guard: serve the adapted weights only while their photometric loss on the
    /// last `serve_window` fresh triplets (scored before any step trains on them) is at most
    /// (1 + `serve_tolerance`) times the frozen start weights'; otherwise, and until
    /// `serve_min_samples` triplets were scored, serve the frozen weights. Off: always serve
    /// the adapted weights.
    pub serve_guard: bool,
    pub serve_window: usize,
    /// Fresh triplets scored before the adapted weights may be served at all.
    pub serve_min_samples: usize,
    pub serve_tolerance: f64,
    /// The guard's trust region: when the adapted depth's scale-invariant log-depth deviation
    /// from the frozen depth (mean over the window) exceeds `serve_trust_deviation`, the adapted
    /// loss must instead be at most (1 − `serve_evidence_margin`) times the frozen one's.
    pub serve_trust_deviation: f64,
    pub serve_evidence_margin: f64,
}

impl Default for GuardConfig {
    fn default() -> Self {
        Self {
            rollback: true,
            holdout_size: 4,
            holdout_every: 8,
            check_every: 20,
            threshold: 0.05,
            anchor_pull: 0.2,
            serve_guard: true,
            serve_window: 32,
            serve_min_samples: 4,
            serve_tolerance: 0.02,
            serve_trust_deviation: 0.5,
            serve_evidence_margin: 0.05,
        }
    }
}

/// Everything the adaptation loop needs to know.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AdaptConfig {
    /// Adam learning rate (depth network).
    pub learning_rate: f64,
    /// Adam learning rate of the pose network.
    pub pose_learning_rate: f64,
    pub layers: AdaptLayers,
    /// Adaptation steps per frame in lock-step mode (S).
    pub steps_per_frame: usize,
    /// Triplet spacing k is the smallest value in k_start..=k_max whose frames differ by at least
    /// `motion_threshold` (mean absolute RGB difference in [0, 1]); none → stationary, no triplet.
    /// k_start is k_min, or with `target_parallax_px` > 0 the smallest k whose measured parallax
    /// reaches that many pixels at the median depth ([`crate::adapt::triplet::TripletSelector`]).
    pub k_min: usize,
    pub k_max: usize,
    pub motion_threshold: f32,
    pub target_parallax_px: f32,
    /// The parallax target while the frames carry a gyro's orientation (`--gyro`): with the
    /// turn measured, the translation no longer takes a share of it, so the same baseline
    /// measures less parallax (docs/adapt.md, "Spacing with a gyro").
    pub target_parallax_px_with_gyro: f32,
    /// Skip a step whose live sample has more than this fraction of pixels auto-masked...
    pub stationary_masked_fraction: f32,
    /// ... or whose predicted translations are all shorter than this (network units).
    pub stationary_translation: f32,
    /// Replay buffer capacity (triplets) and replayed triplets per step (0 = no replay).
    pub replay_capacity: usize,
    pub replay_per_step: usize,
    /// Publish weights to the live engine every N accepted steps.
    pub publish_every: u64,
    /// Checkpoint every M accepted steps (0 = only on shutdown).
    pub checkpoint_every: u64,
    pub guards: GuardConfig,
    pub distill: DistillConfig,
    /// The self-supervised loss (auto-masking is switched here).
    pub loss: LossConfig,
    /// Seed of everything random in the adaptation: replay sampling, auto-mask tie-break noise
    /// and (unless `pose_init_seed` is set) the pose network's fresh layers.
    pub seed: u64,
    /// Seed of the pose network's freshly initialised layers, when it should not follow `seed`.
    pub pose_init_seed: Option<u64>,
    /// Test-time pose refinement (CPU loss backend): Rprop iterations of direct photometric
    /// alignment of each sample's poses before the depth gradient is taken; the pose network
    /// then learns to predict the refined poses. 0 = off (the loss gradient at the network's
    /// poses trains both networks, as in Monodepth2).
    pub pose_refine_iterations: usize,
    /// A second refinement walk starts from the network's translations reversed, and the lower
    /// loss wins (see [`crate::adapt::pose_refine`]).
    pub pose_refine_mirrored: bool,
    /// The refinement's first rotation step (radians); with 8 iterations, 1e-3 reaches 0.95°
    /// and 2e-3 1.9° (see [`crate::adapt::pose_refine::DEFAULT_FIRST_ROTATION_STEP`]).
    pub pose_refine_rotation_step: f32,
    /// Velocity supervision (`--metric-scale speed`): weight of the L1 distance between the
    /// length of the pose network's translation and the metres the odometry travelled between
    /// the same frames, on the triplets that carry it. It makes the pose network, and through
    /// the photometric loss the depth network, metric. 0 = off.
    pub velocity_weight: f64,
}

impl Default for AdaptConfig {
    fn default() -> Self {
        Self {
            learning_rate: 1e-4,
            pose_learning_rate: 1e-4,
            layers: AdaptLayers::All,
            steps_per_frame: 1,
            k_min: 1,
            k_max: 6,
            motion_threshold: 0.01,
            target_parallax_px: 3.0,
            target_parallax_px_with_gyro: 2.0,
            stationary_masked_fraction: 0.95,
            stationary_translation: 1e-4,
            replay_capacity: 16,
            replay_per_step: 1,
            publish_every: 5,
            checkpoint_every: 50,
            guards: GuardConfig::default(),
            distill: DistillConfig::default(),
            loss: LossConfig::default(),
            seed: 0,
            pose_init_seed: None,
            pose_refine_iterations: 8,
            pose_refine_mirrored: true,
            pose_refine_rotation_step: crate::adapt::pose_refine::DEFAULT_FIRST_ROTATION_STEP,
            velocity_weight: 0.1,
        }
    }
}

impl AdaptConfig {
    /// The test-time pose refinement these settings ask for.
    pub fn pose_refinement(&self) -> crate::adapt::pose_refine::Refinement {
        crate::adapt::pose_refine::Refinement {
            iterations: self.pose_refine_iterations,
            mirrored_start: self.pose_refine_mirrored,
            first_rotation_step: self.pose_refine_rotation_step,
        }
    }

    /// Checks every field, naming the first bad one.
    pub fn validate(&self) -> Result<(), AdaptError> {
        let positive = |v: f64| v.is_finite() && v > 0.0;
        if !positive(self.learning_rate) {
            return Err(AdaptError::config(
                "learning_rate",
                "a finite value > 0",
                self.learning_rate,
            ));
        }
        if !positive(self.pose_learning_rate) {
            return Err(AdaptError::config(
                "pose_learning_rate",
                "a finite value > 0",
                self.pose_learning_rate,
            ));
        }
        if !(self.velocity_weight.is_finite() && self.velocity_weight >= 0.0) {
            return Err(AdaptError::config(
                "velocity_weight",
                "a finite weight >= 0",
                self.velocity_weight,
            ));
        }
        if self.k_min == 0 || self.k_max < self.k_min {
            return Err(AdaptError::config(
                "k_min/k_max",
                "1 <= k_min <= k_max",
                format!("{}..{}", self.k_min, self.k_max),
            ));
        }
        for (field, target) in [
            ("target_parallax_px", self.target_parallax_px),
            ("target_parallax_px_with_gyro", self.target_parallax_px_with_gyro),
        ] {
            if !(target.is_finite() && target >= 0.0) {
                return Err(AdaptError::config(
                    field,
                    "a finite number of pixels >= 0 (0 = spacing from k_min by motion only)",
                    target,
                ));
            }
        }
        if !(self.motion_threshold.is_finite() && self.motion_threshold >= 0.0) {
            return Err(AdaptError::config(
                "motion_threshold",
                "a finite value >= 0",
                self.motion_threshold,
            ));
        }
        if !(0.0..=1.0).contains(&self.stationary_masked_fraction) {
            return Err(AdaptError::config(
                "stationary_masked_fraction",
                "a value in [0, 1]",
                self.stationary_masked_fraction,
            ));
        }
        if self.replay_per_step > 0 && self.replay_capacity == 0 {
            return Err(AdaptError::config(
                "replay_capacity",
                "at least 1 when replay_per_step > 0",
                0,
            ));
        }
        let step = self.pose_refine_rotation_step;
        if !(step.is_finite() && step > 0.0 && step <= 0.1) {
            return Err(AdaptError::config(
                "pose_refine_rotation_step",
                "radians in (0, 0.1]",
                step,
            ));
        }
        if self.publish_every == 0 {
            return Err(AdaptError::config("publish_every", "at least 1", 0));
        }
        let d = &self.distill;
        if !(d.lambda.is_finite() && d.lambda >= 0.0) {
            return Err(AdaptError::config("distill.lambda", "a finite value >= 0", d.lambda));
        }
        if !(d.gamma > 0.0 && d.gamma <= 1.0) {
            return Err(AdaptError::config("distill.gamma", "a value in (0, 1]", d.gamma));
        }
        if !(d.lambda_floor.is_finite() && (0.0..=1.0).contains(&d.lambda_floor)) {
            return Err(AdaptError::config(
                "distill.lambda_floor",
                "a value in [0, 1]",
                d.lambda_floor,
            ));
        }
        if !(d.ema_decay >= 0.0 && d.ema_decay < 1.0) {
            return Err(AdaptError::config("distill.ema_decay", "a value in [0, 1)", d.ema_decay));
        }
        let g = &self.guards;
        if g.rollback && (g.check_every == 0 || g.holdout_size == 0 || g.holdout_every == 0) {
            return Err(AdaptError::config(
                "guards",
                "check_every, holdout_size and holdout_every >= 1 when rollback is on",
                format!("{} / {} / {}", g.check_every, g.holdout_size, g.holdout_every),
            ));
        }
        if !(g.threshold.is_finite() && g.threshold >= 0.0) {
            return Err(AdaptError::config("guards.threshold", "a finite value >= 0", g.threshold));
        }
        if !(g.anchor_pull.is_finite() && (0.0..1.0).contains(&g.anchor_pull)) {
            return Err(AdaptError::config(
                "guards.anchor_pull",
                "a value in [0, 1) (0 = off)",
                g.anchor_pull,
            ));
        }
        if g.serve_guard && g.serve_window == 0 {
            return Err(AdaptError::config("guards.serve_window", "at least 1", 0));
        }
        if !(g.serve_tolerance.is_finite() && (0.0..1.0).contains(&g.serve_tolerance)) {
            return Err(AdaptError::config(
                "guards.serve_tolerance",
                "a value in [0, 1)",
                g.serve_tolerance,
            ));
        }
        if !(g.serve_trust_deviation.is_finite() && g.serve_trust_deviation > 0.0) {
            return Err(AdaptError::config(
                "guards.serve_trust_deviation",
                "a finite value > 0",
                g.serve_trust_deviation,
            ));
        }
        if !(g.serve_evidence_margin.is_finite() && (0.0..1.0).contains(&g.serve_evidence_margin)) {
            return Err(AdaptError::config(
                "guards.serve_evidence_margin",
                "a value in [0, 1)",
                g.serve_evidence_margin,
            ));
        }
        self.loss.validate()?;
        Ok(())
    }
}
