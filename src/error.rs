//! The crate-wide error: one variant per module, each module keeping its own typed error enum.

use std::path::PathBuf;

/// Any error livedepth reports. Every message names the file, field or URI involved and what
/// was expected, so that the user knows what to fix.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    #[error(transparent)]
    Source(#[from] crate::source::SourceError),
    #[error(transparent)]
    Sink(#[from] crate::sink::SinkError),
    #[error(transparent)]
    Pipeline(#[from] crate::pipeline::PipelineError),
    #[error(transparent)]
    Synth(#[from] crate::synth::SynthError),
    #[error(transparent)]
    Eval(#[from] crate::eval::EvalError),
    /// Boxed (as `Engine`) to keep `Error` small; `?` converts from the unboxed error.
    #[error(transparent)]
    Model(#[from] Box<crate::model::ModelError>),
    #[error(transparent)]
    Engine(#[from] Box<crate::engine::EngineError>),
    /// Boxed like `Model`; `?` converts from the unboxed error.
    #[cfg(feature = "torch")]
    #[error(transparent)]
    Adapt(#[from] Box<crate::adapt::AdaptError>),
    /// Boxed like `Model`; `?` converts from the unboxed error.
    #[cfg(feature = "torch")]
    #[error(transparent)]
    Train(#[from] Box<crate::train::TrainError>),
    /// Boxed like `Model`; `?` converts from the unboxed error.
    #[cfg(feature = "torch")]
    #[error(transparent)]
    Export(#[from] Box<crate::export::ExportError>),
    #[error(transparent)]
    Cuda(#[from] crate::cuda::CudaError),
    #[error(transparent)]
    Loss(#[from] crate::loss::LossError),
    #[error(transparent)]
    Telemetry(#[from] crate::sink::foxglove_live::TelemetryError),
    #[error("{}: {source}", path.display())]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{0}")]
    Other(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl From<crate::model::ModelError> for Error {
    fn from(e: crate::model::ModelError) -> Self {
        Error::Model(Box::new(e))
    }
}

impl From<crate::engine::EngineError> for Error {
    fn from(e: crate::engine::EngineError) -> Self {
        Error::Engine(Box::new(e))
    }
}

#[cfg(feature = "torch")]
impl From<crate::adapt::AdaptError> for Error {
    fn from(e: crate::adapt::AdaptError) -> Self {
        Error::Adapt(Box::new(e))
    }
}

#[cfg(feature = "torch")]
impl From<crate::train::TrainError> for Error {
    fn from(e: crate::train::TrainError) -> Self {
        Error::Train(Box::new(e))
    }
}

#[cfg(feature = "torch")]
impl From<crate::export::ExportError> for Error {
    fn from(e: crate::export::ExportError) -> Self {
        Error::Export(Box::new(e))
    }
}

impl Error {
    /// An I/O error that names the file it happened on.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io { path: path.into(), source }
    }
}
