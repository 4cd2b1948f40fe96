//! On-device online adaptation: fine-tunes the depth and pose networks from the video itself
//! (Monodepth2's self-supervised loss, optionally distilled from a teacher), beside the live
//! path, and publishes the adapted weights to the live engine without ever blocking it.
//!
//! - [`config`]: [`AdaptConfig`], every part switchable.
//! - [`triplet`]: frame triplets (t−k, t, t+k) with k from the measured parallax, the bounded
//!   replay buffer.
//! - [`step`]: the self-supervised step both drivers run (this adapter and offline `train`):
//!   forward, per-sample loss, scale-invariant log loss, backward with one finite-gradient check,
//!   the one [`step::Adam`].
//! - [`trainer`]: [`Adapter`], the online driver of that step (live triplet plus replay,
//!   distillation, velocity supervision), the guards and checkpoints.
//! - [`host_batch`]: a batch's network outputs on the host for the CPU loss, and the gradients
//!   gathered back (shared with offline training).
//! - [`loss_backend`]: where the loss runs: our CPU loss, or (feature `cuda`, student on CUDA)
//!   our fused kernels on libtorch's device tensors.
//! - [`pose_refine`]: test-time refinement of a sample's poses by direct photometric alignment.
//! - [`publish`]: the double buffer that hands new weights to the live engine.
//! - [`serve_guard`]: the never-worse guard choosing adapted or frozen weights for the live path
//!   from fresh triplets' losses (no ground truth).

pub mod config;
pub mod host_batch;
pub mod loss_backend;
pub mod metric;
pub mod pose_refine;
pub mod publish;
pub mod serve_guard;
pub mod step;
pub mod trainer;
pub mod triplet;

pub use config::{AdaptConfig, AdaptLayers, DistillConfig, GuardConfig, TeacherKind};
pub use loss_backend::{LossBackend, LossBackendKind};
pub use publish::{WeightsPublisher, WeightsReceiver, weights_exchange};
pub use serve_guard::{ServeGuard, Served};
pub use step::StepOutcome;
pub use trainer::{AdaptStats, Adapter, FreshScore};
pub use triplet::{NetFrame, ReplayBuffer, Triplet, TripletSelector};

use std::path::PathBuf;

/// Errors of the adaptation loop.
#[derive(Debug, thiserror::Error)]
pub enum AdaptError {
    #[error("adapt config `{field}`: expected {expected}, got {got}")]
    Config { field: &'static str, expected: &'static str, got: String },
    #[error("{}: adaptation checkpoint: {reason}", path.display())]
    Checkpoint { path: PathBuf, reason: String },
    #[error("adaptation frame: {0}")]
    Frame(String),
    #[error(transparent)]
    Model(#[from] crate::model::ModelError),
    #[error(transparent)]
    Loss(#[from] crate::loss::LossError),
    #[error("libtorch: {0}")]
    Torch(String),
    #[error("CUDA loss: {0}")]
    Cuda(String),
}

impl AdaptError {
    pub(crate) fn config(
        field: &'static str,
        expected: &'static str,
        got: impl std::fmt::Display,
    ) -> Self {
        Self::Config { field, expected, got: got.to_string() }
    }
}

impl From<tch::TchError> for AdaptError {
    fn from(e: tch::TchError) -> Self {
        AdaptError::Torch(e.to_string())
    }
}
