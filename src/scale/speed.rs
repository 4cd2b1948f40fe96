//! The `speed` scale source: the vehicle's own odometry (wheel speed, GPS or a visual-inertial
//! estimate) says how far the camera travelled between two frames in metres; the adapter's
//! motion for the same two frames says it in the depth network's units, because the
//! photometric loss ties the translation to the depth it warps with. Their ratio is metres per
//! network unit.
//!
//! - [`SpeedTrack`] reads a timestamped speed sidecar (CSV `time,speed` or JSON lines
//!   `{"time": s, "speed": m/s}`) and integrates it into an odometer: metres travelled since the
//!   first sample, at any time the track covers.
//! - [`PoseOdometer`] makes the same odometer from a dataset's ground-truth camera positions
//!   (kitchen, TUM, rendered drives), standing in for a visual-inertial odometry input in replay.
//! - [`SpeedScale`] turns (metres travelled, network travel) pairs into a per-frame
//!   [`ScaleEstimate`]: the median of the last [`HISTORY`] ratios, once [`MIN_RATIOS`] were
//!   measured; a pair over a shorter distance than [`MIN_TRAVEL_M`] (the car stands still) is
//!   not measured and the previous scale is served.

use super::{ScaleEstimate, ScaleFallback};
use nalgebra::{Isometry3, Vector3};
use std::collections::VecDeque;
use std::path::{Path, PathBuf};

/// Why `--metric-scale speed` is refused without adaptation (`eval` and `run` alike).
pub const NEEDS_ADAPT: &str = "--metric-scale speed: the scale comes from the adapter's motion \
     against the odometry, and the adapter also learns metric translation from it; add --adapt";

/// Ratios the served scale is the median of.
pub const HISTORY: usize = 51;
/// Ratios measured before a scale is served at all (until then: the network's units).
pub const MIN_RATIOS: usize = 10;
/// Below this distance between the two frames (metres) the camera counts as standing still.
pub const MIN_TRAVEL_M: f64 = 0.01;
/// Network travel below this (network units) is no measurement (a degenerate motion estimate).
const MIN_NETWORK_TRAVEL: f64 = 1e-6;

/// A sidecar file that cannot be used; names the file and the 1-based line.
#[derive(Debug, thiserror::Error)]
pub enum SpeedFileError {
    #[error("{}: {source}", path.display())]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{}:{line}: {reason}", path.display())]
    Row { path: PathBuf, line: usize, reason: String },
    #[error("{}: {reason}", path.display())]
    Empty { path: PathBuf, reason: String },
}

/// One speed sample as text: a JSON object with `speed` (m/s) and optionally `time` (s), CSV
/// `time,speed`, or a bare `speed`. The time is finite; the speed finite and not negative. The
/// error says what was expected (the caller adds where the text came from).
pub fn parse_sample(text: &str) -> Result<(Option<f64>, f64), String> {
    let text = text.trim();
    let (time, speed) = if text.starts_with('{') {
        let value: serde_json::Value =
            serde_json::from_str(text).map_err(|e| format!("not a JSON object: {e}"))?;
        let field = |name: &str| {
            value
                .get(name)
                .map(|v| v.as_f64().ok_or_else(|| format!("expected a number in field `{name}`")))
                .transpose()
        };
        let speed = field("speed")?.ok_or("expected a number in field `speed`")?;
        (field("time")?, speed)
    } else {
        let number = |cell: &str, name: &str| {
            let cell = cell.trim();
            cell.parse::<f64>().map_err(|_| format!("{name} `{cell}`: expected a number"))
        };
        let mut cells = text.split(',');
        match (cells.next(), cells.next(), cells.clone().count()) {
            (Some(speed), None, _) => (None, number(speed, "speed")?),
            (Some(time), Some(speed), 0) => (Some(number(time, "time")?), number(speed, "speed")?),
            (_, _, more) => {
                return Err(format!("{} fields, expected 2 (time,speed)", more + 2));
            }
        }
    };
    if let Some(time) = time
        && !time.is_finite()
    {
        return Err(format!("time {time}: expected a finite number"));
    }
    if !(speed.is_finite() && speed >= 0.0) {
        return Err(format!("speed {speed}: expected metres per second, finite and not negative"));
    }
    Ok((time, speed))
}

