//! Placeholder: this module is being written.

/// Errors of this module.
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    #[error("{0}")]
    Other(String),
}
