//! TUM RGB-D sequences: `rgb.txt` and `depth.txt` (timestamp + file name), `groundtruth.txt`
//! (`ts tx ty tz qx qy qz qw`, camera-to-world, 100 Hz motion capture), depth PNGs in units of
//! 1/5000 m. Each colour image is paired with the nearest-timestamp depth image (pairs more
//! than 0.02 s apart are dropped) and the ground-truth pose interpolated at its timestamp
//! (linear translation, slerp rotation). The files carry no intrinsics: the freiburg1
//! calibration (with its lens distortion) is used, or [`TumDataset::undistorted`] remaps
//! every frame to the distortion-free pinhole image with the same K.

use super::io::{self, content_lines, parse_numbers};
use super::{Dataset, DatasetError, DatasetKind};
use crate::camera::{Distortion, Intrinsics, UndistortMap};
use crate::frame::Frame;
use nalgebra::{Isometry3, Quaternion, Translation3, UnitQuaternion, Vector3};
use std::path::{Path, PathBuf};

/// Largest colour-to-depth timestamp gap accepted when pairing, seconds.
pub const MAX_DEPTH_GAP_S: f64 = 0.02;
/// Largest gap between the two motion-capture samples a pose is interpolated between, seconds.
pub const MAX_POSE_GAP_S: f64 = 0.1;
/// Metres per depth PNG unit.
const DEPTH_SCALE: f32 = 1.0 / 5000.0;

/// TUM's published freiburg1 colour calibration at 640x480.
pub fn freiburg1_intrinsics() -> Intrinsics {
    Intrinsics {
        fx: 517.3,
        fy: 516.5,
        cx: 318.6,
        cy: 255.3,
        width: 640,
        height: 480,
        distortion: Some(Distortion {
            k1: 0.2624,
            k2: -0.9531,
            p1: -0.0054,
            p2: 0.0026,
            k3: 1.1633,
        }),
    }
}

struct TumFrame {
    timestamp: f64,
    rgb: PathBuf,
    depth: PathBuf,
    pose: Isometry3<f64>,
}

/// A TUM RGB-D sequence folder.
pub struct TumDataset {
    name: String,
    frames: Vec<TumFrame>,
    intrinsics: Intrinsics,
    undistort: Option<UndistortMap>,
}

impl TumDataset {
    /// Reads the three lists and associates colour, depth and pose by timestamp.
    pub fn open(dir: impl AsRef<Path>) -> Result<Self, DatasetError> {
        let dir = dir.as_ref();
        io::require_dir(
            dir,
            "a TUM RGB-D sequence folder with rgb.txt, depth.txt, groundtruth.txt",
        )?;
        let rgb = read_file_list(&dir.join("rgb.txt"), dir)?;
        let depth = read_file_list(&dir.join("depth.txt"), dir)?;
        let gt_path = dir.join("groundtruth.txt");
        let trajectory = read_trajectory(&gt_path)?;
        let mut frames = Vec::with_capacity(rgb.len());
        for (timestamp, rgb_path) in rgb {
            let Some(depth_path) = nearest(&depth, timestamp, MAX_DEPTH_GAP_S) else { continue };
            let Some(pose) = interpolate_pose(&trajectory, timestamp) else { continue };
            frames.push(TumFrame { timestamp, rgb: rgb_path, depth: depth_path.clone(), pose });
        }
        if frames.is_empty() {
            return Err(DatasetError::Empty {
                path: dir.to_path_buf(),
                reason: format!(
                    "no colour image has a depth image within {MAX_DEPTH_GAP_S} s and a \
                     ground-truth pose"
                ),
            });
        }
        let (width, height) = io::image_size(&frames[0].rgb)?;
        let intrinsics = freiburg1_intrinsics().scaled(width, height);
        Ok(Self { name: format!("tum:{}", dir.display()), frames, intrinsics, undistort: None })
    }

    /// This dataset with every frame's colour (bilinear) and depth (nearest) remapped to the
    /// undistorted pinhole image with the same K; frames then carry no distortion.
    pub fn undistorted(mut self) -> Self {
        self.undistort = Some(UndistortMap::new(&self.intrinsics));
        self
    }

    /// The intrinsics of the frames (with distortion unless [`TumDataset::undistorted`]).
    pub fn intrinsics(&self) -> Intrinsics {
        match self.undistort {
            Some(_) => Intrinsics { distortion: None, ..self.intrinsics },
            None => self.intrinsics,
        }
    }

    /// The timestamp of frame `i`, seconds.
    pub fn timestamp(&self, i: usize) -> Option<f64> {
        self.frames.get(i).map(|f| f.timestamp)
    }
}

impl Dataset for TumDataset {
    fn name(&self) -> &str {
        &self.name
    }

    fn kind(&self) -> DatasetKind {
        DatasetKind::Tum
    }

    fn len(&self) -> usize {
        self.frames.len()
    }