/// Timestamped speeds and the distance integrated over them.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SpeedTrack {
    /// (time s, speed m/s, metres travelled from the first sample), time strictly increasing.
    samples: Vec<(f64, f64, f64)>,
}

impl SpeedTrack {
    /// Reads a sidecar: CSV rows `time,speed` (an optional header line naming them, `#`
    /// comments and blank lines skipped) or JSON lines with `time` and `speed`. Times are
    /// seconds on the frames' clock, strictly increasing; speeds are metres per second, finite
    /// and not negative. A bad row is an error naming the file and the line.
    pub fn read(path: &Path) -> Result<Self, SpeedFileError> {
        let text = std::fs::read_to_string(path)
            .map_err(|source| SpeedFileError::Io { path: path.to_path_buf(), source })?;
        Self::parse(path, &text)
    }

    /// [`SpeedTrack::read`] on text already read from `path`.
    pub fn parse(path: &Path, text: &str) -> Result<Self, SpeedFileError> {
        let row_error = |line: usize, reason: String| SpeedFileError::Row {
            path: path.to_path_buf(),
            line,
            reason,
        };
        let mut track = Self::default();
        for (n, raw) in text.lines().enumerate() {
            let line = n + 1;
            let row = raw.trim();
            if row.is_empty() || row.starts_with('#') {
                continue;
            }
            let cells = || row.split(',').map(str::trim);
            if track.samples.is_empty()
                && !row.starts_with('{')
                && cells().next().is_some_and(|c| c.parse::<f64>().is_err())
            {
                if cells().ne(["time", "speed"]) {
                    return Err(row_error(line, format!("header `{row}`: expected `time,speed`")));
                }
                continue;
            }
            let (time, speed) = parse_sample(row).map_err(|reason| row_error(line, reason))?;
            let time = time.ok_or_else(|| {
                row_error(line, "no time: expected `time,speed` (or a JSON `time`)".into())
            })?;
            track.push(time, speed, f64::INFINITY).map_err(|reason| row_error(line, reason))?;
        }
        if track.samples.len() < 2 {
            return Err(SpeedFileError::Empty {
                path: path.to_path_buf(),
                reason: format!(
                    "{} speed rows, expected at least 2 (time,speed)",
                    track.samples.len()
                ),
            });
        }
        Ok(track)
    }

    /// A track from (time, speed) samples (trapezoidal integration); refused, with the reason,
    /// where a time is not after the one before.
    pub fn from_samples(rows: &[(f64, f64)]) -> Result<Self, String> {
        let mut track = Self::default();
        for &(time, speed) in rows {
            track.push(time, speed, f64::INFINITY)?;
        }
        Ok(track)
    }

    /// Metres travelled from the first sample to `time` (speed linear between samples), or None
    /// outside the track.
    pub fn odometer(&self, time: f64) -> Option<f64> {
        let (first, last) = (self.samples.first()?, self.samples.last()?);
        if !(first.0..=last.0).contains(&time) {
            return None;
        }
        if self.samples.len() == 1 {
            return Some(first.2);
        }
        let i = self.samples.partition_point(|s| s.0 <= time).clamp(1, self.samples.len() - 1);
        let (t0, v0, d0) = self.samples[i - 1];
        let (t1, v1, _) = self.samples[i];
        let dt = time - t0;
        let v = v0 + (v1 - v0) * dt / (t1 - t0);
        Some(d0 + 0.5 * (v0 + v) * dt)
    }

    /// Adds a sample after the last one (trapezoidal integration; a live track grows); samples
    /// more than `keep_s` older than it are forgotten, readings before them are then None.
    /// Refused, with the reason, when `time` is not after the last sample's.
    pub fn push(&mut self, time: f64, speed: f64, keep_s: f64) -> Result<(), String> {
        let Some(&(last_time, last_speed, travelled)) = self.samples.last() else {
            self.samples.push((time, speed, 0.0));
            return Ok(());
        };
        if time <= last_time {
            return Err(format!("time {time} is not after the previous sample's {last_time}"));
        }
        let travelled = travelled + 0.5 * (last_speed + speed) * (time - last_time);
        self.samples.push((time, speed, travelled));
        // Forget in batches, so that each push costs O(1) on average.
        if self.samples[0].0 < time - 2.0 * keep_s {
            let first_kept = self.samples.partition_point(|s| s.0 < time - keep_s);
            self.samples.drain(..first_kept.min(self.samples.len() - 2));
        }
        Ok(())
    }

