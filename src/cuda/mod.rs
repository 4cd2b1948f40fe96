//! Our own CUDA kernels (kernels/*.cu) for the GPU path: frame preprocessing, disparity
//! upsampling and its adjoint, and the fused self-supervised loss forward and backward.
//!
//! - [`sources`] embeds the kernel sources; [`frame_format`] describes what the preprocessing
//!   kernel takes and [`loss_contract`] what the loss kernels accept (both checked on the host).
//! - With the `bench` feature (off by default, so not in a deployment build), `twin` holds the CPU
//!   twin of every kernel, which mirrors its per-pixel indexing and arithmetic: the GPU parity
//!   tests compare the kernels with it and the benchmarks measure it as a peer. It is test and
//!   benchmark code, so the product leaves it out.
//! - With the `cuda` feature, [`nvrtc`] finds libnvrtc at run time and compiles the kernels
//!   (PTX cached on disk), [`device`] loads them with cudarc (dynamic loading: the binary starts on
//!   machines without CUDA and says so) and launches them on raw device pointers such as
//!   libtorch's tensors, [`fused_loss`] runs the self-supervised loss with them, and `bench`
//!   (feature `bench`) measures them.

mod error;
pub mod frame_format;
pub mod loss_contract;
pub mod sources;
#[cfg(feature = "bench")]
pub mod twin;

#[cfg(all(feature = "cuda", feature = "bench"))]
pub mod bench;
#[cfg(feature = "cuda")]
pub mod device;
#[cfg(feature = "cuda")]
pub mod fused_loss;
#[cfg(feature = "cuda")]
pub mod nvrtc;
#[cfg(all(feature = "cuda", feature = "torch"))]
pub mod torch;

pub use error::CudaError;
pub use frame_format::{Normalization, PackedFrame, PixelFormat, Resize};
