//! Training samples: frames at the network size, triplets (t−k, t, t+k) whose spacing k follows
//! the parallax measured at the last steps (no triplet while the camera is stationary), and the
//! bounded replay buffer of past triplets.

use crate::camera::Intrinsics;
use crate::frame::RgbImage;
use crate::loss::{LossInputs, Pose6};
use nalgebra::UnitQuaternion;
use rand::RngExt;
use std::collections::VecDeque;
use std::sync::Arc;

/// A frame resized to the network input: planar RGB in [0, 1] plus its intrinsics at that size.
#[derive(Clone, Debug)]
pub struct NetFrame {
    /// Position in the stream.
    pub index: u64,
    pub width: usize,
    pub height: usize,
    /// Planar 3 × H × W, RGB in [0, 1].
    pub planar: Arc<Vec<f32>>,
    /// fx, fy, cx, cy at width × height, pixel centres at integer coordinates.
    pub intrinsics: [f32; 4],
    /// Metres travelled up to this frame by the vehicle's odometry (`--metric-scale speed`),
    /// when known: it supervises the pose network's translation (velocity supervision).
    pub odometer: Option<f64>,
    /// The camera's orientation (camera-to-world rotation) from a gyro or attitude estimator
    /// (`--gyro`), when known: the relative rotations of a triplet's frames start the pose
    /// refinement (see [`Triplet::rotation_prior`]).
    pub orientation: Option<UnitQuaternion<f64>>,
}

impl NetFrame {
    /// From an 8-bit image already at the network size and the camera intrinsics at any size
    /// (rescaled here, converting between half-pixel and integer pixel-centre conventions).
    pub fn from_resized(index: u64, resized: &RgbImage, camera: &Intrinsics) -> Self {
        let (w, h) = (resized.width as usize, resized.height as usize);
        let hw = w * h;
        let mut planar = vec![0f32; 3 * hw];
        for (i, px) in resized.data.chunks_exact(3).take(hw).enumerate() {
            planar[i] = px[0] as f32 / 255.0;
            planar[hw + i] = px[1] as f32 / 255.0;
            planar[2 * hw + i] = px[2] as f32 / 255.0;
        }
        let sx = w as f64 / camera.width.max(1) as f64;
        let sy = h as f64 / camera.height.max(1) as f64;
        let intrinsics = [
            (camera.fx * sx) as f32,
            (camera.fy * sy) as f32,
            ((camera.cx + 0.5) * sx - 0.5) as f32,
            ((camera.cy + 0.5) * sy - 0.5) as f32,
        ];
        Self {
            index,
            width: w,
            height: h,
            planar: Arc::new(planar),
            intrinsics,
            odometer: None,
            orientation: None,
        }
    }
}

/// Three frames (previous, target, next) spaced k apart, with the target's image pyramid.
#[derive(Clone, Debug)]
pub struct Triplet {
    pub target_index: u64,
    pub k: usize,
    pub width: usize,
    pub height: usize,
    pub prev: Arc<Vec<f32>>,
    pub target: Arc<Vec<f32>>,
    pub next: Arc<Vec<f32>>,
    pub intrinsics: [f32; 4],
    /// Metres travelled between (prev, target) and (target, next), when the frames carry an
    /// odometer reading.
    pub travel: Option<[f32; 2]>,
    /// The rotations of the two poses (previous, next) as the loss takes them, axis-angle, when
    /// the frames carry an orientation: where the pose refinement starts its rotations.
    pub rotation_prior: Option<[[f32; 3]; 2]>,
}

impl Triplet {
    /// The loss inputs of this triplet at the given disparities, target pyramid and poses;
    /// `sources` must be `[prev, next]` of this triplet (the caller owns that small array).
    pub fn loss_inputs<'a>(
        &'a self,
        sources: &'a [&'a [f32]; 2],
        disparities: &'a [&'a [f32]],
        target_pyramid: &'a [&'a [f32]],
        poses: &'a [Pose6],
        tie_break_noise: Option<&'a [f32]>,
    ) -> LossInputs<'a> {
        LossInputs {
            width: self.width,
            height: self.height,
            target: &self.target,
            sources,
            disparities,
            target_pyramid,
            poses,
            intrinsics: self.intrinsics,
            tie_break_noise,
        }
    }
}

