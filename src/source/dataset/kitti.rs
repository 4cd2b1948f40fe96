//! KITTI raw drives (left colour camera, `image_02`) and our synthetic drives written in the
//! same layout:
//!
//! - `image_02/data/NNNNNNNNNN.png` colour frames;
//! - `image_02/cam.txt` (3x3 K), else `P_rect_02` from `calib_cam_to_cam.txt` in the drive
//!   folder or up to two folders above;
//! - camera-to-world poses, from the first of:
//!   1. the GPS/IMU (`oxts/data/<name>.txt`, KITTI raw) with the calibration chain
//!      `calib_imu_to_velo.txt`, `calib_velo_to_cam.txt`, `calib_cam_to_cam.txt` (in the drive
//!      folder or up to two folders above): metric and consistent with the Velodyne ground truth;
//!   2. `image_02/poses.txt`: one 3x4 row-major camera-to-world pose per line, line N for frame
//!      number N (what our synthetic renderer writes). Note: the `poses.txt` shipped with the
//!      kitti_tiny excerpt is not metric at the start of drive 0023 (about 0.5 m per frame where
//!      the GPS/IMU and the Velodyne scans agree on about 0.95 m), hence the preference;
//!
//!   GPS/IMU poses are expressed relative to the first frame's camera (the identity);
//!   poses.txt poses as written.
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