    fn frame(&self, i: usize) -> Result<Frame, DatasetError> {
        let entry = self.frames.get(i).ok_or_else(|| DatasetError::OutOfRange {
            dataset: self.name.clone(),
            index: i,
            len: self.frames.len(),
        })?;
        let size = (self.intrinsics.width, self.intrinsics.height);
        let mut rgb = io::read_rgb(&entry.rgb)?;
        io::check_size(&entry.rgb, size, (rgb.width, rgb.height))?;
        let mut depth = io::read_depth_png(&entry.depth, DEPTH_SCALE)?;
        io::check_size(&entry.depth, size, (depth.width, depth.height))?;
        if let Some(map) = &self.undistort {
            // Sizes were checked above, so the remaps cannot fail.
            rgb = map.remap_rgb(&rgb).unwrap_or(rgb);
            depth = map.remap_depth(&depth).unwrap_or(depth);
        }
        Ok(Frame {
            index: i as u64,
            timestamp: entry.timestamp,
            rgb,
            gt_depth: Some(depth),
            gt_pose: Some(entry.pose),
            intrinsics: Some(self.intrinsics()),
        })
    }
}

/// `timestamp filename` lines, sorted by timestamp, file names resolved against `dir`.
fn read_file_list(path: &Path, dir: &Path) -> Result<Vec<(f64, PathBuf)>, DatasetError> {
    let text = io::read_text(path)?;
    let mut list = Vec::new();
    for (n, line) in content_lines(&text) {
        let bad = || DatasetError::BadLine {
            path: path.to_path_buf(),
            line: n,
            expected: "`timestamp filename`".into(),
            found: line.to_string(),
        };
        let mut parts = line.split_whitespace();
        let (Some(ts), Some(file), None) = (parts.next(), parts.next(), parts.next()) else {
            return Err(bad());
        };
        let ts: f64 = ts.parse().ok().filter(|t: &f64| t.is_finite()).ok_or_else(bad)?;
        list.push((ts, dir.join(file)));
    }
    if list.is_empty() {
        return Err(DatasetError::Empty { path: path.to_path_buf(), reason: "no entries".into() });
    }
    list.sort_by(|a, b| a.0.total_cmp(&b.0));
    Ok(list)
}

/// One motion-capture sample.
struct PoseSample {
    timestamp: f64,
    translation: Vector3<f64>,
    rotation: UnitQuaternion<f64>,
}

fn read_trajectory(path: &Path) -> Result<Vec<PoseSample>, DatasetError> {
    let text = io::read_text(path)?;
    let mut samples = Vec::new();
    for (n, line) in content_lines(&text) {
        let v = parse_numbers(line, 8, path, n, "`timestamp tx ty tz qx qy qz qw`")?;
        let q = Quaternion::new(v[7], v[4], v[5], v[6]);
        if (q.norm() - 1.0).abs() > 1e-2 {
            return Err(DatasetError::BadLine {
                path: path.to_path_buf(),
                line: n,
                expected: "a unit quaternion qx qy qz qw".into(),
                found: line.to_string(),
            });
        }
        samples.push(PoseSample {
            timestamp: v[0],
            translation: Vector3::new(v[1], v[2], v[3]),
            rotation: UnitQuaternion::from_quaternion(q),
        });
    }
    if samples.is_empty() {
        return Err(DatasetError::Empty { path: path.to_path_buf(), reason: "no poses".into() });
    }
    samples.sort_by(|a, b| a.timestamp.total_cmp(&b.timestamp));
    Ok(samples)
}

/// The entry nearest to `timestamp` in a sorted list, if within `max_gap` seconds.
fn nearest(list: &[(f64, PathBuf)], timestamp: f64, max_gap: f64) -> Option<&PathBuf> {
    let i = list.partition_point(|(t, _)| *t < timestamp);
    [i.checked_sub(1), (i < list.len()).then_some(i)]
        .into_iter()
        .flatten()
        .map(|j| &list[j])
        .min_by(|a, b| (a.0 - timestamp).abs().total_cmp(&(b.0 - timestamp).abs()))
        .filter(|(t, _)| (t - timestamp).abs() <= max_gap)
        .map(|(_, p)| p)
}

/// The pose at `timestamp`: interpolated between the bracketing samples (if they are at most
/// [`MAX_POSE_GAP_S`] apart), or the nearest end sample if within [`MAX_DEPTH_GAP_S`].
fn interpolate_pose(samples: &[PoseSample], timestamp: f64) -> Option<Isometry3<f64>> {
    let i = samples.partition_point(|s| s.timestamp < timestamp);
    let pose =
        |s: &PoseSample| Isometry3::from_parts(Translation3::from(s.translation), s.rotation);
    if i == 0 {
        let first = &samples[0];
        return ((first.timestamp - timestamp).abs() <= MAX_DEPTH_GAP_S).then(|| pose(first));
    }
    if i == samples.len() {
        let last = &samples[i - 1];
        return ((timestamp - last.timestamp).abs() <= MAX_DEPTH_GAP_S).then(|| pose(last));
    }
    let (a, b) = (&samples[i - 1], &samples[i]);
    let span = b.timestamp - a.timestamp;
    if span > MAX_POSE_GAP_S {
        return None;
    }
    let t = if span > 0.0 { (timestamp - a.timestamp) / span } else { 0.0 };
    let translation = a.translation.lerp(&b.translation, t);
    let rotation = a.rotation.try_slerp(&b.rotation, t, 1e-9).unwrap_or(a.rotation);
    Some(Isometry3::from_parts(Translation3::from(translation), rotation))
}
