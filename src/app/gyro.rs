//! The camera's orientation for adaptation (`eval --adapt --gyro`): a gyro or attitude
//! estimator says how the camera turned between two frames far better than a pose network
//! that is still learning, and the adapter's pose refinement starts its rotations there
//! ([`crate::adapt::Triplet::rotation_prior`]; docs/adapt.md, "A gyro starts the rotation").
//!
//! - `--gyro FILE`: CSV rows `time,qw,qx,qy,qz`, the camera-to-world orientation of the camera
//!   (its axes: x right, y down, z forward) at `time` seconds on the frames' clock, as an
//!   attitude estimator integrating the gyro writes it (rotated into the camera's axes by the
//!   camera-IMU extrinsics). Read at each frame's timestamp by spherical interpolation.
//! - `--gyro ground-truth`: the dataset's ground-truth camera orientations stand in for such a
//!   file in replay (kitchen, TUM, rendered drives); over a triplet's 0.4 s a MEMS gyro drifts
//!   by hundredths of a degree, well below what the refinement resolves.

use crate::frame::Frame;
use nalgebra::{Quaternion, UnitQuaternion};
use std::path::{Path, PathBuf};

/// Where the orientations come from.
#[derive(Clone, Debug, PartialEq)]
pub enum GyroSource {
    GroundTruth,
    File(PathBuf),
    /// A Zenoh key the camera's attitude is published on (`run --adapt` only;
    /// [`crate::app::gyro_live`]).
    Zenoh(String),
    /// An IMU topic of the bag a live run replays, as `--gyro mcap:` gives it
    /// (`TOPIC[?camera_in_imu=qw,qx,qy,qz]`; [`crate::app::gyro_bag`]).
    Bag(String),
}

impl GyroSource {
    /// `ground-truth`, `zenoh:KEY`, `mcap:TOPIC` or a file path, as `--gyro` takes it.
    pub fn from_flag(value: &str) -> Self {
        match value {
            "ground-truth" => Self::GroundTruth,
            key if key.starts_with("zenoh:") => Self::Zenoh(key["zenoh:".len()..].to_owned()),
            spec if spec.starts_with("mcap:") => Self::Bag(spec["mcap:".len()..].to_owned()),
            path => Self::File(PathBuf::from(path)),
        }
    }
}

/// The orientations of one run.
#[derive(Clone, Debug)]
pub enum Orientations {
    GroundTruth,
    /// (time s, camera-to-world orientation), time strictly increasing.
    Track {
        path: PathBuf,
        samples: Vec<(f64, UnitQuaternion<f64>)>,
    },
}

impl Orientations {
    /// Opens `source` (reads and checks a file).
    pub fn open(source: &GyroSource) -> crate::Result<Self> {
        match source {
            GyroSource::GroundTruth => Ok(Self::GroundTruth),
            GyroSource::Zenoh(key) => Err(crate::Error::Other(format!(
                "--gyro zenoh:{key}: a live topic is read by `run --adapt` only; a lock-step \
                 replay takes a recorded track: --gyro FILE (time,qw,qx,qy,qz)"
            ))),
            GyroSource::Bag(spec) => Err(crate::Error::Other(format!(
                "--gyro mcap:{spec}: reads an IMU topic of the bag a live run replays (`run \
                 --adapt --source mcap://FILE`); a lock-step replay takes a recorded track: \
                 --gyro FILE (time,qw,qx,qy,qz) or ground-truth"
            ))),
            GyroSource::File(path) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|e| crate::Error::Other(format!("--gyro {}: {e}", path.display())))?;
                Self::parse(path, &text)
            }
        }
    }

    /// [`Orientations::open`] on a file's text: `#` comments, blank lines and a header row
    /// naming the columns are skipped; every other row is `time,qw,qx,qy,qz` with finite
    /// numbers, a quaternion of length 1 ± 1e-3 and times strictly increasing.
    pub fn parse(path: &Path, text: &str) -> crate::Result<Self> {
        let row_error = |line: usize, reason: String| {
            crate::Error::Other(format!("--gyro {}:{line}: {reason}", path.display()))
        };
        let mut samples: Vec<(f64, UnitQuaternion<f64>)> = Vec::new();
        for (n, raw) in text.lines().enumerate() {
            let row = raw.trim();
            if row.is_empty()
                || row.starts_with('#')
                || (samples.is_empty() && row.starts_with('t'))
            {
                continue;
            }
            let (time, orientation) = parse_row(row).map_err(|e| row_error(n + 1, e))?;
            if let Some(&(last, _)) = samples.last()
                && time <= last
            {
                return Err(row_error(
                    n + 1,
                    format!("time {time} after {last}: expected strictly increasing times"),
                ));
            }
            samples.push((time, orientation));
        }
        if samples.is_empty() {
            return Err(crate::Error::Other(format!(
                "--gyro {}: no rows; expected CSV time,qw,qx,qy,qz",
                path.display()
            )));
        }
        Ok(Self::Track { path: path.to_path_buf(), samples })
    }

    /// The camera's orientation at `frame` (its index names it in errors, with `dataset`).
    pub fn at(&self, frame: &Frame, dataset: &str) -> crate::Result<UnitQuaternion<f64>> {
        match self {
            Self::GroundTruth => frame.gt_pose.map(|pose| pose.rotation).ok_or_else(|| {
                crate::Error::Other(format!(
                    "--gyro ground-truth: {dataset} frame {} has no ground-truth pose; pass \
                     --gyro FILE (time,qw,qx,qy,qz) instead",
                    frame.index
                ))
            }),
            Self::Track { path, samples } => {
                let t = frame.timestamp;
                interpolate(samples, t).ok_or_else(|| {
                    let (first, last) = (samples[0].0, samples[samples.len() - 1].0);
                    crate::Error::Other(format!(
                        "--gyro {}: {dataset} frame {} at {t} s is outside the file's times \
                         {first}..{last} s (the frames' clock)",
                        path.display(),
                        frame.index
                    ))
                })
            }
        }
    }
}

