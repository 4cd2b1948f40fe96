//! Frame sources. Every source yields timestamped RGB [`Frame`]s through the [`Source`] trait.
//!
//! [`gst::GstSource`] reads cameras, network streams and video files through GStreamer, opened
//! from a URI (`file://`, `v4l2://`, `rtsp://`, `csi://`, `test://`, `gst://`);
//! [`bag::BagSource`] replays the image topic of an MCAP file (ROS 2 bags and Foxglove
//! recordings, `mcap://PATH?topic=…`); [`dataset::DatasetSource`] reads recorded datasets with
//! ground truth. [`paced::Paced`] plays a recording at a set frame rate.

pub mod bag;
pub mod gst;
pub mod gst_uri;
pub mod paced;
pub mod reconnect;

pub mod dataset;

use crate::frame::Frame;
use std::path::PathBuf;

/// Errors of frame sources. Every variant names the URI or file involved.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// The source URI could not be understood.
    #[error("invalid source URI `{uri}`: {reason}")]
    InvalidUri { uri: String, reason: String },
    /// A file (or device node) named by the source does not exist.
    #[error("{}: no such file or device", path.display())]
    MissingFile { path: PathBuf },
    /// A GStreamer element the source needs is not installed.
    #[error("{uri}: GStreamer element `{element}` is not installed ({hint})")]
    MissingElement { uri: String, element: String, hint: String },
    /// GStreamer itself could not be initialised.
    #[error("GStreamer could not be initialised: {0}")]
    GstInit(String),
    /// The pipeline could not be built (parse error, linking error, missing appsink).
    #[error("{uri}: could not build the GStreamer pipeline: {reason}")]
    Pipeline { uri: String, reason: String },
    /// An element of the running pipeline reported an error on the bus (corrupt or unsupported
    /// stream, unplugged device, network failure...).
    #[error("{uri}: GStreamer error from `{element}`: {message} (debug: {debug})")]
    Stream { uri: String, element: String, message: String, debug: String },
    /// A state change of the pipeline failed without any error message on the bus.
    #[error("{uri}: the pipeline refused to go to {state}")]
    StateChange { uri: String, state: String },
    /// No frame, end of stream or error arrived within the configured timeout.
    #[error("{uri}: no frame within {seconds:.1} s (stalled source or undecodable stream)")]
    Timeout { uri: String, seconds: f64 },
    /// A recording ended before what its container declared, or without a single frame: the
    /// file is cut off or damaged.
    #[error("{uri}: {reason}")]
    Truncated { uri: String, reason: String },
    /// The negotiated frames are not what was expected.
    #[error("{uri}: unexpected video format: {reason}")]
    Format { uri: String, reason: String },
    /// A recorded dataset could not be read.
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

    /// How often the source lost its camera or stream and reopened it (see
    /// [`reconnect::ReconnectingSource`]).
    fn reconnects(&self) -> u64 {
        0
    }
}

/// Whether `uri` names a recorded dataset (`kitti:DIR`, `kitchen:DIR`, `tum:DIR`) rather than a
/// GStreamer URI.
pub fn is_dataset_spec(uri: &str) -> bool {
    dataset::DatasetKind::from_spec(uri).is_some()
}

/// Opens any source livedepth knows: a dataset spec (with `selection`) or a GStreamer URI (with
/// `gst_options`).
pub fn open(
    uri: &str,
    gst_options: &gst::GstOptions,
    selection: dataset::FrameSelection,
) -> Result<Box<dyn Source>, SourceError> {
    if is_dataset_spec(uri) {
        Ok(Box::new(dataset::DatasetSource::open(uri, selection)?))
    } else if uri.starts_with(bag::SCHEME) {
        Ok(Box::new(bag::BagSource::open(uri)?))
    } else {
        Ok(Box::new(gst::GstSource::open(uri, gst_options)?))
    }
}

/// A source that ends after at most `limit` frames of the source it wraps.
pub struct Limited {
    inner: Box<dyn Source>,
    remaining: usize,
}

impl Limited {
    pub fn new(inner: Box<dyn Source>, limit: usize) -> Self {
        Self { inner, remaining: limit }
    }
}

impl Source for Limited {
    fn next_frame(&mut self) -> Result<Option<Frame>, SourceError> {
        if self.remaining == 0 {
            return Ok(None);
        }
        self.remaining -= 1;
        self.inner.next_frame()
    }

    fn len_hint(&self) -> Option<usize> {
        Some(self.inner.len_hint().map_or(self.remaining, |n| n.min(self.remaining)))
    }

    fn is_live(&self) -> bool {
        self.inner.is_live()
    }

    fn describe(&self) -> String {
        format!("{} (first {} frames)", self.inner.describe(), self.remaining)
    }

    fn reconnects(&self) -> u64 {
        self.inner.reconnects()
    }
}
