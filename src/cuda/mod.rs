//! Our own CUDA kernels (kernels/*.cu) for the GPU path: frame preprocessing, disparity
//! upsampling and its adjoint, and the fused self-supervised loss forward and backward.
//!
//! - [`sources`] embeds the kernel sources; [`twin`] holds the CPU twin of every kernel, which
//!   mirrors its per-pixel indexing and arithmetic and is built and tested everywhere.
//! - With the `cuda` feature, [`nvrtc`] finds libnvrtc at run time and compiles the kernels
//!   (PTX cached on disk), [`device`] loads them with cudarc (dynamic loading: the binary starts on
//!   machines without CUDA and says so) and launches them on raw device pointers such as
//!   libtorch's tensors, [`fused_loss`] runs the self-supervised loss with them, and [`bench`]
//!   measures them.

mod error;
pub mod sources;
pub mod twin;

#[cfg(feature = "cuda")]
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
