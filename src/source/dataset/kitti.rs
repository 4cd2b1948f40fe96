//! KITTI raw drives (left colour camera, `image_02`) and our synthetic drives written in the
//! same layout:
//!
//! - `image_02/data/NNNNNNNNNN.png` colour frames;
//! - `image_02/cam.txt` (3x3 K), else `P_rect_02` from `calib_cam_to_cam.txt` in the drive
//!   folder or up to two folders above;
//! - `image_02/poses.txt`: one 3x4 row-major camera-to-world pose per line, line N for frame
//!   number N (optional);
//! - `image_02/timestamps.txt`: line N for frame number N, KITTI's `YYYY-MM-DD HH:MM:SS.n` or
//!   plain seconds (optional; else N / 10 Hz);
//! - ground-truth depth `proj_depth/velodyne/image_02/<name>.npz` (array `velodyne_depth`,
//!   float32 metres) or `proj_depth/groundtruth/image_02/<name>.png` (uint16, value / 256 m),
//!   0 = invalid (optional per frame).

use super::io::{self, content_lines, parse_numbers};
use super::kitchen::read_matrix3;
use super::{Dataset, DatasetError, DatasetKind};
use crate::camera::Intrinsics;
use crate::frame::{DepthMap, Frame};
use nalgebra::Isometry3;
use std::path::{Path, PathBuf};

/// KITTI's camera rate, used for timestamps where timestamps.txt is absent.
const FRAME_RATE_HZ: f64 = 10.0;
/// Array name of the projected Velodyne depth in the npz files.
pub const VELODYNE_KEY: &str = "velodyne_depth";
/// How many folder levels below DIR are searched for a drive.
const SEARCH_DEPTH: usize = 3;

struct KittiFrame {
    image: PathBuf,
    number: usize,
}

/// One KITTI drive (its left colour camera).
pub struct KittiDataset {
    name: String,
    drive: PathBuf,
    frames: Vec<KittiFrame>,
    intrinsics: Intrinsics,
    /// Camera-to-world pose per frame number (line of poses.txt), where present.
    poses: Option<Vec<Isometry3<f64>>>,
    poses_path: PathBuf,
    timestamps: Option<Vec<f64>>,
}

impl KittiDataset {
    /// Opens a drive folder (one containing `image_02/`) or the first drive found (in name
    /// order) up to three levels below `dir`.
    pub fn open(dir: impl AsRef<Path>) -> Result<Self, DatasetError> {
        let dir = dir.as_ref();
        io::require_dir(dir, "a KITTI drive folder (with image_02/) or a folder above one")?;
        let drive = find_drive(dir, SEARCH_DEPTH).ok_or_else(|| DatasetError::Missing {
            path: dir.join("image_02/data"),
            expected: format!(
                "a KITTI drive with image_02/data/ in or up to {SEARCH_DEPTH} levels below"
            ),
        })?;
        let camera = drive.join("image_02");
        let images = io::list_files(&camera.join("data"), ".png")?;
        let mut frames = Vec::with_capacity(images.len());
        for image in images {
            let number = io::stem_number(&image).ok_or_else(|| DatasetError::Image {
                path: image.clone(),
                message: "expected a numbered frame name like 0000000042.png".into(),
            })?;
            frames.push(KittiFrame { image, number: number as usize });
        }
        if frames.is_empty() {
            return Err(DatasetError::Empty {
                path: camera.join("data"),
                reason: "no .png frames".into(),
            });
        }
        let (width, height) = io::image_size(&frames[0].image)?;
        let intrinsics = read_intrinsics(&drive, width, height)?;

        let poses_path = camera.join("poses.txt");
        let poses = if poses_path.is_file() { Some(read_poses(&poses_path)?) } else { None };
        let timestamps_path = camera.join("timestamps.txt");
        let timestamps =
            if timestamps_path.is_file() { Some(read_timestamps(&timestamps_path)?) } else { None };
        let max_number = frames.iter().map(|f| f.number).max().unwrap_or(0);
        for (path, count) in [
            (&poses_path, poses.as_ref().map(Vec::len)),
            (&timestamps_path, timestamps.as_ref().map(Vec::len)),
        ] {
            if let Some(count) = count
                && count <= max_number
            {
                return Err(DatasetError::Empty {
                    path: path.clone(),
                    reason: format!("{count} lines, but frame number {max_number} needs a line"),
                });
            }
        }
        Ok(Self {
            name: format!("kitti:{}", drive.display()),
            drive,
            frames,
            intrinsics,
            poses,
            poses_path,
            timestamps,
        })
    }

    /// The drive folder in use.
    pub fn drive(&self) -> &Path {
        &self.drive
    }

    /// The left colour camera's intrinsics (rectified, no distortion).
    pub fn intrinsics(&self) -> Intrinsics {
        self.intrinsics
    }

    /// The frame number (file name) of dataset index `i`.
    pub fn frame_number(&self, i: usize) -> Option<usize> {
        self.frames.get(i).map(|f| f.number)
    }

