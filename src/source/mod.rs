//! Frame sources. Every source yields timestamped RGB [`Frame`]s through the [`Source`] trait.

pub mod dataset;

use crate::frame::Frame;

/// Errors of frame sources.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("{0}")]
    Other(String),
    #[error(transparent)]
    Dataset(#[from] dataset::DatasetError),
}

/// A stream of frames: a camera, a video file, or a recorded dataset.
pub trait Source: Send {
    /// The next frame, or `Ok(None)` at the end of the stream.
    fn next_frame(&mut self) -> Result<Option<Frame>, SourceError>;

    /// The number of frames, where known in advance (recordings).
    fn len_hint(&self) -> Option<usize> {
        None
    }

    /// Whether frames arrive in real time (a camera or network stream): the pipeline then
    /// keeps the latest frame instead of blocking.
    fn is_live(&self) -> bool;

    /// A one-line human description (URI, caps, size).
    fn describe(&self) -> String;
}
