//! The adapter's judgements without gradients: the photometric loss of a triplet for given
//! depth and poses (optionally with the poses refined for that depth), the never-worse guard's
//! scoring of each fresh triplet (adapted vs frozen weights), and the held-back rollback check.

use super::{Adapter, FreshScore, to_host};
use crate::adapt::AdaptError;
use crate::adapt::pose_refine::{Refinement, refine_poses, start_at_rotation_prior};
use crate::adapt::triplet::Triplet;
use crate::loss::{Pose6, target_pyramid};
use crate::model::network::DepthNetwork;
use tch::Tensor;

/// How the adapted depth's shape agrees with the frozen depth's on one target.
struct LogDepthAgreement {
    /// σ of log D_adapted − log D_frozen (scale-invariant deviation).
    deviation: f64,
    /// Pearson correlation of log D_adapted and log D_frozen.
    correlation: f64,
}

/// How two depth maps agree in shape, over the pixels where both log depths are finite: the
/// scale-invariant deviation (standard deviation of the difference of their log depths) and the
/// Pearson correlation of their log depths (1: the same ordering of near and far at any scale;
/// −1: one is the other's relief turned inside out; NaN where either map is flat).
/// `depth_of` turns a network output into a depth.
fn log_depth_agreement(a: &[f32], b: &[f32], depth_of: impl Fn(f32) -> f64) -> LogDepthAgreement {
    // Sums of d = la − lb (the deviation, as the guard has always measured it) and of the two
    // log depths (their correlation).
    let (mut sum, mut sum_sq, mut n) = (0f64, 0f64, 0usize);
    let (mut sa, mut sb, mut saa, mut sbb, mut sab) = (0f64, 0f64, 0f64, 0f64, 0f64);
    for (&x, &y) in a.iter().zip(b) {
        let (la, lb) = (depth_of(x).ln(), depth_of(y).ln());
        let d = la - lb;
        if d.is_finite() {
            sum += d;
            sum_sq += d * d;
            sa += la;
            sb += lb;
            saa += la * la;
            sbb += lb * lb;
            sab += la * lb;
            n += 1;
        }
    }
    if n == 0 {
        return LogDepthAgreement { deviation: f64::NAN, correlation: f64::NAN };
    }
    let n = n as f64;
    let mean = sum / n;
    let deviation = (sum_sq / n - mean * mean).max(0.0).sqrt();
    let (ma, mb) = (sa / n, sb / n);
    let (va, vb) = (saa / n - ma * ma, sbb / n - mb * mb);
    // Below this variance of log depth a map counts as flat (what is left is rounding).
    const FLAT: f64 = 1e-12;
    let correlation = if va > FLAT && vb > FLAT {
        ((sab / n - ma * mb) / (va * vb).sqrt()).clamp(-1.0, 1.0)
    } else {
        f64::NAN
    };
    LogDepthAgreement { deviation, correlation }
}

impl Adapter {
    /// The current pose network's two poses for a triplet (prev inverted, next), no gradients.
    fn triplet_poses(&self, t: &Triplet) -> Result<[Pose6; 2], AdaptError> {
        let (w, h) = (t.width, t.height);
        let x_target = self.normalised(&[&t.target[..]], w, h)?;
        let x_prev = self.normalised(&[&t.prev[..]], w, h)?;
        let x_next = self.normalised(&[&t.next[..]], w, h)?;
        let pairs = Tensor::f_cat(
            &[Tensor::f_cat(&[&x_prev, &x_target], 1)?, Tensor::f_cat(&[&x_target, &x_next], 1)?],
            0,
        )?;
        let (rot, trans) = tch::no_grad(|| self.pose.try_forward_t(&pairs, false))?;
        let (r, tr) = (to_host(&rot)?, to_host(&trans)?);
        Ok(crate::adapt::host_batch::triplet_pose_rows(&r, &tr, 0, 1))
    }

    /// Disparities (every scale, host) of `depth` on a triplet's target, no gradients.
    fn target_disparities(
        &self,
        t: &Triplet,
        depth: &DepthNetwork,
    ) -> Result<Vec<Vec<f32>>, AdaptError> {
        let x_target = self.normalised(&[&t.target[..]], t.width, t.height)?;
        let disps = tch::no_grad(|| depth.try_forward_t(&x_target, false))?;
        disps.iter().map(to_host).collect()
    }

    /// The photometric part of the self-supervised loss of one triplet for given disparities
    /// and poses (no tie-break noise, no gradients).
    fn photometric(
        &mut self,
        t: &Triplet,
        disparities: &[Vec<f32>],
        poses: &[Pose6; 2],
        min_error: Option<&mut Vec<f32>>,
    ) -> Result<f64, AdaptError> {
        let (w, h) = (t.width, t.height);
        let pyramid = target_pyramid(&t.target, w, h, disparities.len());
        let pyramid_refs: Vec<&[f32]> = pyramid.iter().map(Vec::as_slice).collect();
        let disp_refs: Vec<&[f32]> = disparities.iter().map(Vec::as_slice).collect();
        let sources: [&[f32]; 2] = [&t.prev, &t.next];
        let out =
            self.loss.forward(&t.loss_inputs(&sources, &disp_refs, &pyramid_refs, poses, None))?;
        if let Some(dst) = min_error {
            dst.clear();
            dst.extend_from_slice(&out.min_error);
        }
        Ok(f64::from(out.photometric))
    }