/// Mean absolute difference of two planar images, on every 4th value (cheap motion measure).
pub fn mean_abs_difference(a: &[f32], b: &[f32]) -> f32 {
    let (mut sum, mut n) = (0f64, 0usize);
    for (x, y) in a.iter().step_by(4).zip(b.iter().step_by(4)) {
        sum += (x - y).abs() as f64;
        n += 1;
    }
    if n == 0 { 0.0 } else { (sum / n as f64) as f32 }
}

/// Keeps the last 2·k_max + 1 frames and forms a triplet ending at each new frame when the
/// camera moved enough.
///
/// **Spacing from parallax.** A pose network sees depth only through parallax: the image shift a
/// translation t causes at depth Z is f·‖t‖/Z pixels. Too little (a slow hand-held camera at
/// k = 1: about half a pixel at 128x96) and the photometric loss cannot tell depths apart; too
/// much (a car at k = 6: a 5 m baseline) and the pose network leaves the spacing it was trained
/// on. After each step the trainer reports the parallax of its live triplet
/// ([`TripletSelector::observe_parallax`]: f·‖t‖ / median depth, both in the network's own
/// units, so the unknown scale cancels); the next triplet starts from the smallest k whose
/// per-frame parallax (the median of the last [`PARALLAX_HISTORY`] reports) reaches
/// `target_parallax_px`. Until the first report, and with a target of 0, it starts from k_min.
#[derive(Debug)]
pub struct TripletSelector {
    history: VecDeque<NetFrame>,
    k_min: usize,
    k_max: usize,
    motion_threshold: f32,
    target_parallax_px: f32,
    /// The target while the newest frame carries a gyro's orientation.
    target_parallax_px_with_gyro: f32,
    /// Whether the newest frame carried one.
    gyro: bool,
    /// Parallax per frame of spacing (pixels) at the last steps.
    parallax_per_frame: VecDeque<f32>,
    /// The spacing the next triplet starts from, updated with each parallax report.
    k_start: usize,
    /// Frames for which no k showed enough motion.
    pub stationary: u64,
}

/// How many parallax reports the spacing follows (their median).
pub const PARALLAX_HISTORY: usize = 9;

impl TripletSelector {
    /// Spacing from `k_min` on, by image motion only (no parallax target).
    pub fn new(k_min: usize, k_max: usize, motion_threshold: f32) -> Self {
        Self::with_parallax_target(k_min, k_max, motion_threshold, 0.0)
    }

    /// Spacing that follows the measured parallax toward `target_parallax_px` (0 = off).
    pub fn with_parallax_target(
        k_min: usize,
        k_max: usize,
        motion_threshold: f32,
        target_parallax_px: f32,
    ) -> Self {
        let k_min = k_min.max(1);
        let k_max = k_max.max(k_min);
        let target = if target_parallax_px.is_finite() { target_parallax_px } else { 0.0 };
        Self {
            history: VecDeque::with_capacity(2 * k_max + 1),
            k_min,
            k_max,
            motion_threshold,
            target_parallax_px: target,
            target_parallax_px_with_gyro: target,
            gyro: false,
            parallax_per_frame: VecDeque::with_capacity(PARALLAX_HISTORY),
            k_start: k_min,
            stationary: 0,
        }
    }

    /// The parallax target for frames that carry a gyro's orientation (by default the same as
    /// without).
    pub fn with_gyro_target(mut self, target_parallax_px: f32) -> Self {
        if target_parallax_px.is_finite() {
            self.target_parallax_px_with_gyro = target_parallax_px;
        }
        self
    }

    /// The target that applies to the newest frame.
    fn target(&self) -> f32 {
        if self.gyro { self.target_parallax_px_with_gyro } else { self.target_parallax_px }
    }

    /// Reports the parallax (pixels at the median depth) measured on a triplet of spacing `k`.
    /// Non-finite or non-positive values (no translation, no depth) are ignored.
    pub fn observe_parallax(&mut self, k: usize, parallax_px: f32) {
        if k == 0 || !parallax_px.is_finite() || parallax_px <= 0.0 {
            return;
        }
        if self.parallax_per_frame.len() == PARALLAX_HISTORY {
            self.parallax_per_frame.pop_front();
        }
        self.parallax_per_frame.push_back(parallax_px / k as f32);
        if self.target() > 0.0 {
            self.k_start = self.spacing_for_target();
        }
    }