    /// The ground-truth depth of frame `i`: the Velodyne npz if present, else the KITTI-style
    /// 16-bit PNG, else `None`.
    pub fn gt_depth(&self, i: usize) -> Result<Option<DepthMap>, DatasetError> {
        let entry = self.entry(i)?;
        let stem = entry.image.file_stem().unwrap_or_default().to_string_lossy().into_owned();
        let npz = self.drive.join("proj_depth/velodyne/image_02").join(format!("{stem}.npz"));
        let png = self.drive.join("proj_depth/groundtruth/image_02").join(format!("{stem}.png"));
        let (depth, path) = if npz.is_file() {
            (io::read_npz_depth(&npz, VELODYNE_KEY)?, npz)
        } else if png.is_file() {
            (io::read_depth_png(&png, 1.0 / 256.0)?, png)
        } else {
            return Ok(None);
        };
        let size = (self.intrinsics.width, self.intrinsics.height);
        io::check_size(&path, size, (depth.width, depth.height))?;
        Ok(Some(depth))
    }

    fn entry(&self, i: usize) -> Result<&KittiFrame, DatasetError> {
        self.frames.get(i).ok_or_else(|| DatasetError::OutOfRange {
            dataset: self.name.clone(),
            index: i,
            len: self.frames.len(),
        })
    }
}

impl Dataset for KittiDataset {
    fn name(&self) -> &str {
        &self.name
    }

    fn kind(&self) -> DatasetKind {
        DatasetKind::Kitti
    }

    fn len(&self) -> usize {
        self.frames.len()
    }

    fn frame(&self, i: usize) -> Result<Frame, DatasetError> {
        let entry = self.entry(i)?;
        let rgb = io::read_rgb(&entry.image)?;
        let size = (self.intrinsics.width, self.intrinsics.height);
        io::check_size(&entry.image, size, (rgb.width, rgb.height))?;
        let gt_depth = self.gt_depth(i)?;
        let gt_pose = match &self.poses {
            Some(poses) => Some(*poses.get(entry.number).ok_or_else(|| DatasetError::Missing {
                path: self.poses_path.clone(),
                expected: format!("a pose line for frame number {}", entry.number),
            })?),
            None => None,
        };
        let timestamp = match &self.timestamps {
            Some(t) => t.get(entry.number).copied().unwrap_or(entry.number as f64 / FRAME_RATE_HZ),
            None => entry.number as f64 / FRAME_RATE_HZ,
        };
        Ok(Frame {
            index: i as u64,
            timestamp,
            rgb,
            gt_depth,
            gt_pose,
            intrinsics: Some(self.intrinsics),
        })
    }
}

/// `dir` itself if it holds `image_02/data`, else the first such folder (name order) up to
/// `depth` levels below.
fn find_drive(dir: &Path, depth: usize) -> Option<PathBuf> {
    if dir.join("image_02").join("data").is_dir() {
        return Some(dir.to_path_buf());
    }
    if depth == 0 {
        return None;
    }
    let mut children: Vec<PathBuf> = std::fs::read_dir(dir)
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_dir())
        .collect();
    children.sort();
    children.into_iter().find_map(|child| find_drive(&child, depth - 1))
}

/// K from `image_02/cam.txt`, else from `P_rect_02` of the nearest `calib_cam_to_cam.txt`.
fn read_intrinsics(drive: &Path, width: u32, height: u32) -> Result<Intrinsics, DatasetError> {
    let cam = drive.join("image_02").join("cam.txt");
    let k = if cam.is_file() {
        read_matrix3(&cam)?
    } else {
        let calib = drive
            .ancestors()
            .take(3)
            .map(|d| d.join("calib_cam_to_cam.txt"))
            .find(|p| p.is_file())
            .ok_or_else(|| DatasetError::Missing {
                path: cam.clone(),
                expected: "image_02/cam.txt or a calib_cam_to_cam.txt with P_rect_02 in the drive \
                           folder or up to two folders above"
                    .into(),
            })?;
        read_p_rect_02(&calib)?
    };
    Ok(Intrinsics { fx: k[0], fy: k[4], cx: k[2], cy: k[5], width, height, distortion: None })
}

/// The K part of `P_rect_02: p00 … p23` as a row-major 3x3.
fn read_p_rect_02(path: &Path) -> Result<[f64; 9], DatasetError> {
    let text = io::read_text(path)?;
    for (n, line) in content_lines(&text) {
        if let Some(values) = line.strip_prefix("P_rect_02:") {
            let p = parse_numbers(values, 12, path, n, "12 numbers of the 3x4 matrix P_rect_02")?;
            return Ok([p[0], p[1], p[2], p[4], p[5], p[6], p[8], p[9], p[10]]);
        }
    }
    Err(DatasetError::Missing { path: path.to_path_buf(), expected: "a P_rect_02: line".into() })
}

fn read_poses(path: &Path) -> Result<Vec<Isometry3<f64>>, DatasetError> {
    let text = io::read_text(path)?;
    let mut poses = Vec::new();
    for (n, line) in content_lines(&text) {
        let rows = parse_numbers(line, 12, path, n, "12 numbers of a 3x4 row-major pose")?;
        poses.push(io::isometry_from_rows(&rows, path, n)?);
    }
    Ok(poses)
}

fn read_timestamps(path: &Path) -> Result<Vec<f64>, DatasetError> {
    let text = io::read_text(path)?;
    let mut stamps = Vec::new();
    for (n, line) in content_lines(&text) {
        let t = io::parse_timestamp(line).ok_or_else(|| DatasetError::BadLine {
            path: path.to_path_buf(),
            line: n,
            expected: "a timestamp `YYYY-MM-DD HH:MM:SS.nnnnnnnnn` or seconds".into(),
            found: line.to_string(),
        })?;
        stamps.push(t);
    }
    Ok(stamps)
}