    /// The photometric loss at the finest scale after refining the poses for these
    /// disparities (each depth map gets the motion that explains the images best with it).
    fn refined_photometric(
        &mut self,
        t: &Triplet,
        disparities: &[Vec<f32>],
        poses: &[Pose6; 2],
        median_depth: f64,
    ) -> Result<f64, AdaptError> {
        let (w, h) = (t.width, t.height);
        let pyramid = target_pyramid(&t.target, w, h, 1);
        let pyramid_refs: Vec<&[f32]> = pyramid.iter().map(Vec::as_slice).collect();
        let disp_refs: Vec<&[f32]> = disparities.iter().take(1).map(Vec::as_slice).collect();
        let sources: [&[f32]; 2] = [&t.prev, &t.next];
        self.zero_noise.resize(2 * w * h, 0.0);
        let inputs =
            t.loss_inputs(&sources, &disp_refs, &pyramid_refs, poses, Some(&self.zero_noise));
        // One walk from the pose network's motion for both depth maps, even where training
        // also walks from the mirrored start: a second start gives each depth map more room
        // to explain the images and blurred the comparison (docs/adapt.md, "Mirrored start").
        let one_walk = Refinement { mirrored_start: false, ..self.config.pose_refinement() };
        let refined = refine_poses(&mut self.refine_loss, &inputs, one_walk, median_depth as f32)?;
        Ok(f64::from(refined.loss_after))
    }

    /// Depth (loss units) of a sigmoid disparity, with the loss's depth range.
    fn depth_of(&self, disparity: f32) -> f64 {
        let (min_disp, max_disp) = (
            1.0 / f64::from(self.config.loss.max_depth),
            1.0 / f64::from(self.config.loss.min_depth),
        );
        1.0 / (min_disp + (max_disp - min_disp) * f64::from(disparity))
    }

    /// Median depth (loss units) of a scale-0 disparity map.
    pub(super) fn median_depth(&self, disparity: &[f32]) -> f64 {
        let mut depth: Vec<f64> =
            disparity.iter().map(|&d| self.depth_of(d)).filter(|d| d.is_finite()).collect();
        if depth.is_empty() {
            return f64::NAN;
        }
        let mid = depth.len() / 2;
        *depth.select_nth_unstable_by(mid, f64::total_cmp).1
    }

    /// The never-worse guard's test of a fresh live triplet, before any step trains on it: the
    /// photometric loss of the adapted and of the frozen depth with the same current poses (the
    /// frozen translation rescaled by the ratio of median depths, so that only the depth's
    /// shape is compared), recorded in the guard's window; publishes at once when what is
    /// served changes.
    pub(super) fn score_fresh(&mut self, t: &Triplet) -> Result<(), AdaptError> {
        let network_poses = self.triplet_poses(t)?;
        // Both depth maps are judged from the motion training starts at: a gyro's rotations
        // where there are some, as in the refinement (docs/adapt.md, "A gyro starts the
        // rotation").
        let poses = start_at_rotation_prior(network_poses, t.rotation_prior);
        let adapted = self.target_disparities(t, &self.student)?;
        let frozen = self.target_disparities(t, &self.anchor)?;
        let adapted_median = self.median_depth(&adapted[0]);
        let frozen_median = self.median_depth(&frozen[0]);
        let frozen_scale = frozen_median / adapted_median;
        let (mut adapted_error, mut frozen_error) = (Vec::new(), Vec::new());
        let adapted_loss = self.photometric(t, &adapted, &poses, Some(&mut adapted_error))?;
        let mut frozen_poses = poses;
        if frozen_scale.is_finite() && frozen_scale > 0.0 {
            for p in &mut frozen_poses {
                p.translation = p.translation.map(|v| v * frozen_scale as f32);
            }
        }
        let frozen_loss = self.photometric(t, &frozen, &frozen_poses, Some(&mut frozen_error))?;
        // With pose refinement on, each depth map is judged with its own best motion.
        let (adapted_loss, frozen_loss) = match self.config.pose_refine_iterations {
            0 => (adapted_loss, frozen_loss),
            _ => (
                self.refined_photometric(t, &adapted, &poses, adapted_median)?,
                self.refined_photometric(t, &frozen, &frozen_poses, frozen_median)?,
            ),
        };
        let (mut wins, mut changed, mut sum_a, mut sum_f) = (0usize, 0usize, 0f64, 0f64);
        for (&a, &f) in adapted_error.iter().zip(&frozen_error) {
            if (a - f).abs() > 1e-3 {
                changed += 1;
                wins += usize::from(a < f);
                sum_a += f64::from(a);
                sum_f += f64::from(f);
            }
        }
        let before = self.serve.serving();
        let LogDepthAgreement { deviation, correlation } =
            log_depth_agreement(&adapted[0], &frozen[0], |d| self.depth_of(d));
        let now = self.serve.record(adapted_loss, frozen_loss, deviation);
        let motion = network_poses.each_ref().map(Pose6::row);
        let largest_translation = motion
            .iter()
            .map(|m| f64::from(m[3] * m[3] + m[4] * m[4] + m[5] * m[5]).sqrt())
            .fold(0.0, f64::max);
        self.stats.fresh = FreshScore {
            target_index: t.target_index,
            k: t.k as u64,
            adapted_loss,
            frozen_loss,
            motion,
            parallax_px: f64::from(t.intrinsics[0]) * largest_translation / adapted_median,
            fx: f64::from(t.intrinsics[0]),
            win_fraction: if changed > 0 { wins as f64 / changed as f64 } else { f64::NAN },
            changed_ratio: if sum_f > 0.0 { sum_a / sum_f } else { f64::NAN },
            deviation,
            log_depth_correlation: correlation,
            // Filled by the step that trains on this triplet.
            refined_motion: [[0.0; 6]; 2],
            refine_loss: [0.0; 2],
            travel_units: [0.0; 2],
            frozen_scale,
        };
        self.stats.serving = now;
        self.stats.serve_switches = self.serve.switches();
        self.stats.serve_ratio = self.serve.ratio().unwrap_or(f64::NAN);
        self.stats.serve_deviation = self.serve.deviation().unwrap_or(f64::NAN);
        if now != before {
            self.publish()?;
        }
        Ok(())
    }

