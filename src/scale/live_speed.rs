//! Live speed from a Zenoh key (`run --adapt --metric-scale speed --speed-key KEY`): the vehicle
//! publishes its speed (wheel odometry, GPS, an IMU filter) and the live run integrates it into
//! the odometer that `--speed-file` gives in replay.
//!
//! A message is one sample, in any of the sidecar's forms: JSON `{"time": s, "speed": m/s}`,
//! CSV `time,speed`, or without a time (`{"speed": m/s}`, or a bare number). The first valid
//! message fixes the clock for the run:
//! - with `time` ([`SpeedClock::Stream`]): seconds on the frames' clock (the stream's
//!   timestamps); frames are read at their own timestamps, so a late message costs nothing;
//! - without ([`SpeedClock::Arrival`]): the sample is timed when it arrives, and a frame is read
//!   when it is offered to the adapter. A constant delay between capture and that moment shifts
//!   both ends of a pair alike and cancels in the distance between two frames.
//!
//! A frame after the newest sample is read at that sample's speed for up to
//! [`MAX_EXTRAPOLATION_S`]; after that (the publisher stopped) or before the first sample the
//! frame has no reading, and the adapter trains on it without velocity supervision. Every such
//! frame is counted, and a warning every [`WARNING_EVERY`] says why and what to do.
//!
//! Samples arrive on Zenoh's own threads ([`LiveSpeed::subscribe`] declares a callback
//! subscriber); the live path reads under a mutex held for a binary search, never waiting on
//! the network.

use super::speed::{SpeedTrack, parse_sample};
use crate::frame::Frame;
use crate::sink::zenoh_live::check_input_key;
use serde::Serialize;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use zenoh::Wait;

/// How far past the newest speed sample a frame is read at that sample's speed (seconds).
pub const MAX_EXTRAPOLATION_S: f64 = 1.0;
/// Samples this much older than the newest are forgotten (seconds).
const KEEP_S: f64 = 60.0;
/// How long `run` waits at start for the first speed sample.
pub const FIRST_SAMPLE_WAIT: Duration = Duration::from_secs(5);
/// How often a run without speed for its frames says so.
pub const WARNING_EVERY: Duration = Duration::from_secs(5);

/// What a message's time is measured on (fixed by the first valid message).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SpeedClock {
    /// The message's `time`, on the frames' clock.
    Stream,
    /// When the message arrived.
    Arrival,
}

/// The speed input's figures for `run_report.json` (`speed_input`).
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct LiveSpeedReport {
    /// The Zenoh key subscribed to.
    pub key: String,
    /// Fixed by the first valid message; None when none came.
    pub clock: Option<SpeedClock>,
    /// Messages received, and those refused (not a sample, time not after the previous one,
    /// or a clock other than the first message's).
    pub received: u64,
    pub refused: u64,
    /// The latest refusal: the key and what was expected.
    pub last_refusal: Option<String>,
    /// Frames read within the samples, past the newest sample (extrapolated), and without a
    /// reading.
    pub frames_read: u64,
    pub frames_extrapolated: u64,
    pub frames_without: u64,
    /// The newest sample's speed (m/s).
    pub last_speed: Option<f64>,
}

struct State {
    track: Option<SpeedTrack>,
    report: LiveSpeedReport,
}

/// A live run's odometer from a Zenoh key (see the module docs).
pub struct LiveSpeed {
    state: Arc<Mutex<State>>,
    /// Zero of the arrival clock.
    epoch: Instant,
    warned: Option<Instant>,
    _subscriber: zenoh::pubsub::Subscriber<()>,
}

impl std::fmt::Debug for LiveSpeed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LiveSpeed").field("report", &self.stats().report()).finish()
    }
}

/// The figures of a [`LiveSpeed`], readable after the live path has dropped it.
#[derive(Clone)]
pub struct LiveSpeedStats(Arc<Mutex<State>>);

impl LiveSpeedStats {
    pub fn report(&self) -> LiveSpeedReport {
        lock(&self.0).report.clone()
    }
}

