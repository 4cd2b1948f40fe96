//! The camera's orientation from a Zenoh key (`run --adapt --gyro zenoh:KEY`): the vehicle's
//! attitude estimator (the gyro integrated, rotated into the camera's axes) publishes on a key,
//! and each frame offered to the adapter is read at its own timestamp, as `--gyro FILE` reads a
//! recorded track ([`crate::app::gyro`]).
//!
//! A message is one sample: JSON `{"time": s, "qw": …, "qx": …, "qy": …, "qz": …}` or the CSV
//! row `time,qw,qx,qy,qz`, the camera-to-world orientation at `time` seconds on the frames'
//! clock. A time is required: a turn of 30°/s misplaced by 20 ms of transport is already 0.6°,
//! the size of the error the prior removes. Samples must come in time order.
//!
//! A frame the samples do not cover yet (the estimator lags the camera) or any more (the
//! publisher stopped) gets no orientation: its triplets refine from the pose network's
//! rotations, as without a gyro. Every such frame is counted, and a warning every
//! [`WARNING_EVERY`] says why and what to do. Samples arrive on Zenoh's own threads; the live
//! path reads under a mutex held for a binary search, never waiting on the network.

use super::gyro::{COLUMNS, interpolate, parse_row, sample_from};
use crate::frame::Frame;
use nalgebra::UnitQuaternion;
use serde::Serialize;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use zenoh::Wait;

/// Samples this much older than the newest are forgotten (seconds).
const KEEP_S: f64 = 10.0;
/// How long `run` waits at start for the first sample.
pub const FIRST_SAMPLE_WAIT: Duration = Duration::from_secs(5);
/// How often a run whose frames have no orientation says so.
pub const WARNING_EVERY: Duration = Duration::from_secs(5);

/// The gyro input's figures for `run_report.json` (`gyro_input`).
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct LiveGyroReport {
    /// The Zenoh key subscribed to.
    pub key: String,
    /// Messages received, and those refused (not a sample, or a time not after the previous).
    pub received: u64,
    pub refused: u64,
    /// The latest refusal: the key and what was expected.
    pub last_refusal: Option<String>,
    /// Frames read between two samples, and frames the samples did not cover.
    pub frames_read: u64,
    pub frames_without: u64,
}

struct State {
    /// (time s, orientation), time strictly increasing, the last [`KEEP_S`] seconds.
    samples: Vec<(f64, UnitQuaternion<f64>)>,
    report: LiveGyroReport,
}

fn lock(state: &Mutex<State>) -> MutexGuard<'_, State> {
    // A panic while holding it cannot leave the track half-written: every write is one push.
    state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A live run's orientations from a Zenoh key (see the module docs).
pub struct LiveOrientations {
    state: Arc<Mutex<State>>,
    warned: Option<Instant>,
    _subscriber: zenoh::pubsub::Subscriber<()>,
}

impl std::fmt::Debug for LiveOrientations {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LiveOrientations").field("report", &self.stats().report()).finish()
    }
}

/// The figures of a [`LiveOrientations`], readable after the live path has dropped it.
#[derive(Clone)]
pub struct LiveGyroStats(Arc<Mutex<State>>);

impl LiveGyroStats {
    pub fn report(&self) -> LiveGyroReport {
        lock(&self.0).report.clone()
    }
}

impl LiveOrientations {
    /// Subscribes to `key` on `session`, then waits up to [`FIRST_SAMPLE_WAIT`] for the first
    /// sample, saying on the console what it waits for and what came.
    pub fn subscribe_at_start(session: &zenoh::Session, key: &str) -> Result<Self, String> {
        crate::sink::zenoh_live::check_input_key(key).map_err(|e| format!("--gyro zenoh:{e}"))?;
        let state = Arc::new(Mutex::new(State {
            samples: Vec::new(),
            report: LiveGyroReport { key: key.to_owned(), ..LiveGyroReport::default() },
        }));
        let sink = Arc::clone(&state);
        let subscriber = session
            .declare_subscriber(key.to_owned())
            .callback(move |sample| {
                let payload = sample.payload();
                let text = payload.try_to_string().map_err(|_| "not UTF-8 text".to_owned());
                take_sample(&mut lock(&sink), text.and_then(|t| parse_message(&t)));
            })
            .wait()
            .map_err(|e| format!("--gyro zenoh:{key}: cannot subscribe: {e}"))?;
        let live = Self { state, warned: None, _subscriber: subscriber };
        let wait = FIRST_SAMPLE_WAIT.as_secs();
        tracing::info!("gyro: subscribed to {key}; waiting up to {wait} s for the first sample");
        let deadline = Instant::now() + FIRST_SAMPLE_WAIT;
        while lock(&live.state).samples.is_empty() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        let report = live.stats().report();
        if lock(&live.state).samples.is_empty() {
            tracing::warn!(
                "gyro: nothing usable on {key} after {wait} s ({} messages); pose refinement \
                 starts from the pose network until orientations arrive",
                report.received
            );
        } else {
            tracing::info!("gyro: receiving on {key}");
        }
        Ok(live)
    }

    /// A handle on the figures.
    pub fn stats(&self) -> LiveGyroStats {
        LiveGyroStats(Arc::clone(&self.state))
    }

