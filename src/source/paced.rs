//! Playback of a recording at a set frame rate (`[source] fps` on a recorded source): frames
//! are handed on one period apart, as a camera would deliver them, so that what runs beside
//! the live path (the adapter, the telemetry) sees a recording as it would see the camera.
//!
//! The schedule never bunches frames up: a frame that comes late (a slow decode, a busy core)
//! goes at once, and the next one is due a full period after it.

use super::{Frame, Source, SourceError};
use std::time::{Duration, Instant};

/// A recorded source replayed at `fps` (see the module docs).
pub struct Paced {
    inner: Box<dyn Source>,
    clock: PlaybackClock,
}

impl Paced {
    /// Paces `inner` at `fps` frames per second (finite and positive; `source.fps` is
    /// validated).
    pub fn new(inner: Box<dyn Source>, fps: f64) -> Self {
        Self { inner, clock: PlaybackClock::new(Duration::from_secs_f64(1.0 / fps)) }
    }
}

impl Source for Paced {
    fn next_frame(&mut self) -> Result<Option<Frame>, SourceError> {
        let frame = self.inner.next_frame()?;
        if frame.is_some() {
            let wait = self.clock.wait_before_next(Instant::now());
            if !wait.is_zero() {
                std::thread::sleep(wait);
            }
        }
        Ok(frame)
    }

    fn len_hint(&self) -> Option<usize> {
        self.inner.len_hint()
    }

    fn is_live(&self) -> bool {
        self.inner.is_live()
    }

    fn describe(&self) -> String {
        let fps = 1.0 / self.clock.period.as_secs_f64();
        format!("{} (played at {fps:.1} fps)", self.inner.describe())
    }

    fn reconnects(&self) -> u64 {
        self.inner.reconnects()
    }
}

/// When each frame is due: one period after the previous one went, or at once when late.
#[derive(Clone, Copy, Debug)]
pub struct PlaybackClock {
    period: Duration,
    next_due: Option<Instant>,
}

impl PlaybackClock {
    pub fn new(period: Duration) -> Self {
        Self { period, next_due: None }
    }

    /// How long to wait at `now` before handing on the next frame (the first goes at once).
    pub fn wait_before_next(&mut self, now: Instant) -> Duration {
        let due = self.next_due.map_or(now, |due| due.max(now));
        self.next_due = Some(due + self.period);
        due - now
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_go_one_period_apart_and_a_late_one_goes_at_once_without_a_burst_after() {
        let period = Duration::from_millis(100);
        let mut clock = PlaybackClock::new(period);
        let start = Instant::now();
        let at = |ms: u64| start + Duration::from_millis(ms);
        assert_eq!(clock.wait_before_next(at(0)), Duration::ZERO);
        // Decoded 30 ms after the first went: waits the rest of the period.
        assert_eq!(clock.wait_before_next(at(30)), Duration::from_millis(70));
        // The next one was decoded 250 ms late: it goes at once...
        assert_eq!(clock.wait_before_next(at(450)), Duration::ZERO);
        // ...and the one after is a full period after it, not at once to catch up.
        assert_eq!(clock.wait_before_next(at(460)), Duration::from_millis(90));
    }
}