fn lock(state: &Mutex<State>) -> MutexGuard<'_, State> {
    // A panic while holding it cannot leave the track half-written: every write is one push.
    state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl LiveSpeed {
    /// Subscribes to `key` on `session`; samples are taken in from now on.
    pub fn subscribe(session: &zenoh::Session, key: &str) -> Result<Self, String> {
        check_input_key(key).map_err(|e| format!("--speed-key {e}"))?;
        let state = Arc::new(Mutex::new(State {
            track: None,
            report: LiveSpeedReport { key: key.to_owned(), ..LiveSpeedReport::default() },
        }));
        let epoch = Instant::now();
        let sink = Arc::clone(&state);
        let subscriber = session
            .declare_subscriber(key.to_owned())
            .callback(move |sample| {
                let payload = sample.payload();
                let text = payload.try_to_string().map_err(|_| "not UTF-8 text".to_owned());
                let arrived = epoch.elapsed().as_secs_f64();
                take_sample(&mut lock(&sink), text.and_then(|t| parse_sample(&t)), arrived);
            })
            .wait()
            .map_err(|e| format!("--speed-key {key}: cannot subscribe: {e}"))?;
        Ok(Self { state, epoch, warned: None, _subscriber: subscriber })
    }

    /// [`LiveSpeed::subscribe`], then up to [`FIRST_SAMPLE_WAIT`] for the first sample, so
    /// that the first frames already have metres; says on the console what it waits for and
    /// what came.
    pub fn subscribe_at_start(session: &zenoh::Session, key: &str) -> Result<Self, String> {
        let live = Self::subscribe(session, key)?;
        tracing::info!(
            "speed: subscribed to {key}; waiting up to {} s for the first sample",
            FIRST_SAMPLE_WAIT.as_secs()
        );
        if live.wait_for_first(FIRST_SAMPLE_WAIT) {
            let report = live.stats().report();
            let clock = match report.clock {
                Some(SpeedClock::Arrival) => "timed on arrival",
                _ => "timed by each message's `time` on the stream's clock",
            };
            tracing::info!("speed: receiving on {key} ({clock})");
        } else {
            tracing::warn!(
                "speed: nothing usable on {key} after {} s ({} messages); depth goes on in the \
                 network's units until speed arrives",
                FIRST_SAMPLE_WAIT.as_secs(),
                live.stats().report().received
            );
        }
        Ok(live)
    }

    /// Waits up to `timeout` for the first valid sample; true when one came.
    pub fn wait_for_first(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            if lock(&self.state).track.is_some() {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// A handle on the figures.
    pub fn stats(&self) -> LiveSpeedStats {
        LiveSpeedStats(Arc::clone(&self.state))
    }

    /// Metres travelled at `frame` since the first sample, or None when the samples do not
    /// cover it (see the module docs). Frames must come in order.
    pub fn reading(&mut self, frame: &Frame) -> Option<f64> {
        let mut state = lock(&self.state);
        let time = match state.report.clock {
            Some(SpeedClock::Stream) => frame.timestamp,
            Some(SpeedClock::Arrival) => self.epoch.elapsed().as_secs_f64(),
            None => f64::NAN,
        };
        let track = state.track.as_ref();
        let reading = track.and_then(|t| t.odometer_ahead(time, MAX_EXTRAPOLATION_S));
        let span = track.map(SpeedTrack::span);
        match (reading, span) {
            (Some(_), Some((_, last))) if time > last => state.report.frames_extrapolated += 1,
            (Some(_), _) => state.report.frames_read += 1,
            (None, _) => {
                state.report.frames_without += 1;
                if self.warned.is_none_or(|t| t.elapsed() >= WARNING_EVERY) {
                    self.warned = Some(Instant::now());
                    tracing::warn!("{}", why_no_reading(&state.report, span, frame, time));
                }
            }
        }
        reading
    }
}

/// One message into the track: a sample, or a refusal recorded with its reason.
fn take_sample(state: &mut State, parsed: Result<(Option<f64>, f64), String>, arrived: f64) {
    state.report.received += 1;
    let taken = parsed.and_then(|(time, speed)| {
        let clock = if time.is_some() { SpeedClock::Stream } else { SpeedClock::Arrival };
        let first = *state.report.clock.get_or_insert(clock);
        if first != clock {
            return Err(match first {
                SpeedClock::Stream => "no `time`: expected one, like the first message's".into(),
                SpeedClock::Arrival => {
                    "a `time`: expected none, like the first message (timed on arrival)".into()
                }
            });
        }
        let time = time.unwrap_or(arrived);
        state.track.get_or_insert_with(SpeedTrack::default).push(time, speed, KEEP_S)?;
        state.report.last_speed = Some(speed);
        Ok(())
    });
    if let Err(reason) = taken {
        state.report.refused += 1;
        let refusal = format!("--speed-key {}: message refused: {reason}", state.report.key);
        // The first refusal and then every hundredth are shown; all are counted.
        if state.report.refused % 100 == 1 {
            tracing::warn!("{refusal} ({} refused so far)", state.report.refused);
        }
        state.report.last_refusal = Some(refusal);
    }
}

/// Why `frame` has no reading, and what to do.
fn why_no_reading(
    report: &LiveSpeedReport,
    span: Option<(f64, f64)>,
    frame: &Frame,
    time: f64,
) -> String {
    let key = &report.key;
    let head = format!("--speed-key {key}: no speed for frame {}", frame.index);
    match (report.clock, span) {
        (None, _) | (_, None) => format!(
            "{head}: no valid speed message yet ({} received): publish JSON {{\"time\": s, \
             \"speed\": m/s}} (or {{\"speed\": m/s}}) on {key}; the frame adapts without \
             velocity supervision and the scale holds",
            report.received
        ),
        (Some(SpeedClock::Stream), Some((first, last))) => format!(
            "{head} at {time:.3} s: the speeds cover {first:.3}–{last:.3} s (read up to \
             {MAX_EXTRAPOLATION_S} s past the newest); expected each message's `time` on the \
             stream's clock (the frames' timestamps), or send {{\"speed\": m/s}} alone to time \
             them on arrival"
        ),
        (Some(SpeedClock::Arrival), Some((_, last))) => format!(
            "{head}: the newest speed arrived {:.1} s ago (read up to {MAX_EXTRAPOLATION_S} s \
             past it): is the vehicle still publishing on {key}?",
            time - last
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state() -> State {
        State {
            track: None,
            report: LiveSpeedReport { key: "car/speed".into(), ..LiveSpeedReport::default() },
        }
    }

    #[test]
    fn the_first_message_fixes_the_clock_and_others_are_refused_saying_why() {
        let mut s = state();
        take_sample(&mut s, parse_sample("{\"time\": 1.0, \"speed\": 2.0}"), 50.0);
        take_sample(&mut s, parse_sample("2.0,2.0"), 50.1);
        take_sample(&mut s, parse_sample("{\"speed\": 2.0}"), 50.2);
        take_sample(&mut s, parse_sample("1.5,2.0"), 50.3);
        take_sample(&mut s, parse_sample("fast"), 50.4);
        let report = &s.report;
        assert_eq!(report.clock, Some(SpeedClock::Stream));
        assert_eq!((report.received, report.refused), (5, 3));
        let last = report.last_refusal.as_deref().unwrap();
        assert!(last.contains("car/speed") && last.contains("speed `fast`"), "{last}");
        let track = s.track.as_ref().unwrap();
        assert_eq!(track.span(), (1.0, 2.0));
        assert!((track.odometer(2.0).unwrap() - 2.0).abs() < 1e-12);

        let mut s = state();
        take_sample(&mut s, parse_sample("3.5"), 10.0);
        take_sample(&mut s, parse_sample("{\"time\": 11, \"speed\": 3.5}"), 10.5);
        assert_eq!(s.report.clock, Some(SpeedClock::Arrival));
        assert!(s.report.last_refusal.as_deref().unwrap().contains("expected none"));
        assert_eq!(s.track.as_ref().unwrap().span(), (10.0, 10.0));
    }
}