/// The orientation at time `t` between `samples` (time strictly increasing) by spherical
/// interpolation; None outside their times.
pub(crate) fn interpolate(
    samples: &[(f64, UnitQuaternion<f64>)],
    t: f64,
) -> Option<UnitQuaternion<f64>> {
    let after = samples.partition_point(|&(time, _)| time < t);
    let &(t1, q1) = samples.get(after)?;
    if t1 == t {
        return Some(q1);
    }
    let &(t0, q0) = samples.get(after.checked_sub(1)?)?;
    Some(q0.slerp(&q1, (t - t0) / (t1 - t0)))
}

/// One `time,qw,qx,qy,qz` row: finite numbers and a quaternion of length 1 ± 1e-3. The error
/// names the field and what was expected.
pub(crate) fn parse_row(row: &str) -> Result<(f64, UnitQuaternion<f64>), String> {
    let cells: Vec<&str> = row.split(',').map(str::trim).collect();
    if cells.len() != 5 {
        return Err(format!("{} fields, expected 5 (time,qw,qx,qy,qz)", cells.len()));
    }
    let mut values = [0f64; 5];
    for ((value, cell), name) in values.iter_mut().zip(&cells).zip(COLUMNS) {
        *value = cell
            .parse::<f64>()
            .ok()
            .filter(|v| v.is_finite())
            .ok_or_else(|| format!("{name} `{cell}`: expected a finite number"))?;
    }
    sample_from(values)
}

/// A sample from its five numbers `time, qw, qx, qy, qz`: all finite, and the quaternion of
/// length 1 ± 1e-3. Every reader of orientations (CSV rows, Zenoh messages, IMU messages, a
/// mount given on the command line) ends here.
pub(crate) fn sample_from(values: [f64; 5]) -> Result<(f64, UnitQuaternion<f64>), String> {
    if let Some((name, value)) = COLUMNS.iter().zip(values).find(|(_, v)| !v.is_finite()) {
        return Err(format!("{name} {value}: expected a finite number"));
    }
    let [time, w, x, y, z] = values;
    let q = Quaternion::new(w, x, y, z);
    if (q.norm() - 1.0).abs() > 1e-3 {
        let norm = q.norm();
        return Err(format!("quaternion of length {norm:.4}: expected a unit quaternion"));
    }
    Ok((time, UnitQuaternion::new_normalize(q)))
}

pub(crate) const COLUMNS: [&str; 5] = ["time", "qw", "qx", "qy", "qz"];

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::RgbImage;
    use nalgebra::Vector3;

    fn frame_at(index: u64, timestamp: f64) -> Frame {
        Frame::from_rgb(index, timestamp, RgbImage::new(2, 2))
    }

    #[test]
    fn a_track_is_read_between_its_rows_by_slerp() {
        let half = UnitQuaternion::from_scaled_axis(Vector3::new(0.0, 0.2, 0.0));
        let (w, x, y, z) = (half.w, half.i, half.j, half.k);
        let text = format!("time,qw,qx,qy,qz\n# comment\n0.0,1,0,0,0\n\n1.0,{w},{x},{y},{z}\n");
        let track = Orientations::parse(Path::new("gyro.csv"), &text).expect("valid");
        let middle = track.at(&frame_at(3, 0.5), "replay").expect("inside");
        assert!((middle.angle() - 0.1).abs() < 1e-9, "{}", middle.angle());
        assert!(
            (track.at(&frame_at(4, 1.0), "replay").expect("last row").angle() - 0.2).abs() < 1e-9
        );
        let err = track.at(&frame_at(7, 1.5), "replay").unwrap_err().to_string();
        assert!(
            err.contains("gyro.csv") && err.contains("frame 7") && err.contains("outside"),
            "{err}"
        );
    }

    #[test]
    fn a_sample_that_is_not_finite_is_refused_naming_the_field() {
        let err = sample_from([0.0, f64::NAN, 0.0, 0.0, 0.0]).unwrap_err();
        assert!(err.contains("qw NaN") && err.contains("finite"), "{err}");
        assert!(sample_from([0.0, 1.0, 0.0, 0.0, 0.0]).is_ok());
    }

    #[test]
    fn bad_rows_name_the_file_line_and_field() {
        let cases = [
            ("0,1,0,0\n", ":1:", "expected 5"),
            ("0,1,0,0,0\n1,1,0,x,0\n", ":2:", "qy `x`"),
            ("0,2,0,0,0\n", ":1:", "unit quaternion"),
            ("1,1,0,0,0\n1,1,0,0,0\n", ":2:", "strictly increasing"),
            ("0,1,0,0,inf\n", ":1:", "qz `inf`"),
        ];
        for (text, line, what) in cases {
            let err = Orientations::parse(Path::new("imu.csv"), text).unwrap_err().to_string();
            assert!(err.contains(&format!("imu.csv{line}")) && err.contains(what), "{err}");
        }
        let err = Orientations::parse(Path::new("imu.csv"), "# only\n").unwrap_err().to_string();
        assert!(err.contains("no rows"), "{err}");
    }

    #[test]
    fn ground_truth_needs_a_pose() {
        let err = Orientations::GroundTruth.at(&frame_at(2, 0.0), "kitti").unwrap_err().to_string();
        assert!(err.contains("kitti frame 2") && err.contains("--gyro FILE"), "{err}");
    }
}