    /// Mean photometric loss of the held-back triplets with the student or the frozen start
    /// (poses from the current pose network, no gradients).
    fn holdout_loss(&mut self, use_anchor: bool) -> Result<f64, AdaptError> {
        let mut sum = 0.0;
        let holdout = self.holdout.clone();
        for t in &holdout {
            let poses = self.triplet_poses(t)?;
            let depth = if use_anchor { &self.anchor } else { &self.student };
            let disparities = self.target_disparities(t, depth)?;
            sum += self.photometric(t, &disparities, &poses, None)?;
        }
        Ok(sum / holdout.len().max(1) as f64)
    }

    /// Compares the held-back loss with the frozen start; rolls back when it is worse by more
    /// than the threshold, otherwise records the current weights as the last good ones.
    /// Returns whether it rolled back.
    pub(super) fn check_holdout(&mut self) -> Result<bool, AdaptError> {
        if self.holdout.is_empty() {
            return Ok(false);
        }
        let student = self.holdout_loss(false)?;
        let anchor = self.holdout_loss(true)?;
        self.stats.last_holdout_student = student;
        self.stats.last_holdout_anchor = anchor;
        if !student.is_finite() || student > anchor * (1.0 + self.config.guards.threshold) {
            self.student.copy_weights_from(&self.good_student)?;
            self.pose.copy_weights_from(&self.good_pose)?;
            self.adam.reset_moments();
            self.pose_adam.reset_moments();
            self.stats.rollbacks += 1;
            Ok(true)
        } else {
            self.good_student.copy_weights_from(&self.student)?;
            self.good_pose.copy_weights_from(&self.pose)?;
            Ok(false)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::log_depth_agreement;

    /// A ramp of depths 1..=4 m over 16 pixels; the maps hold depths directly.
    fn ramp() -> Vec<f32> {
        (0..16).map(|i| 1.0 + 0.2 * i as f32).collect()
    }

    #[test]
    fn agreement_is_scale_invariant_and_sees_an_inverted_relief() {
        let depth = |d: f32| f64::from(d);
        let a = ramp();
        let same = log_depth_agreement(&a, &a, depth);
        assert!(same.deviation.abs() < 1e-9 && (same.correlation - 1.0).abs() < 1e-9);
        // Twice as far everywhere: the same shape.
        let scaled: Vec<f32> = a.iter().map(|d| 2.0 * d).collect();
        let twice = log_depth_agreement(&a, &scaled, depth);
        assert!(twice.deviation < 1e-6, "{}", twice.deviation);
        assert!((twice.correlation - 1.0).abs() < 1e-6, "{}", twice.correlation);
        // Near and far swapped (D -> 4 / D): log depths mirrored, correlation -1.
        let inverted: Vec<f32> = a.iter().map(|d| 4.0 / d).collect();
        let turned = log_depth_agreement(&a, &inverted, depth);
        assert!((turned.correlation + 1.0).abs() < 1e-6, "{}", turned.correlation);
        assert!(turned.deviation > 0.5, "{}", turned.deviation);
        // A flat map has no ordering to agree with; non-finite pixels are left out.
        let flat = vec![2.0f32; 16];
        assert!(log_depth_agreement(&a, &flat, depth).correlation.is_nan());
        let mut holes = a.clone();
        holes[3] = 0.0;
        let with_holes = log_depth_agreement(&holes, &a, depth);
        assert!((with_holes.correlation - 1.0).abs() < 1e-9 && with_holes.deviation < 1e-9);
        assert!(log_depth_agreement(&[], &[], depth).deviation.is_nan());
    }
}