    /// [`SpeedTrack::odometer`], and up to `max_ahead_s` after the last sample at its speed (a
    /// live frame may come before the speed sample that covers it).
    pub fn odometer_ahead(&self, time: f64, max_ahead_s: f64) -> Option<f64> {
        let &(last_time, last_speed, travelled) = self.samples.last()?;
        if time > last_time {
            return (time - last_time <= max_ahead_s)
                .then_some(travelled + last_speed * (time - last_time));
        }
        self.odometer(time)
    }

    /// The time span the track covers.
    pub fn span(&self) -> (f64, f64) {
        let first = self.samples.first().map_or(0.0, |s| s.0);
        (first, self.samples.last().map_or(first, |s| s.0))
    }
}

/// An odometer from ground-truth camera positions: the path length through the positions seen
/// so far, in metres (the dataset's units).
#[derive(Clone, Debug, Default)]
pub struct PoseOdometer {
    last: Option<Vector3<f64>>,
    travelled: f64,
}

impl PoseOdometer {
    /// Adds the next frame's camera-to-world pose and returns the odometer reading there.
    pub fn update(&mut self, camera_to_world: &Isometry3<f64>) -> f64 {
        let position = camera_to_world.translation.vector;
        if let Some(last) = self.last {
            self.travelled += (position - last).norm();
        }
        self.last = Some(position);
        self.travelled
    }
}

/// Where a `speed` run's odometry comes from: a speed sidecar read at each frame's timestamp,
/// the frames' ground-truth camera positions, or (live) the speed published on a Zenoh key.
#[derive(Debug)]
pub enum Odometry {
    File { track: SpeedTrack, path: PathBuf },
    GroundTruth(PoseOdometer),
    Live(super::live_speed::LiveSpeed),
}

impl Odometry {
    /// From `--speed-file` when given, else from ground-truth positions; the error names the
    /// flag, the file and the line.
    pub fn open(speed_file: Option<&Path>) -> Result<Self, String> {
        Ok(match speed_file {
            Some(path) => Odometry::File {
                track: SpeedTrack::read(path).map_err(|e| format!("--speed-file {e}"))?,
                path: path.to_path_buf(),
            },
            None => Odometry::GroundTruth(PoseOdometer::default()),
        })
    }

    /// The odometer reading at `frame` (metres); frames must come in order. A sidecar or the
    /// ground truth must cover every frame (the error says what is missing and what to do;
    /// `source` names the frames' origin in it); a live key may have no speed for a frame yet,
    /// which is None (counted and warned about by [`super::live_speed::LiveSpeed`]).
    pub fn reading(
        &mut self,
        frame: &crate::frame::Frame,
        source: &str,
    ) -> Result<Option<f64>, String> {
        match self {
            Odometry::Live(live) => Ok(live.reading(frame)),
            Odometry::File { track, path } => track.odometer(frame.timestamp).map(Some).ok_or_else(|| {
                let (first, last) = track.span();
                format!(
                    "--speed-file {}: covers {first:.3}–{last:.3} s, and frame {} of {source} is \
                     at {:.3} s: expected the speeds to cover every frame's timestamp",
                    path.display(),
                    frame.index,
                    frame.timestamp
                )
            }),
            Odometry::GroundTruth(odometer) => {
                let pose = frame.gt_pose.as_ref().ok_or_else(|| {
                    format!(
                        "--metric-scale speed without --speed-file takes the distance travelled \
                         from the ground-truth camera positions, and frame {} of {source} has \
                         none: pass --speed-file FILE (time,speed)",
                        frame.index
                    )
                })?;
                Ok(Some(odometer.update(pose)))
            }
        }
    }
}

/// Metres per network unit from travelled distances.
#[derive(Clone, Debug, Default)]
pub struct SpeedScale {
    ratios: VecDeque<f64>,
    measured: u64,
    stationary: u64,
}

impl SpeedScale {
    pub fn new() -> Self {
        Self::default()
    }