    /// The camera's orientation at `frame`'s timestamp, or None where the samples do not
    /// cover it (counted, and warned about with what to do).
    pub fn at(&mut self, frame: &Frame) -> Option<UnitQuaternion<f64>> {
        let mut state = lock(&self.state);
        let orientation = interpolate(&state.samples, frame.timestamp);
        if orientation.is_some() {
            state.report.frames_read += 1;
            return orientation;
        }
        state.report.frames_without += 1;
        if self.warned.is_none_or(|t| t.elapsed() >= WARNING_EVERY) {
            self.warned = Some(Instant::now());
            let (key, t) = (&state.report.key, frame.timestamp);
            let head =
                format!("--gyro zenoh:{key}: no orientation for frame {} at {t:.3} s", frame.index);
            let why = match (state.samples.first(), state.samples.last()) {
                (Some(&(first, _)), Some(&(last, _))) => format!(
                    "the samples cover {first:.3}–{last:.3} s; expected each message's `time` on \
                     the frames' clock, published as the estimator runs"
                ),
                _ => format!(
                    "no valid message yet ({} received): publish JSON {{\"time\": s, \"qw\": …, \
                     \"qx\": …, \"qy\": …, \"qz\": …}} on {key}",
                    state.report.received
                ),
            };
            tracing::warn!("{head}: {why}; the frame refines from the pose network's rotation");
        }
        None
    }
}

/// Where a live run reads each frame's orientation (`run --adapt --gyro`).
#[derive(Debug)]
pub enum OrientationInput {
    /// A recorded track or the dataset's poses: a frame they do not cover stops the run.
    Recorded(super::gyro::Orientations),
    /// A Zenoh key: a frame it does not cover has no orientation.
    Live(LiveOrientations),
}

impl OrientationInput {
    /// The camera's orientation at `frame`, if known.
    pub fn read(&mut self, frame: &Frame) -> Result<Option<UnitQuaternion<f64>>, String> {
        match self {
            Self::Recorded(track) => {
                track.at(frame, "the source").map(Some).map_err(|e| e.to_string())
            }
            Self::Live(live) => Ok(live.at(frame)),
        }
    }
}

/// One message: JSON with the five fields, or a CSV row.
fn parse_message(text: &str) -> Result<(f64, UnitQuaternion<f64>), String> {
    let text = text.trim();
    if !text.starts_with('{') {
        return parse_row(text);
    }
    let json: serde_json::Value =
        serde_json::from_str(text).map_err(|e| format!("not a JSON object: {e}"))?;
    let mut values = [0f64; 5];
    for (value, name) in values.iter_mut().zip(COLUMNS) {
        let number = json.get(name).and_then(serde_json::Value::as_f64);
        *value = number.ok_or_else(|| format!("expected a number in field `{name}`"))?;
    }
    sample_from(values)
}

/// One message into the track: a sample, or a refusal recorded with its reason.
fn take_sample(state: &mut State, parsed: Result<(f64, UnitQuaternion<f64>), String>) {
    state.report.received += 1;
    let taken = parsed.and_then(|(time, orientation)| {
        if let Some(&(last, _)) = state.samples.last()
            && time <= last
        {
            return Err(format!("time {time} after {last}: expected increasing times"));
        }
        state.samples.push((time, orientation));
        let stale = state.samples.partition_point(|&(t, _)| t < time - KEEP_S);
        state.samples.drain(..stale);
        Ok(())
    });
    if let Err(reason) = taken {
        state.report.refused += 1;
        let refusal = format!("--gyro zenoh:{}: message refused: {reason}", state.report.key);
        // The first refusal and then every hundredth are shown; all are counted.
        if state.report.refused % 100 == 1 {
            tracing::warn!("{refusal} ({} refused so far)", state.report.refused);
        }
        state.report.last_refusal = Some(refusal);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_read_between_samples_and_bad_ones_refused_saying_why() {
        let mut state = State {
            samples: Vec::new(),
            report: LiveGyroReport { key: "car/attitude".into(), ..LiveGyroReport::default() },
        };
        let turned = UnitQuaternion::from_scaled_axis(nalgebra::Vector3::new(0.0, 0.2, 0.0));
        let (w, x, y, z) = (turned.w, turned.i, turned.j, turned.k);
        take_sample(
            &mut state,
            parse_message("{\"time\": 1.0, \"qw\": 1, \"qx\": 0, \"qy\": 0, \"qz\": 0}"),
        );
        take_sample(&mut state, parse_message(&format!("2.0,{w},{x},{y},{z}")));
        take_sample(&mut state, parse_message("1.5,1,0,0,0"));
        take_sample(&mut state, parse_message("{\"time\": 3.0, \"qw\": 1}"));
        take_sample(&mut state, parse_message("3.0,2,0,0,0"));
        assert_eq!((state.report.received, state.report.refused), (5, 3));
        let last = state.report.last_refusal.as_deref().unwrap();
        assert!(last.contains("car/attitude") && last.contains("unit quaternion"), "{last}");
        let middle = interpolate(&state.samples, 1.5).expect("covered");
        assert!((middle.angle() - 0.1).abs() < 1e-9, "{}", middle.angle());
        assert!(interpolate(&state.samples, 2.5).is_none());
        let refusal = parse_message("{\"time\": 3.0, \"qw\": 1}").unwrap_err();
        assert!(refusal.contains("field `qx`"), "{refusal}");
    }

    #[test]
    fn samples_older_than_the_window_are_forgotten() {
        let mut state = State { samples: Vec::new(), report: LiveGyroReport::default() };
        for i in 0..30 {
            take_sample(&mut state, Ok((f64::from(i), UnitQuaternion::identity())));
        }
        assert_eq!(state.samples.first().map(|s| s.0), Some(29.0 - KEEP_S));
        assert_eq!(state.report.refused, 0);
    }
}