/// Where a KITTI dataset's ground-truth poses come from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PoseSource {
    /// The GPS/IMU (oxts) with the calibration chain to the left colour camera.
    Oxts,
    /// `image_02/poses.txt`.
    PosesFile,
    /// No pose information.
    None,
}

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
    /// Camera-to-world pose per dataset index, where known.
    poses: Option<Vec<Isometry3<f64>>>,
    pose_source: PoseSource,
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
        let file_poses = if poses_path.is_file() { Some(read_poses(&poses_path)?) } else { None };
        let timestamps_path = camera.join("timestamps.txt");
        let timestamps =
            if timestamps_path.is_file() { Some(read_timestamps(&timestamps_path)?) } else { None };
        let max_number = frames.iter().map(|f| f.number).max().unwrap_or(0);
        for (path, count) in [
            (&poses_path, file_poses.as_ref().map(Vec::len)),
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
        let (poses, pose_source) = match oxts_poses(&drive, &frames)? {
            Some(poses) => (Some(poses), PoseSource::Oxts),
            None => match file_poses {
                // Line counts were checked against the frame numbers above.
                Some(by_number) => (
                    Some(frames.iter().map(|f| by_number[f.number]).collect()),
                    PoseSource::PosesFile,
                ),
                None => (None, PoseSource::None),
            },
        };
        Ok(Self {
            name: format!("kitti:{}", drive.display()),
            drive,
            frames,
            intrinsics,
            poses,
            pose_source,
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

    /// Where the ground-truth poses come from.
    pub fn pose_source(&self) -> PoseSource {
        self.pose_source
    }

    /// The camera-to-world poses read from `image_02/poses.txt`, whatever [`KittiDataset::pose_source`] is; `None` without the file.
    pub fn poses_file_poses(&self) -> Result<Option<Vec<Isometry3<f64>>>, DatasetError> {
        let path = self.drive.join("image_02").join("poses.txt");
        if !path.is_file() {
            return Ok(None);
        }
        let by_number = read_poses(&path)?;
        let mut poses = Vec::with_capacity(self.frames.len());
        for f in &self.frames {
            poses.push(*by_number.get(f.number).ok_or_else(|| DatasetError::Missing {
                path: path.clone(),
                expected: format!("a pose line for frame number {}", f.number),
            })?);
        }
        Ok(Some(poses))
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
        let gt_pose = self.poses.as_ref().and_then(|poses| poses.get(i).copied());
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

/// `poses` re-expressed relative to the first one (which becomes the identity).
fn relative_to_first(poses: Vec<Isometry3<f64>>) -> Vec<Isometry3<f64>> {
    let Some(first_inverse) = poses.first().map(Isometry3::inverse) else { return poses };
    poses.into_iter().map(|p| first_inverse * p).collect()
}

/// `KEY: numbers` lines of a KITTI calibration file (lines that are not all numbers skipped).
fn read_calib(path: &Path) -> Result<std::collections::HashMap<String, Vec<f64>>, DatasetError> {
    let text = io::read_text(path)?;
    let mut map = std::collections::HashMap::new();
    for (_, line) in content_lines(&text) {
        if let Some((key, values)) = line.split_once(':')
            && let Ok(numbers) =
                values.split_whitespace().map(str::parse::<f64>).collect::<Result<Vec<_>, _>>()
        {
            map.insert(key.trim().to_string(), numbers);
        }
    }
    Ok(map)
}

fn calib_entry<'a>(
    map: &'a std::collections::HashMap<String, Vec<f64>>,
    key: &str,
    len: usize,
    path: &Path,
) -> Result<&'a [f64], DatasetError> {
    match map.get(key) {
        Some(v) if v.len() == len && v.iter().all(|x| x.is_finite()) => Ok(v),
        _ => Err(DatasetError::Missing {
            path: path.to_path_buf(),
            expected: format!("a line `{key}:` with {len} numbers"),
        }),
    }
}

/// The rigid transform of rotation `r` (9 numbers, row-major) and translation `t`.
fn rigid(r: &[f64], t: &[f64], path: &Path) -> Result<Isometry3<f64>, DatasetError> {
    let rows = [r[0], r[1], r[2], t[0], r[3], r[4], r[5], t[1], r[6], r[7], r[8], t[2]];
    io::isometry_from_rows(&rows, path, 1)
}

/// The pose of the left colour camera (rectified) in the IMU frame, from the calibration
/// chain IMU -> Velodyne -> camera 0 -> rectified camera 0 -> rectified camera 2.
fn camera_in_imu(calib_dir: &Path) -> Result<Isometry3<f64>, DatasetError> {
    let imu_path = calib_dir.join("calib_imu_to_velo.txt");
    let velo_path = calib_dir.join("calib_velo_to_cam.txt");
    let cam_path = calib_dir.join("calib_cam_to_cam.txt");
    let (imu, velo, cam) =
        (read_calib(&imu_path)?, read_calib(&velo_path)?, read_calib(&cam_path)?);
    let velo_from_imu = rigid(
        calib_entry(&imu, "R", 9, &imu_path)?,
        calib_entry(&imu, "T", 3, &imu_path)?,
        &imu_path,
    )?;
    let cam0_from_velo = rigid(
        calib_entry(&velo, "R", 9, &velo_path)?,
        calib_entry(&velo, "T", 3, &velo_path)?,
        &velo_path,
    )?;
    let rect0_from_cam0 =
        rigid(calib_entry(&cam, "R_rect_00", 9, &cam_path)?, &[0.0; 3], &cam_path)?;
    // P_rect_02 = K [I | t]: t = K^-1 * (last column) is camera 2's offset in rectified camera 0.
    let p = calib_entry(&cam, "P_rect_02", 12, &cam_path)?;
    let k = nalgebra::Matrix3::new(p[0], p[1], p[2], p[4], p[5], p[6], p[8], p[9], p[10]);
    let offset = k
        .try_inverse()
        .map(|k_inv| k_inv * nalgebra::Vector3::new(p[3], p[7], p[11]))
        .ok_or_else(|| DatasetError::Missing {
            path: cam_path.clone(),
            expected: "an invertible K in P_rect_02".into(),
        })?;
    let rect2_from_rect0 = Isometry3::translation(offset.x, offset.y, offset.z);
    Ok((rect2_from_rect0 * rect0_from_cam0 * cam0_from_velo * velo_from_imu).inverse())
}

/// Camera-to-world poses of every frame from the GPS/IMU, relative to the first frame; `None`
/// where the drive has no oxts data or calibration files (then poses.txt is used).
fn oxts_poses(
    drive: &Path,
    frames: &[KittiFrame],
) -> Result<Option<Vec<Isometry3<f64>>>, DatasetError> {
    let oxts_dir = drive.join("oxts").join("data");
    let Some(calib_dir) = drive.ancestors().take(3).find(|d| {
        d.join("calib_imu_to_velo.txt").is_file() && d.join("calib_velo_to_cam.txt").is_file()
    }) else {
        return Ok(None);
    };
    let files: Vec<PathBuf> = frames
        .iter()
        .map(|f| {
            oxts_dir
                .join(format!("{}.txt", f.image.file_stem().unwrap_or_default().to_string_lossy()))
        })
        .collect();
    if !calib_dir.join("calib_cam_to_cam.txt").is_file() || !files.iter().all(|f| f.is_file()) {
        return Ok(None);
    }
    let imu_from_camera = camera_in_imu(calib_dir)?;
    const EARTH_RADIUS_M: f64 = 6_378_137.0;
    let mut mercator_scale = None;
    let mut poses = Vec::with_capacity(files.len());
    for path in &files {
        let text = io::read_text(path)?;
        let line = content_lines(&text).next().map(|(_, l)| l).unwrap_or("");
        let count = line.split_whitespace().count().max(6);
        let v =
            parse_numbers(line, count, path, 1, "an oxts record: lat lon alt roll pitch yaw …")?;
        let (lat, lon, alt, roll, pitch, yaw) = (v[0], v[1], v[2], v[3], v[4], v[5]);
        // Mercator projection scaled at the first frame's latitude (metres, x east, y north).
        let scale = *mercator_scale.get_or_insert(lat.to_radians().cos());
        let x = scale * lon.to_radians() * EARTH_RADIUS_M;
        let y = scale * EARTH_RADIUS_M * ((90.0 + lat).to_radians() / 2.0).tan().ln();
        let rotation = nalgebra::UnitQuaternion::from_euler_angles(roll, pitch, yaw);
        let world_from_imu =
            Isometry3::from_parts(nalgebra::Translation3::new(x, y, alt), rotation);
        poses.push(world_from_imu * imu_from_camera);
    }
    Ok(Some(relative_to_first(poses)))
}
