//! The stages of the live path, source → `preprocess` → `depth` → `outputs`, each a pipeline
//! node on its own thread (see [`crate::pipeline`]); `app::live` wires them for `run`.
//!
//! - [`preprocess`]: resize + normalise (CPU, or our CUDA kernel), buffers from a pool;
//! - [`depth`]: any depth engine, with a hook between frames for online adaptation;
//! - [`outputs`]: files, metrics, and the Foxglove / MCAP telemetry.

pub mod depth;
pub mod outputs;
pub mod preprocess;

pub use depth::{DepthFrame, DepthStage, FrameHook};
pub use outputs::OutputSink;
pub use preprocess::{BufferPool, NetworkInput, PreparedFrame, PreprocessPath, PreprocessStage};
#[cfg(feature = "cuda")]
pub use preprocess::{gpu_preprocess, gpu_preprocess_for};
