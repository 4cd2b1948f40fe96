//! The never-worse guard: decides, without ground truth, whether the live path is served the
//! adapted weights or the frozen start weights.
//!
//! Every new live triplet is scored before any step trains on it (so it is held out from the
//! weights being judged): the photometric loss of the adapted network and that of the frozen
//! start network, both with the same current pose estimate (the frozen depth brought to the
//! adapted depth's median scale, since monocular depth is known only up to scale). The guard
//! keeps the last `window` pairs and serves the adapted weights while their mean loss is at most
//! `1 + tolerance` times the frozen one's; when it is higher (adaptation makes the current scene
//! harder to explain), and before `min_samples` fresh triplets were scored, it serves the frozen
//! weights. A camera that walks into a scene where adaptation hurts therefore falls back to the
//! model it started with until the adapted weights explain the current scene as well again.
//!
//! The photometric loss is a weak judge of depth shape (the adapted and frozen losses usually
//! differ by about 1 %, see docs/adapt.md "Never worse"), so the tolerance is small and the guard
//! is a safety net against adaptation that clearly goes wrong, not a fine selector.

use serde::{Deserialize, Serialize};
use std::collections::VecDeque;

/// Which weights the live path (and the lock-step prediction) uses.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Served {
    /// The adapted student.
    Adapted,
    /// The frozen start weights.
    #[default]
    Frozen,
}

impl std::fmt::Display for Served {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Adapted => "adapted",
            Self::Frozen => "frozen",
        })
    }
}

/// The sliding-window comparison of adapted and frozen losses on fresh triplets.
#[derive(Clone, Debug)]
pub struct ServeGuard {
    window: VecDeque<(f64, f64)>,
    capacity: usize,
    min_samples: usize,
    tolerance: f64,
    serving: Served,
    switches: u64,
}

impl ServeGuard {
    /// A guard over the last `capacity` triplets that serves the adapted weights once at least
    /// `min_samples` were scored and while their mean loss is at most (1 + tolerance) × the
    /// frozen mean.
    pub fn new(capacity: usize, min_samples: usize, tolerance: f64) -> Self {
        let capacity = capacity.max(1);
        Self {
            window: VecDeque::with_capacity(capacity),
            capacity,
            min_samples: min_samples.clamp(1, capacity),
            tolerance,
            serving: Served::Frozen,
            switches: 0,
        }
    }

    /// Records one fresh triplet's losses (adapted, frozen) and returns what to serve now.
    /// A non-finite adapted loss counts as infinitely bad; a non-finite frozen loss is ignored.
    pub fn record(&mut self, adapted: f64, frozen: f64) -> Served {
        if frozen.is_finite() {
            let adapted = if adapted.is_finite() { adapted } else { f64::INFINITY };
            if self.window.len() == self.capacity {
                self.window.pop_front();
            }
            self.window.push_back((adapted, frozen));
        }
        let next = match self.ratio() {
            Some(r) if self.window.len() >= self.min_samples && r <= 1.0 + self.tolerance => {
                Served::Adapted
            }
            _ => Served::Frozen,
        };
        if next != self.serving {
            self.switches += 1;
            self.serving = next;
        }
        next
    }

    /// Mean adapted loss over mean frozen loss in the window (`None` while empty).
    pub fn ratio(&self) -> Option<f64> {
        if self.window.is_empty() {
            return None;
        }
        let (a, f) = self.window.iter().fold((0.0, 0.0), |(a, f), &(x, y)| (a + x, f + y));
        (f > 0.0).then(|| a / f)
    }

    pub fn serving(&self) -> Served {
        self.serving
    }

    /// How often the served weights changed.
    pub fn switches(&self) -> u64 {
        self.switches
    }

    /// Triplets in the window.
    pub fn len(&self) -> usize {
        self.window.len()
    }

    pub fn is_empty(&self) -> bool {
        self.window.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serves_frozen_once_the_adapted_loss_exceeds_the_tolerance() {
        let mut guard = ServeGuard::new(4, 2, 0.02);
        assert_eq!(guard.record(1.01, 1.0), Served::Frozen, "one sample is not enough");
        assert_eq!(guard.record(1.01, 1.0), Served::Adapted, "within the tolerance");
        assert_eq!(guard.switches(), 1);
        // Adaptation starts to hurt: the window mean crosses 1.02 and the guard falls back.
        for _ in 0..3 {
            guard.record(1.5, 1.0);
        }
        assert_eq!(guard.serving(), Served::Frozen);
        assert_eq!(guard.switches(), 2);
        assert!(guard.ratio().is_some_and(|r| r > 1.0));
    }

    #[test]
    fn a_loss_above_the_tolerance_keeps_the_frozen_weights() {
        let mut guard = ServeGuard::new(8, 1, 0.01);
        for _ in 0..10 {
            assert_eq!(guard.record(1.02, 1.0), Served::Frozen);
        }
        assert_eq!(guard.len(), 8, "the window is bounded");
    }

    #[test]
    fn non_finite_losses_never_serve_the_adapted_weights() {
        let mut guard = ServeGuard::new(4, 1, 0.0);
        assert_eq!(guard.record(f64::NAN, 1.0), Served::Frozen);
        assert_eq!(guard.record(0.1, f64::INFINITY), Served::Frozen, "ignored frozen sample");
        assert_eq!(guard.len(), 1);
    }
}