    /// One pair of frames: `metres` travelled between them by the odometry and
    /// `network_travel`, the length of the adapter's translation between them (network units).
    /// Returns the scale served from now on.
    pub fn update(&mut self, metres: f64, network_travel: f64) -> ScaleEstimate {
        let usable = metres.is_finite()
            && network_travel.is_finite()
            && metres >= MIN_TRAVEL_M
            && network_travel > MIN_NETWORK_TRAVEL;
        if !usable {
            self.stationary += 1;
            return self.current();
        }
        if self.ratios.len() == HISTORY {
            self.ratios.pop_front();
        }
        self.ratios.push_back(metres / network_travel);
        self.measured += 1;
        let estimate = self.current();
        match estimate.fallback {
            // Not enough ratios yet: still the network's units.
            Some(ScaleFallback::None) => estimate,
            _ => ScaleEstimate { fallback: None, ..estimate },
        }
    }

    /// The scale served for a frame without a new measurement: the median of the recent
    /// ratios (fallback `previous`), or none yet (scale 1, fallback `none`).
    pub fn current(&self) -> ScaleEstimate {
        let settled = self.ratios.len() >= MIN_RATIOS;
        let Some(scale) = median(self.ratios.iter().copied()).filter(|_| settled) else {
            return ScaleEstimate {
                scale: 1.0,
                confidence: 0.0,
                fallback: Some(ScaleFallback::None),
            };
        };
        // Confidence: how well the recent ratios agree (1 − relative median absolute deviation).
        let spread = median(self.ratios.iter().map(|r| (r - scale).abs())).unwrap_or(0.0);
        let confidence = (1.0 - spread / scale.max(f64::MIN_POSITIVE)).clamp(0.0, 1.0);
        ScaleEstimate { scale, confidence, fallback: Some(ScaleFallback::Previous) }
    }

    /// Pairs measured, and pairs skipped because the camera stood still.
    pub fn counts(&self) -> (u64, u64) {
        (self.measured, self.stationary)
    }
}

