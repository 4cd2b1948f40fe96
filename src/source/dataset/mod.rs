//! Recorded datasets with ground truth (7-Scenes "kitchen", TUM RGB-D, KITTI raw and our
//! synthetic drives in KITTI layout) behind one random-access [`Dataset`] trait, and
//! [`DatasetSource`], which plays a frame range of a dataset as a [`Source`].

mod io;
mod kitchen;
mod kitti;
mod tum;

pub use kitchen::KitchenDataset;
pub use kitti::{KittiDataset, PoseSource};
pub use tum::{TumDataset, freiburg1_intrinsics};

use crate::frame::Frame;
use crate::source::{Source, SourceError};
use std::path::PathBuf;

/// Errors opening or reading a dataset. Every variant names the file or folder involved and
/// what was expected there.
#[derive(Debug, thiserror::Error)]
pub enum DatasetError {
    /// A dataset spec that is not `kitti:DIR`, `kitchen:DIR` or `tum:DIR`.
    #[error("bad dataset spec {spec:?}: expected kitti:DIR, kitchen:DIR or tum:DIR")]
    BadSpec { spec: String },
    /// A required file or folder does not exist.
    #[error("{}: missing; expected {expected}", path.display())]
    Missing { path: PathBuf, expected: String },
    /// An I/O error on a file.
    #[error("{}: {source}", path.display())]
    Io { path: PathBuf, source: std::io::Error },
    /// An image that cannot be decoded or has the wrong pixel format.
    #[error("{}: unreadable image: {message}", path.display())]
    Image { path: PathBuf, message: String },
    /// A malformed line in a text file (poses, timestamps, intrinsics, file lists).
    #[error("{}: line {line}: expected {expected}, found {found:?}", path.display())]
    BadLine { path: PathBuf, line: usize, expected: String, found: String },
    /// An image or depth map whose size differs from the dataset's.
    #[error("{}: size {}x{} differs from the expected {}x{}", path.display(), found.0, found.1, expected.0, expected.1)]
    SizeMismatch { path: PathBuf, expected: (u32, u32), found: (u32, u32) },
    /// An npz archive that lacks the expected array or holds it in another type or shape.
    #[error("{}: {message}", path.display())]
    Npz { path: PathBuf, message: String },
    /// A dataset with no usable frame.
    #[error("{}: no usable frames: {reason}", path.display())]
    Empty { path: PathBuf, reason: String },
    /// A frame index past the end.
    #[error("frame {index} is out of range for dataset {dataset} of {len} frames")]
    OutOfRange { dataset: String, index: usize, len: usize },
    /// A frame range or step that selects nothing or is malformed.
    #[error("bad frame selection {selection:?} for {len} frames: expected {expected}")]
    BadSelection { selection: String, len: usize, expected: String },
}

/// Which kind of recording a dataset is (selects the evaluation defaults).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DatasetKind {
    /// KITTI raw (and our synthetic drives in the same layout): outdoor, Velodyne GT.
    Kitti,
    /// 7-Scenes layout (the redkitchen excerpt): indoor Kinect depth.
    Kitchen,
    /// TUM RGB-D: indoor Kinect depth with motion-capture poses.
    Tum,
}

impl DatasetKind {
    /// The kind a dataset spec (`kitti:DIR`, `kitchen:DIR`, `tum:DIR`) names, if any.
    pub fn from_spec(spec: &str) -> Option<Self> {
        match spec.trim_start().split_once(':')?.0 {
            "kitti" => Some(Self::Kitti),
            "kitchen" => Some(Self::Kitchen),
            "tum" => Some(Self::Tum),
            _ => None,
        }
    }
}

/// A recording with ground truth, read frame by frame in any order.
pub trait Dataset: Send + Sync {
    /// A short human name (kind and folder).
    fn name(&self) -> &str;

    /// Which kind of recording this is.
    fn kind(&self) -> DatasetKind;

    /// The number of frames.
    fn len(&self) -> usize;

    /// Whether the dataset has no frame.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Frame `i` (0-based) with its rgb, ground-truth depth in metres (0 invalid), ground-truth
    /// camera-to-world pose, intrinsics for the rgb size, timestamp in seconds and `index = i`.
    fn frame(&self, i: usize) -> Result<Frame, DatasetError>;
}

/// Opens a dataset from a spec `kitti:DIR`, `kitchen:DIR` or `tum:DIR` (DIR relative to the
/// current directory).
pub fn open_dataset(spec: &str) -> Result<Box<dyn Dataset>, DatasetError> {
    let bad = || DatasetError::BadSpec { spec: spec.to_string() };
    let (kind, dir) = spec.trim().split_once(':').ok_or_else(bad)?;
    if dir.is_empty() {
        return Err(bad());
    }
    Ok(match kind {
        "kitti" => Box::new(KittiDataset::open(dir)?),
        "kitchen" => Box::new(KitchenDataset::open(dir)?),
        "tum" => Box::new(TumDataset::open(dir)?),
        _ => return Err(bad()),
    })
}

