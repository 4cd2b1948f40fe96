//! The adapter's guaranteed share of the CPU. The adaptation thread runs at the lowest priority
//! ([`super::priority`]), so while the live path keeps every core busy (an unpaced replay, a
//! camera faster than the forward pass, several devices on one machine) it may get no CPU at
//! all and adaptation silently stops. [`AdapterPulse`] is what the adapter tells the live path:
//! whether it wants the CPU and when it last got something done (built, stepped).
//! [`StarvationGuard`] is the live side: once the adapter has wanted the CPU for
//! [`STARVING_AFTER`] without getting anything done, the depth stage yields after each forward
//! pass, for as long as the pass took times `share / (1 − share)`, until the adapter gets
//! something done again. `share` is the adapter's share during such a spell only; a spell ends
//! at the next step, and the next may start [`STARVING_AFTER`] later. An adapter that steps at
//! least that often is never yielded to; one step that takes longer for another reason (the
//! first CUDA step compiling its kernels) is yielded to until it ends.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// How long the adapter may want the CPU without getting anything done before the live path
/// yields to it.
pub const STARVING_AFTER: Duration = Duration::from_secs(10);

/// The default `--adapt-min-share`: while starving, the adapter gets about half the time.
pub const DEFAULT_MIN_SHARE: f64 = 0.5;

/// The largest share accepted: at 1 the live path would stop.
pub const MAX_MIN_SHARE: f64 = 0.9;

/// What the adaptation thread tells the live path (cheap to clone; one per run).
#[derive(Clone, Debug)]
pub struct AdapterPulse {
    state: Arc<PulseState>,
}

#[derive(Debug)]
struct PulseState {
    epoch: Instant,
    wants_cpu: AtomicBool,
    /// Milliseconds after `epoch` of the last thing the adapter got done.
    last_progress_ms: AtomicU64,
}

impl Default for AdapterPulse {
    fn default() -> Self {
        Self::new()
    }
}

impl AdapterPulse {
    /// An adapter that is starting: it wants the CPU (to build its networks), from now.
    pub fn new() -> Self {
        Self {
            state: Arc::new(PulseState {
                epoch: Instant::now(),
                wants_cpu: AtomicBool::new(true),
                last_progress_ms: AtomicU64::new(0),
            }),
        }
    }

    fn millis(&self, at: Instant) -> u64 {
        at.saturating_duration_since(self.state.epoch).as_millis() as u64
    }

    /// The adapter got something done (built its networks, took a step) and goes on.
    pub fn progressed(&self) {
        self.state.last_progress_ms.store(self.millis(Instant::now()), Ordering::Release);
        self.state.wants_cpu.store(true, Ordering::Release);
    }

    /// The adapter waits for frames, or has ended: it does not want the CPU, so it cannot
    /// starve.
    pub fn waiting(&self) {
        self.state.wants_cpu.store(false, Ordering::Release);
    }

    /// The adapter has frames again: its wait for the CPU starts now. (The adapter thread is
    /// the pulse's only writer: the time is written before the flag, so a reader never pairs
    /// "wants the CPU" with an older time.)
    pub fn working(&self) {
        if !self.state.wants_cpu.load(Ordering::Acquire) {
            self.state.last_progress_ms.store(self.millis(Instant::now()), Ordering::Release);
            self.state.wants_cpu.store(true, Ordering::Release);
        }
    }

    /// A guard that tells the pulse the adapter ended when it is dropped, also when the
    /// adapter thread unwinds from a panic: the live path then never yields to it again.
    pub fn ended_on_drop(&self) -> PulseEndsOnDrop {
        PulseEndsOnDrop(self.clone())
    }

    /// How long the adapter has wanted the CPU without getting anything done, at `now`; zero
    /// while it waits for frames.
    pub fn starved_for(&self, now: Instant) -> Duration {
        if !self.state.wants_cpu.load(Ordering::Acquire) {
            return Duration::ZERO;
        }
        let last = self.state.last_progress_ms.load(Ordering::Acquire);
        Duration::from_millis(self.millis(now).saturating_sub(last))
    }
}

/// See [`AdapterPulse::ended_on_drop`].
pub struct PulseEndsOnDrop(AdapterPulse);

impl Drop for PulseEndsOnDrop {
    fn drop(&mut self) {
        self.0.waiting();
    }
}

/// The live side of the pulse: how long the depth stage yields after a forward pass.
#[derive(Clone, Debug)]
pub struct StarvationGuard {
    pulse: AdapterPulse,
    /// The share of the time the adapter gets while starving, in [0, [`MAX_MIN_SHARE`]].
    share: f64,
    starving_after: Duration,
    /// Time yielded so far, and in how many starving spells.
    pub yielded: Duration,
    pub spells: u64,
    in_spell: bool,
}

impl StarvationGuard {
    /// A guard giving the adapter behind `pulse` `share` of the time while it starves
    /// (0: never yield); an error names `--adapt-min-share` when `share` is out of range.
    pub fn new(pulse: AdapterPulse, share: f64) -> crate::Result<Self> {
        check_min_share(share)?;
        Ok(Self {
            pulse,
            share,
            starving_after: STARVING_AFTER,
            yielded: Duration::ZERO,
            spells: 0,
            in_spell: false,
        })
    }

