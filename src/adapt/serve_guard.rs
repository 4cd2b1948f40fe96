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
//! The photometric loss alone is a weak judge of depth shape: a network adapted with a
//! destructive learning rate can explain the images as well as the frozen one (each depth map
//! gets its own refined motion) while its depth is three times worse. So the guard also keeps a
//! trust region: while the scale-invariant log-depth deviation of the adapted from the frozen
//! depth on the fresh triplets (σ of log D_adapted − log D_frozen over the target's pixels,
//! averaged over the window) is within `trust_deviation`, the adapted weights need only be no
//! worse than `1 + tolerance`; beyond it they must show evidence, a loss at most
//! `1 − evidence_margin` times the frozen one's. Adaptation that helps moved at most 0.49 from
//! the frozen depth on the tuning frames (often without photometric evidence beyond 0.3, where
//! the images are explained equally well); adaptation that went wrong moves further without
//! that evidence (a destructive learning rate: deviation 0.62–0.70, loss ratio 1.00–1.04). The
//! default radius, 0.5, lies between. See docs/adapt.md, "Never worse".

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
    window: VecDeque<(f64, f64, f64)>,
    capacity: usize,
    min_samples: usize,
    tolerance: f64,
    trust_deviation: f64,
    evidence_margin: f64,
    serving: Served,
    switches: u64,
}

impl ServeGuard {
    /// A guard over the last `capacity` triplets that serves the adapted weights once at least
    /// `min_samples` were scored and while their mean loss is at most (1 + tolerance) × the
    /// frozen mean, or, when their mean log-depth deviation from the frozen depth exceeds
    /// `trust_deviation`, at most (1 − evidence_margin) × the frozen mean.
    pub fn new(
        capacity: usize,
        min_samples: usize,
        tolerance: f64,
        trust_deviation: f64,
        evidence_margin: f64,
    ) -> Self {
        let capacity = capacity.max(1);
        Self {
            window: VecDeque::with_capacity(capacity),
            capacity,
            min_samples: min_samples.clamp(1, capacity),
            tolerance,
            trust_deviation,
            evidence_margin,
            serving: Served::Frozen,
            switches: 0,
        }
    }

    /// Records one fresh triplet's losses (adapted, frozen) and the adapted depth's log-depth
    /// deviation from the frozen depth, and returns what to serve now. A non-finite adapted
    /// loss or deviation counts as infinitely bad; a non-finite frozen loss is ignored.
    pub fn record(&mut self, adapted: f64, frozen: f64, deviation: f64) -> Served {
        if frozen.is_finite() {
            let bad = |v: f64| if v.is_finite() { v } else { f64::INFINITY };
            if self.window.len() == self.capacity {
                self.window.pop_front();
            }
            self.window.push_back((bad(adapted), frozen, bad(deviation)));
        }
        let allowed = match self.deviation() {
            Some(d) if d <= self.trust_deviation => 1.0 + self.tolerance,
            _ => 1.0 - self.evidence_margin,
        };
        let next = match self.ratio() {
            Some(r) if self.window.len() >= self.min_samples && r <= allowed => Served::Adapted,
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
        let (a, f) = self.window.iter().fold((0.0, 0.0), |(a, f), &(x, y, _)| (a + x, f + y));
        (f > 0.0).then(|| a / f)
    }

    /// Mean log-depth deviation of the adapted from the frozen depth in the window.
    pub fn deviation(&self) -> Option<f64> {
        let n = self.window.len();
        (n > 0).then(|| self.window.iter().map(|&(_, _, d)| d).sum::<f64>() / n as f64)
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
        let mut guard = ServeGuard::new(4, 2, 0.02, 0.5, 0.05);
        assert_eq!(guard.record(1.01, 1.0, 0.1), Served::Frozen, "one sample is not enough");
        assert_eq!(guard.record(1.01, 1.0, 0.1), Served::Adapted, "within the tolerance");
        assert_eq!(guard.switches(), 1);
        // Adaptation starts to hurt: the window mean crosses 1.02 and the guard falls back.
        for _ in 0..3 {
            guard.record(1.5, 1.0, 0.1);
        }
        assert_eq!(guard.serving(), Served::Frozen);
        assert_eq!(guard.switches(), 2);
        assert!(guard.ratio().is_some_and(|r| r > 1.0));
    }

    #[test]
    fn a_loss_above_the_tolerance_keeps_the_frozen_weights() {
        let mut guard = ServeGuard::new(8, 1, 0.01, 0.5, 0.05);
        for _ in 0..10 {
            assert_eq!(guard.record(1.02, 1.0, 0.1), Served::Frozen);
        }
        assert_eq!(guard.len(), 8, "the window is bounded");
    }

    #[test]
    fn far_from_the_frozen_depth_the_adapted_weights_need_evidence() {
        let mut guard = ServeGuard::new(4, 1, 0.02, 0.3, 0.05);
        assert_eq!(guard.record(1.01, 1.0, 0.1), Served::Adapted, "inside the trust region");
        // As good photometrically, but the depth left the trust region without evidence.
        for _ in 0..4 {
            guard.record(1.0, 1.0, 0.8);
        }
        assert_eq!(guard.serving(), Served::Frozen);
        assert!(guard.deviation().is_some_and(|d| d > 0.3));
        // Far from the frozen depth, but explaining the images clearly better.
        for _ in 0..4 {
            guard.record(0.8, 1.0, 0.8);
        }
        assert_eq!(guard.serving(), Served::Adapted);
    }

    #[test]
    fn non_finite_losses_never_serve_the_adapted_weights() {
        let mut guard = ServeGuard::new(4, 1, 0.0, 0.5, 0.05);
        assert_eq!(guard.record(f64::NAN, 1.0, 0.1), Served::Frozen);
        assert_eq!(guard.record(0.1, f64::INFINITY, 0.1), Served::Frozen, "ignored frozen sample");
        assert_eq!(guard.len(), 1);
    }
}