/// A range of frame indices `start..end` taken every `step` frames.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrameSelection {
    pub start: usize,
    /// Exclusive end; `None` = to the last frame.
    pub end: Option<usize>,
    /// At least 1.
    pub step: usize,
}

impl Default for FrameSelection {
    fn default() -> Self {
        Self::all()
    }
}

impl FrameSelection {
    /// Every frame.
    pub fn all() -> Self {
        Self { start: 0, end: None, step: 1 }
    }

    /// Parses `START:END[:STEP]` (either bound may be empty: `:100`, `10:`, `::2`), or a Rust
    /// range `A..B` (B excluded) / `A..=B` (B included).
    pub fn parse(text: &str) -> Result<Self, DatasetError> {
        let bad = |expected: &str| DatasetError::BadSelection {
            selection: text.to_string(),
            len: 0,
            expected: expected.to_string(),
        };
        // Rust-style ranges: `A..B` (B exclusive) and `A..=B` (B inclusive).
        if let Some((a, b)) = text.trim().split_once("..") {
            let (b, inclusive) = match b.strip_prefix('=') {
                Some(b) => (b, true),
                None => (b, false),
            };
            let start: usize = if a.trim().is_empty() {
                0
            } else {
                a.trim().parse().map_err(|_| bad("A..B or A..=B with non-negative integers"))?
            };
            let end = if b.trim().is_empty() {
                None
            } else {
                let b: usize = b
                    .trim()
                    .parse()
                    .map_err(|_| bad("A..B or A..=B with non-negative integers"))?;
                // `A..=usize::MAX` means "to the end", not a wrapped-around 0.
                Some(if inclusive { b.saturating_add(1) } else { b })
            };
            return Ok(Self { start, end, step: 1 });
        }
        let parts: Vec<&str> = text.trim().split(':').collect();
        if parts.len() < 2 || parts.len() > 3 {
            return Err(bad("START:END or START:END:STEP"));
        }
        let number = |s: &str| -> Result<Option<usize>, DatasetError> {
            let s = s.trim();
            if s.is_empty() {
                Ok(None)
            } else {
                s.parse().map(Some).map_err(|_| bad("non-negative integers"))
            }
        };
        let start = number(parts[0])?.unwrap_or(0);
        let end = number(parts[1])?;
        let step = match parts.get(2) {
            Some(s) => number(s)?.unwrap_or(1),
            None => 1,
        };
        if step == 0 {
            return Err(bad("a step of at least 1"));
        }
        Ok(Self { start, end, step })
    }

    /// The dataset indices selected out of `len` frames; an error when nothing is selected.
    pub fn indices(&self, len: usize) -> Result<Vec<usize>, DatasetError> {
        let end = self.end.unwrap_or(len).min(len);
        if self.step == 0 || self.start >= end {
            return Err(DatasetError::BadSelection {
                selection: format!(
                    "{}:{}:{}",
                    self.start,
                    self.end.map(|e| e.to_string()).unwrap_or_default(),
                    self.step
                ),
                len,
                expected: "a non-empty range START < END <= number of frames, step >= 1".into(),
            });
        }
        Ok((self.start..end).step_by(self.step).collect())
    }
}

/// Plays selected frames of a [`Dataset`] as a (non-live) [`Source`]. Frames come out with
/// `index` renumbered to their position in this stream; [`DatasetSource::dataset_index`] maps
/// back.
pub struct DatasetSource {
    dataset: Box<dyn Dataset>,
    indices: Vec<usize>,
    next: usize,
}

impl DatasetSource {
    /// A source over `selection` of `dataset`.
    pub fn new(dataset: Box<dyn Dataset>, selection: FrameSelection) -> Result<Self, DatasetError> {
        let indices = selection.indices(dataset.len())?;
        Ok(Self { dataset, indices, next: 0 })
    }

    /// Opens the dataset of `spec` (see [`open_dataset`]) and plays `selection` of it.
    pub fn open(spec: &str, selection: FrameSelection) -> Result<Self, DatasetError> {
        Self::new(open_dataset(spec)?, selection)
    }

    /// The dataset played.
    pub fn dataset(&self) -> &dyn Dataset {
        self.dataset.as_ref()
    }

    /// The dataset indices played, in order.
    pub fn indices(&self) -> &[usize] {
        &self.indices
    }

    /// The dataset index of stream position `position`.
    pub fn dataset_index(&self, position: usize) -> Option<usize> {
        self.indices.get(position).copied()
    }
}

impl Source for DatasetSource {
    fn next_frame(&mut self) -> Result<Option<Frame>, SourceError> {
        let Some(&i) = self.indices.get(self.next) else {
            return Ok(None);
        };
        let mut frame = self.dataset.frame(i)?;
        frame.index = self.next as u64;
        self.next += 1;
        Ok(Some(frame))
    }

    fn len_hint(&self) -> Option<usize> {
        Some(self.indices.len())
    }

    fn is_live(&self) -> bool {
        false
    }

    fn describe(&self) -> String {
        format!(
            "dataset {} ({} of {} frames)",
            self.dataset.name(),
            self.indices.len(),
            self.dataset.len()
        )
    }
}
