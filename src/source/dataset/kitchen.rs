//! The 7-Scenes layout (our `kitchen` excerpt of redkitchen): `frame-NNNNNN.color.jpg`,
//! `frame-NNNNNN.depth.png` (uint16 millimetres, 0 invalid), `frame-NNNNNN.pose.txt` (4x4
//! camera-to-world, row-major) and `camera-intrinsics.txt` (3x3 K). Frames are 30 Hz.

use super::io::{self, content_lines, parse_numbers};
use super::{Dataset, DatasetError, DatasetKind};
use crate::camera::Intrinsics;
use crate::frame::Frame;
use nalgebra::Isometry3;
use std::path::{Path, PathBuf};

/// Kinect frame rate of 7-Scenes (timestamps are `index / 30` s).
const FRAME_RATE_HZ: f64 = 30.0;

/// A 7-Scenes style folder.
pub struct KitchenDataset {
    name: String,
    dir: PathBuf,
    /// Frame file prefixes (`<dir>/frame-000042`), sorted.
    frames: Vec<PathBuf>,
    intrinsics: Intrinsics,
}

impl KitchenDataset {
    /// Indexes the folder: lists the colour frames, checks each has its depth and pose file,
    /// and reads the intrinsics (sized from the first colour image).
    pub fn open(dir: impl AsRef<Path>) -> Result<Self, DatasetError> {
        let dir = dir.as_ref().to_path_buf();
        io::require_dir(&dir, "a 7-Scenes folder with frame-NNNNNN.color.jpg files")?;
        let colour = io::list_files(&dir, ".color.jpg")?;
        if colour.is_empty() {
            return Err(DatasetError::Empty {
                path: dir,
                reason: "no frame-NNNNNN.color.jpg files".into(),
            });
        }
        let mut frames = Vec::with_capacity(colour.len());
        for path in &colour {
            let name = path.to_string_lossy();
            let prefix = PathBuf::from(name.trim_end_matches(".color.jpg"));
            for suffix in [".depth.png", ".pose.txt"] {
                let companion = with_suffix(&prefix, suffix);
                if !companion.is_file() {
                    return Err(DatasetError::Missing {
                        path: companion,
                        expected: format!("the {suffix} file of {}", path.display()),
                    });
                }
            }
            frames.push(prefix);
        }
        let (width, height) = io::image_size(&with_suffix(&frames[0], ".color.jpg"))?;
        let k_path = dir.join("camera-intrinsics.txt");
        let k = read_matrix3(&k_path)?;
        let intrinsics =
            Intrinsics { fx: k[0], fy: k[4], cx: k[2], cy: k[5], width, height, distortion: None };
        Ok(Self { name: format!("kitchen:{}", dir.display()), dir, frames, intrinsics })
    }

    /// The folder read.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The colour camera's intrinsics.
    pub fn intrinsics(&self) -> Intrinsics {
        self.intrinsics
    }

    /// The camera-to-world pose of frame `i`.
    pub fn pose(&self, i: usize) -> Result<Isometry3<f64>, DatasetError> {
        let prefix = self.prefix(i)?;
        read_pose4x4(&with_suffix(prefix, ".pose.txt"))
    }

    fn prefix(&self, i: usize) -> Result<&PathBuf, DatasetError> {
        self.frames.get(i).ok_or_else(|| DatasetError::OutOfRange {
            dataset: self.name.clone(),
            index: i,
            len: self.frames.len(),
        })
    }
}

impl Dataset for KitchenDataset {
    fn name(&self) -> &str {
        &self.name
    }

    fn kind(&self) -> DatasetKind {
        DatasetKind::Kitchen
    }

    fn len(&self) -> usize {
        self.frames.len()
    }

    fn frame(&self, i: usize) -> Result<Frame, DatasetError> {
        let prefix = self.prefix(i)?;
        let rgb_path = with_suffix(prefix, ".color.jpg");
        let rgb = io::read_rgb(&rgb_path)?;
        let size = (self.intrinsics.width, self.intrinsics.height);
        io::check_size(&rgb_path, size, (rgb.width, rgb.height))?;
        let depth_path = with_suffix(prefix, ".depth.png");
        let depth = io::read_depth_png(&depth_path, 1e-3)?;
        io::check_size(&depth_path, size, (depth.width, depth.height))?;
        let pose = read_pose4x4(&with_suffix(prefix, ".pose.txt"))?;
        Ok(Frame {
            index: i as u64,
            timestamp: i as f64 / FRAME_RATE_HZ,
            rgb,
            gt_depth: Some(depth),
            gt_pose: Some(pose),
            intrinsics: Some(self.intrinsics),
        })
    }
}

fn with_suffix(prefix: &Path, suffix: &str) -> PathBuf {
    let mut s = prefix.as_os_str().to_os_string();
    s.push(suffix);
    PathBuf::from(s)
}

/// The 9 numbers of a 3x3 matrix file (three lines of three, or one line of nine), row-major.
pub(super) fn read_matrix3(path: &Path) -> Result<[f64; 9], DatasetError> {
    let text = io::read_text(path)?;
    let mut values = Vec::with_capacity(9);
    let mut last_line = 0;
    for (n, line) in content_lines(&text) {
        let count = line.split_whitespace().count();
        values.extend(parse_numbers(line, count, path, n, "numbers of a 3x3 matrix")?);
        last_line = n;
    }
    let k: [f64; 9] = values.as_slice().try_into().map_err(|_| DatasetError::BadLine {
        path: path.to_path_buf(),
        line: last_line,
        expected: "a 3x3 intrinsics matrix (9 numbers)".into(),
        found: format!("{} numbers", values.len()),
    })?;
    if !(k[0] > 0.0 && k[4] > 0.0 && k[2] > 0.0 && k[5] > 0.0) {
        return Err(DatasetError::BadLine {
            path: path.to_path_buf(),
            line: 1,
            expected: "positive fx, fy, cx, cy".into(),
            found: format!("{k:?}"),
        });
    }
    Ok(k)
}

/// A 4x4 row-major rigid transform file (four lines of four numbers, last row 0 0 0 1).
fn read_pose4x4(path: &Path) -> Result<Isometry3<f64>, DatasetError> {
    let text = io::read_text(path)?;
    let mut values = Vec::with_capacity(16);
    for (n, line) in content_lines(&text) {
        if values.len() >= 16 {
            return Err(DatasetError::BadLine {
                path: path.to_path_buf(),
                line: n,
                expected: "nothing after the 4x4 matrix".into(),
                found: line.to_string(),
            });
        }
        values.extend(parse_numbers(line, 4, path, n, "4 numbers of a 4x4 pose matrix row")?);
    }
    let bottom_ok = values.len() == 16
        && values[12].abs() < 1e-6
        && values[13].abs() < 1e-6
        && values[14].abs() < 1e-6
        && (values[15] - 1.0).abs() < 1e-6;
    if !bottom_ok {
        return Err(DatasetError::BadLine {
            path: path.to_path_buf(),
            line: 4,
            expected: "a 4x4 rigid transform with last row 0 0 0 1".into(),
            found: format!("{values:?}"),
        });
    }
    io::isometry_from_rows(&values, path, 1)
}