    /// The same guard with another starvation threshold (tests).
    pub fn with_starving_after(mut self, after: Duration) -> Self {
        self.starving_after = after;
        self
    }

    /// How long to yield after a forward pass that took `forward`, at `now`; counts the time
    /// and the spells.
    pub fn yield_after(&mut self, forward: Duration, now: Instant) -> Duration {
        let starved = self.pulse.starved_for(now);
        if self.share <= 0.0 || starved < self.starving_after {
            self.in_spell = false;
            return Duration::ZERO;
        }
        if !self.in_spell {
            self.in_spell = true;
            self.spells += 1;
            tracing::info!(
                "adapt: nothing done for {:.0} s while the live path kept the CPU; the depth \
                 stage now yields {:.0}% of its time until the adapter steps \
                 (--adapt-min-share {})",
                starved.as_secs_f64(),
                100.0 * self.share,
                self.share
            );
        }
        let pause = forward.mul_f64(self.share / (1.0 - self.share));
        self.yielded += pause;
        pause
    }
}

/// `--adapt-min-share` must lie in [0, [`MAX_MIN_SHARE`]].
pub fn check_min_share(share: f64) -> crate::Result<()> {
    match (0.0..=MAX_MIN_SHARE).contains(&share) {
        true => Ok(()),
        false => Err(crate::Error::Other(format!(
            "--adapt-min-share: expected a share of the time between 0 (never yield to a \
             starving adapter) and {MAX_MIN_SHARE}, got {share}"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::{AdapterPulse, StarvationGuard, check_min_share};
    use std::time::{Duration, Instant};

    const FORWARD: Duration = Duration::from_millis(40);

    #[test]
    fn a_starving_adapter_gets_its_share_until_it_steps() {
        let pulse = AdapterPulse::new();
        let mut guard = StarvationGuard::new(pulse.clone(), 0.5)
            .unwrap()
            .with_starving_after(Duration::from_secs(5));
        let start = Instant::now();
        // Building for 2 s: not starving yet.
        assert_eq!(guard.yield_after(FORWARD, start + Duration::from_secs(2)), Duration::ZERO);
        // 6 s without progress: the live path yields as long as its forward took (share 0.5).
        assert_eq!(guard.yield_after(FORWARD, start + Duration::from_secs(6)), FORWARD);
        assert_eq!(guard.yield_after(FORWARD, start + Duration::from_secs(7)), FORWARD);
        assert_eq!((guard.spells, guard.yielded), (1, 2 * FORWARD));
        // It stepped: no more yielding.
        pulse.progressed();
        assert_eq!(guard.yield_after(FORWARD, Instant::now()), Duration::ZERO);
        // A second spell is counted apart.
        let later = Instant::now() + Duration::from_secs(6);
        assert_eq!(guard.yield_after(FORWARD, later), FORWARD);
        assert_eq!(guard.spells, 2);
    }

    #[test]
    fn an_adapter_waiting_for_frames_never_starves() {
        let pulse = AdapterPulse::new();
        let mut guard = StarvationGuard::new(pulse.clone(), 0.5).unwrap();
        pulse.waiting();
        let much_later = Instant::now() + Duration::from_secs(60);
        assert_eq!(pulse.starved_for(much_later), Duration::ZERO);
        assert_eq!(guard.yield_after(FORWARD, much_later), Duration::ZERO);
        // Frames again: its wait starts now, not when it last stepped.
        pulse.working();
        assert!(
            pulse.starved_for(Instant::now() + Duration::from_secs(1)) < Duration::from_secs(2)
        );
    }

    #[test]
    fn an_adapter_that_ended_or_panicked_is_never_yielded_to() {
        let pulse = AdapterPulse::new();
        let mut guard = StarvationGuard::new(pulse.clone(), 0.5).unwrap();
        let ended = pulse.clone();
        let panicked = std::thread::spawn(move || {
            let _ended = ended.ended_on_drop();
            panic!("a libtorch error");
        })
        .join();
        assert!(panicked.is_err());
        let much_later = Instant::now() + Duration::from_secs(60);
        assert_eq!(guard.yield_after(FORWARD, much_later), Duration::ZERO);
    }

    #[test]
    fn the_share_sets_the_pause_and_zero_never_yields() {
        let later = Instant::now() + Duration::from_secs(20);
        let mut quarter = StarvationGuard::new(AdapterPulse::new(), 0.25).unwrap();
        assert_eq!(
            quarter.yield_after(Duration::from_millis(30), later),
            Duration::from_millis(10)
        );
        let mut never = StarvationGuard::new(AdapterPulse::new(), 0.0).unwrap();
        assert_eq!(never.yield_after(FORWARD, later), Duration::ZERO);
        for bad in [-0.1, 0.95, f64::NAN] {
            let e = check_min_share(bad).unwrap_err().to_string();
            assert!(e.contains("--adapt-min-share") && e.contains("between 0"), "{e}");
        }
    }
}
