//! Output sinks: 16-bit depth PNGs (KITTI convention), colourised depth images, MP4 video (and
//! the side-by-side comparison video of two models, annotated with our own drawing and bitmap
//! font), per-frame metrics CSV and summary JSON, SVG plots, PLY point clouds, and the
//! Foxglove live view and MCAP recording ([`foxglove_live`]).
//!
//! Whole files are written atomically (temporary file in the same directory, fsync, rename), so
//! a crash never leaves a half-written output under the final name. The metrics CSV is the
//! exception by design: it is a log, appended and flushed row by row.

pub mod camera_pose;
pub mod colour_bar;
pub mod colourise;
pub mod depth_png;
pub mod draw;
pub mod font;
pub mod foxglove_live;
pub mod metrics;
pub mod plot;
pub mod pointcloud;
pub mod side_by_side;
pub mod video;
pub mod zenoh_live;

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

/// Errors of the output sinks. Every variant names the file involved.
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    /// Reading, writing, syncing or renaming a file failed.
    #[error("{}: {source}", path.display())]
    Io { path: PathBuf, source: std::io::Error },
    /// Encoding or decoding an image failed.
    #[error("{}: image error: {source}", path.display())]
    Image { path: PathBuf, source: image::ImageError },
    /// A file exists but does not hold what was expected.
    #[error("{}: {reason}", path.display())]
    Format { path: PathBuf, reason: String },
    /// An argument cannot be written (wrong size, odd dimension, NaN timestamp...).
    #[error("{}: invalid {what}: {reason}", path.display())]
    InvalidInput { path: PathBuf, what: String, reason: String },
    /// Serialising JSON failed.
    #[error("{}: JSON error: {source}", path.display())]
    Json { path: PathBuf, source: serde_json::Error },
    /// GStreamer could not be initialised or lacks an element the sink needs.
    #[error("{}: GStreamer element `{element}` is unavailable ({reason})", path.display())]
    MissingElement { path: PathBuf, element: String, reason: String },
    /// The encoding pipeline reported an error on its bus.
    #[error("{}: GStreamer error from `{element}`: {message} (debug: {debug})", path.display())]
    Gst { path: PathBuf, element: String, message: String, debug: String },
    /// The encoding pipeline did not finish in time.
    #[error("{}: timed out after {seconds:.1} s while {what}", path.display())]
    Timeout { path: PathBuf, what: String, seconds: f64 },
}

impl SinkError {
    /// An I/O error on `path`.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io { path: path.into(), source }
    }

    /// An invalid argument for the file at `path`.
    pub fn invalid(path: &Path, what: &str, reason: impl Into<String>) -> Self {
        Self::InvalidInput {
            path: path.to_path_buf(),
            what: what.to_string(),
            reason: reason.into(),
        }
    }
}

pub(crate) use crate::tempfiles::temp_path_for;

/// Renames a finished, fsynced temporary file onto `path` (see [`crate::tempfiles::commit`]);
/// the temporary file is removed when that fails.
pub(crate) fn commit_temp(temp: &Path, path: &Path) -> Result<(), SinkError> {
    crate::tempfiles::commit(temp, path).map_err(|e| {
        let _ = std::fs::remove_file(temp);
        SinkError::io(path, e)
    })
}

/// Write `path` atomically ([`crate::tempfiles::write_atomic`]): `write` fills a buffered
/// temporary file beside it. On any error the temporary file is removed and `path` is left
/// untouched.
pub fn write_atomic<F>(path: &Path, write: F) -> Result<(), SinkError>
where
    F: FnOnce(&mut BufWriter<File>) -> Result<(), SinkError>,
{
    let io = |e| SinkError::io(path, e);
    crate::tempfiles::write_atomic(
        path,
        |temp| {
            let mut writer = BufWriter::new(File::create(temp).map_err(io)?);
            write(&mut writer)?;
            writer.flush().map_err(io)
        },
        io,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atomic_write_leaves_nothing_behind_on_failure() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.txt");
        std::fs::write(&path, b"old").unwrap();
        let failed = write_atomic(&path, |w| {
            w.write_all(b"partial").map_err(|e| SinkError::io(&path, e))?;
            Err(SinkError::invalid(&path, "test", "deliberate"))
        });
        assert!(matches!(failed, Err(SinkError::InvalidInput { .. })));
        assert_eq!(std::fs::read(&path).unwrap(), b"old");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1, "temp file left behind");
        write_atomic(&path, |w| w.write_all(b"new").map_err(|e| SinkError::io(&path, e))).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"new");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }
}