fn median(values: impl Iterator<Item = f64>) -> Option<f64> {
    let mut v: Vec<f64> = values.collect();
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    Some(v[v.len() / 2])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<SpeedTrack, SpeedFileError> {
        SpeedTrack::parse(Path::new("drive/speed.csv"), text)
    }

    #[test]
    fn csv_and_json_lines_integrate_to_the_same_odometer() {
        let csv = parse("time,speed\n0,0\n1,2\n# a comment\n\n3,2\n").unwrap();
        let json =
            parse("{\"time\":0,\"speed\":0}\n{\"time\":1,\"speed\":2}\n{\"time\":3,\"speed\":2}\n")
                .unwrap();
        assert_eq!(csv, json);
        // 0→1 s: accelerating 0→2 m/s, 1 m; 1→3 s: 2 m/s, 4 m.
        assert!((csv.odometer(1.0).unwrap() - 1.0).abs() < 1e-12);
        assert!((csv.odometer(3.0).unwrap() - 5.0).abs() < 1e-12);
        // Half-way through the ramp: speed 1 m/s, 0.25 m.
        assert!((csv.odometer(0.5).unwrap() - 0.25).abs() < 1e-12);
        assert_eq!(csv.odometer(3.5), None);
        assert_eq!(csv.span(), (0.0, 3.0));
    }

    #[test]
    fn bad_rows_name_the_file_and_the_line() {
        let cases = [
            ("time,speed\n0,1\n1,fast\n", ":3:", "speed `fast`"),
            ("0,1\n1,-2\n", ":2:", "not negative"),
            ("0,1\n0,1\n", ":2:", "not after"),
            ("0,1\n1,2,3\n", ":2:", "3 fields"),
            ("when,how\n0,1\n", ":1:", "expected `time,speed`"),
            ("0,1\n{\"time\":2}\n", ":2:", "field `speed`"),
            ("0,1\n2\n", ":2:", "no time"),
        ];
        for (text, line, what) in cases {
            let e = parse(text).unwrap_err().to_string();
            assert!(e.starts_with("drive/speed.csv"), "{e}");
            assert!(e.contains(line) && e.contains(what), "{text:?}: {e}");
        }
        assert!(parse("0,1\n").unwrap_err().to_string().contains("at least 2"));
    }

    #[test]
    fn a_growing_track_reads_like_the_whole_one_and_forgets_old_samples() {
        let rows = [(0.0, 0.0), (1.0, 2.0), (3.0, 2.0), (4.0, 1.0)];
        let whole = SpeedTrack::from_samples(&rows).unwrap();
        let mut growing = SpeedTrack::from_samples(&rows[..1]).unwrap();
        assert_eq!(growing.odometer(0.0), Some(0.0), "one sample: zero at its time");
        assert_eq!(growing.odometer_ahead(0.5, 1.0), Some(0.0), "standing at speed 0");
        for &(t, v) in &rows[1..] {
            growing.push(t, v, 60.0).unwrap();
        }
        assert_eq!(growing, whole);
        assert!(growing.push(4.0, 1.0, 60.0).unwrap_err().contains("not after"));
        // Up to a second past the last sample at its speed (1 m/s), then nothing.
        let end = whole.odometer(4.0).unwrap();
        assert!((growing.odometer_ahead(4.5, 1.0).unwrap() - (end + 0.5)).abs() < 1e-12);
        assert_eq!(growing.odometer_ahead(5.5, 1.0), None);
        assert_eq!(growing.odometer_ahead(-1.0, 1.0), None);
        // An hour at 10 Hz keeps about the last two minutes, and the odometer runs on.
        let mut long = SpeedTrack::from_samples(&[(0.0, 1.0)]).unwrap();
        for i in 1..36_000 {
            long.push(i as f64 * 0.1, 1.0, 60.0).unwrap();
        }
        assert!(long.samples.len() <= 1201, "{} samples kept", long.samples.len());
        assert!((long.odometer(3599.9).unwrap() - 3599.9).abs() < 1e-6);
        assert_eq!(long.odometer(100.0), None, "forgotten");
    }

    #[test]
    fn a_sample_is_json_csv_or_a_bare_speed() {
        assert_eq!(parse_sample("{\"time\": 1.5, \"speed\": 2}"), Ok((Some(1.5), 2.0)));
        assert_eq!(parse_sample("{\"speed\": 2, \"source\": \"can\"}"), Ok((None, 2.0)));
        assert_eq!(parse_sample(" 1.5, 2 "), Ok((Some(1.5), 2.0)));
        assert_eq!(parse_sample("2"), Ok((None, 2.0)));
        assert!(parse_sample("{\"time\": \"now\", \"speed\": 2}").unwrap_err().contains("`time`"));
        assert!(parse_sample("-1").unwrap_err().contains("not negative"));
        assert!(parse_sample("1,2,3").unwrap_err().contains("3 fields"));
        assert!(parse_sample("inf,2").unwrap_err().contains("finite"));
    }

    #[test]
    fn scale_is_metres_over_network_travel_and_holds_while_the_car_stops() {
        let mut s = SpeedScale::new();
        let first = s.update(0.0, 0.3);
        assert_eq!(first.fallback, Some(ScaleFallback::None), "standing still before any scale");
        assert_eq!(first.scale, 1.0);
        for _ in 1..MIN_RATIOS {
            let e = s.update(1.2, 0.1);
            assert_eq!(e.fallback, Some(ScaleFallback::None), "not settled yet");
            assert_eq!(e.scale, 1.0);
        }
        let e = s.update(1.2, 0.1);
        assert_eq!(e.fallback, None);
        assert!((e.scale - 12.0).abs() < 1e-9);
        assert!(e.confidence > 0.99);
        // The car stops: no distance, the scale of the moving frames is kept.
        let stopped = s.update(0.001, 0.05);
        assert_eq!(stopped.fallback, Some(ScaleFallback::Previous));
        assert!((stopped.scale - 12.0).abs() < 1e-9);
        assert_eq!(s.counts(), (MIN_RATIOS as u64, 2));
        // One wild ratio does not move the median.
        assert!((s.update(1.2, 0.01).scale - 12.0).abs() < 1e-9);
    }

    #[test]
    fn pose_odometer_sums_the_path() {
        let mut o = PoseOdometer::default();
        assert_eq!(o.update(&Isometry3::translation(0.0, 0.0, 0.0)), 0.0);
        assert_eq!(o.update(&Isometry3::translation(3.0, 4.0, 0.0)), 5.0);
        assert_eq!(o.update(&Isometry3::translation(3.0, 4.0, 1.0)), 6.0);
    }
}