    /// The spacing the next triplet starts from (see the type's documentation).
    pub fn preferred_k(&self) -> usize {
        self.k_start
    }

    /// The smallest k in k_min..=k_max whose per-frame parallax (the median of the reports)
    /// reaches the target; needs at least one report.
    fn spacing_for_target(&self) -> usize {
        let mut buffer = [0f32; PARALLAX_HISTORY];
        for (slot, rate) in buffer.iter_mut().zip(&self.parallax_per_frame) {
            *slot = *rate;
        }
        let rates = &mut buffer[..self.parallax_per_frame.len()];
        let mid = rates.len() / 2;
        let rate = *rates.select_nth_unstable_by(mid, f32::total_cmp).1;
        let k = (self.target() / rate).ceil();
        if k.is_finite() { (k as usize).clamp(self.k_min, self.k_max) } else { self.k_max }
    }

    /// Adds the newest frame; returns the triplet (t−2k, t−k, newest) with the smallest k in
    /// [`Self::preferred_k`]..=k_max whose two gaps both show at least the motion threshold.
    pub fn push(&mut self, frame: NetFrame) -> Option<Triplet> {
        if let Some(last) = self.history.back()
            && (last.width, last.height) != (frame.width, frame.height)
        {
            self.history.clear();
        }
        if self.history.len() == 2 * self.k_max + 1 {
            self.history.pop_front();
        }
        self.gyro = frame.orientation.is_some();
        self.history.push_back(frame);
        let n = self.history.len();
        let k_start = self.k_start;
        if n < 2 * k_start + 1 {
            return None;
        }
        let newest = &self.history[n - 1];
        for k in k_start..=self.k_max {
            if n < 2 * k + 1 {
                break;
            }
            let middle = &self.history[n - 1 - k];
            let oldest = &self.history[n - 1 - 2 * k];
            let moved = mean_abs_difference(&newest.planar, &middle.planar)
                >= self.motion_threshold
                && mean_abs_difference(&middle.planar, &oldest.planar) >= self.motion_threshold;
            if moved {
                return Some(Triplet {
                    target_index: middle.index,
                    k,
                    width: middle.width,
                    height: middle.height,
                    prev: Arc::clone(&oldest.planar),
                    target: Arc::clone(&middle.planar),
                    next: Arc::clone(&newest.planar),
                    intrinsics: middle.intrinsics,
                    travel: travel_between(oldest, middle, newest),
                    rotation_prior: rotations_between(oldest, middle, newest),
                });
            }
        }
        if n == 2 * self.k_max + 1 {
            self.stationary += 1;
        }
        None
    }
}

/// The parallax of a triplet's two motions at its median depth, in pixels: fx · mean ‖t‖ / Z,
/// with the translation lengths ‖t‖ and Z in the same (network) units. NaN without a positive
/// finite depth.
pub fn parallax_px(intrinsics: [f32; 4], translation_lengths: [f32; 2], median_depth: f32) -> f32 {
    if !(median_depth.is_finite() && median_depth > 0.0) {
        return f32::NAN;
    }
    intrinsics[0] * (translation_lengths[0] + translation_lengths[1]) / 2.0 / median_depth
}

/// The translation lengths of a triplet's two poses.
pub fn lengths(poses: &[Pose6; 2]) -> [f32; 2] {
    poses.each_ref().map(Pose6::translation_length)
}

/// Metres travelled between the frames of a triplet, from their odometer readings.
/// A triplet's two rotations from its frames' orientations (camera-to-world `Q`), in the
/// loss's convention: the next pose is the target → next motion, `Q_next⁻¹ · Q_target`; the
/// previous pose is inverted before use (as the pose network's output for (prev, target) is),
/// so it holds `Q_target⁻¹ · Q_prev`, whose inverse is the target → previous motion.
fn rotations_between(prev: &NetFrame, target: &NetFrame, next: &NetFrame) -> Option<[[f32; 3]; 2]> {
    let (p, t, n) = (prev.orientation?, target.orientation?, next.orientation?);
    let axis_angle = |q: UnitQuaternion<f64>| q.scaled_axis().map(|v| v as f32).into();
    Some([axis_angle(t.inverse() * p), axis_angle(n.inverse() * t)])
}

