//! livedepth: real-time monocular depth from a live camera stream, with on-device
//! self-supervised adaptation of the depth network.
//!
//! Data flows one way: a [`source`] yields timestamped frames, the [`pipeline`] runs them through
//! stages on their own threads, and [`sink`]s write depth maps, colourised video and metrics.
//! [`eval`] holds the standard depth metrics; [`synth`] renders synthetic drives with exact
//! ground truth; `export` writes the networks as ONNX models for other runtimes.

#[cfg(feature = "torch")]
pub mod adapt;
#[cfg(feature = "torch")]
pub mod app;
pub mod camera;
pub mod config;
pub mod cuda;
pub mod engine;
pub mod error;
pub mod eval;
#[cfg(feature = "torch")]
pub mod export;
pub mod fleet;
pub mod frame;
pub mod loss;
pub mod model;
pub mod pipeline;
pub mod pool;
pub mod python;
pub mod scale;
pub mod sink;
pub mod source;
#[cfg(feature = "torch")]
pub mod stages;
pub mod synth;
pub mod tempfiles;
#[cfg(feature = "torch")]
pub mod train;

pub use error::{Error, Result};
