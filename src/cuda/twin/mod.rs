//! CPU twins of the CUDA kernels. Each mirrors its kernel's per-pixel indexing and f32
//! arithmetic, so that the GPU tests can compare the kernels against them, and each is tested
//! here (without a GPU) against the straightforward definition of what it computes.

// The twins index pixels and channels exactly as the kernels do, so index loops are kept.
#![allow(clippy::needless_range_loop)]

pub mod common;
pub mod loss;
pub mod pose;
pub mod preprocess;
pub mod synthetic;
pub mod upsample;

pub use loss::fused_loss;
pub use pose::{pose_gradient, pose_matrix};
pub use preprocess::preprocess;
pub use upsample::{upsample_bilinear, upsample_bilinear_adjoint};