fn travel_between(prev: &NetFrame, target: &NetFrame, next: &NetFrame) -> Option<[f32; 2]> {
    let (a, b, c) = (prev.odometer?, target.odometer?, next.odometer?);
    Some([(b - a).abs() as f32, (c - b).abs() as f32])
}

/// A bounded first-in-first-out store of past triplets, sampled uniformly for replay.
#[derive(Debug)]
pub struct ReplayBuffer {
    items: VecDeque<Arc<Triplet>>,
    capacity: usize,
}

impl ReplayBuffer {
    pub fn new(capacity: usize) -> Self {
        Self { items: VecDeque::with_capacity(capacity), capacity }
    }

    /// Adds a triplet, dropping the oldest beyond the capacity.
    pub fn push(&mut self, triplet: Arc<Triplet>) {
        if self.capacity == 0 {
            return;
        }
        if self.items.len() == self.capacity {
            self.items.pop_front();
        }
        self.items.push_back(triplet);
    }

    pub fn len(&self) -> usize {
        self.items.len()
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Up to `count` distinct triplets drawn uniformly with `rng`.
    pub fn sample(&self, rng: &mut rand_pcg::Pcg64Mcg, count: usize) -> Vec<Arc<Triplet>> {
        let mut picked: Vec<usize> = Vec::with_capacity(count);
        let count = count.min(self.items.len());
        while picked.len() < count {
            let i = rng.random_range(0..self.items.len());
            if !picked.contains(&i) {
                picked.push(i);
            }
        }
        picked.into_iter().map(|i| Arc::clone(&self.items[i])).collect()
    }

    pub fn iter(&self) -> impl Iterator<Item = &Arc<Triplet>> {
        self.items.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nalgebra::Vector3;

    fn frame_facing(index: u64, orientation: UnitQuaternion<f64>) -> NetFrame {
        NetFrame {
            index,
            width: 2,
            height: 2,
            planar: Arc::new(vec![0.0; 12]),
            intrinsics: [1.0, 1.0, 0.5, 0.5],
            odometer: None,
            orientation: Some(orientation),
        }
    }

    #[test]
    fn the_rotation_prior_is_the_motion_the_loss_applies() {
        // Camera-to-world orientations of three frames, turning about all three axes.
        let q = |x: f64, y: f64, z: f64| UnitQuaternion::from_scaled_axis(Vector3::new(x, y, z));
        let (p, t, n) = (q(0.02, -0.31, 0.05), q(0.01, -0.27, 0.04), q(-0.02, -0.22, 0.06));
        let prior =
            rotations_between(&frame_facing(0, p), &frame_facing(1, t), &frame_facing(2, n))
                .expect("all three frames have an orientation");
        let loss_rotation = |axis_angle: [f32; 3], invert| {
            let w = axis_angle.map(f64::from);
            crate::loss::geometry::transform(w, [0.0; 3], invert).0
        };
        // The loss maps target-camera points into each source camera: Q_source⁻¹ · Q_target.
        for (m, source, invert) in [(prior[0], p, true), (prior[1], n, false)] {
            let applied = loss_rotation(m, invert);
            let truth = (source.inverse() * t).to_rotation_matrix();
            for (i, row) in applied.iter().enumerate() {
                for (j, value) in row.iter().enumerate() {
                    let want = truth[(i, j)];
                    assert!((value - want).abs() < 1e-6, "({i}, {j}): {value} vs {want}");
                }
            }
        }
        let mut without = frame_facing(0, p);
        without.orientation = None;
        assert!(rotations_between(&without, &frame_facing(1, t), &frame_facing(2, n)).is_none());
    }

    #[test]
    fn frames_with_a_gyro_follow_the_gyro_parallax_target() {
        let mut selector =
            TripletSelector::with_parallax_target(1, 6, 0.0, 3.0).with_gyro_target(1.5);
        let mut without = frame_facing(0, UnitQuaternion::identity());
        without.orientation = None;
        selector.push(without);
        // 0.5 px per frame of spacing: 3 px needs k = 6, 1.5 px needs k = 3.
        selector.observe_parallax(2, 1.0);
        assert_eq!(selector.preferred_k(), 6);
        selector.push(frame_facing(1, UnitQuaternion::identity()));
        selector.observe_parallax(2, 1.0);
        assert_eq!(selector.preferred_k(), 3);
    }
}
