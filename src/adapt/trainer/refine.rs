//! The poses one host sample's loss is taken at, and what the live sample's motion reports: test-time pose refinement (Rprop on the
//! photometric loss at the finest scale, depth held fixed), the live sample's translation length
//! at the photometric optimum (metres per depth unit against an odometry, and the parallax that
//! sets the next triplet's spacing), and metric conditioning of the refined translations.

use super::{AdaptError, Adapter, StepOutcome};
use crate::adapt::pose_refine::{refine_poses, start_at_rotation_prior, translation_length_factor};
use crate::adapt::triplet::{Triplet, lengths, parallax_px};
use crate::loss::{LossError, LossInputs, Pose6};

/// The poses of one sample's loss and, with refinement, the pose network's targets: (network
/// poses, refined poses, median depth).
pub(super) struct SamplePoses {
    pub poses: [Pose6; 2],
    pub targets: Option<([Pose6; 2], [Pose6; 2], f32)>,
}

impl Adapter {
    /// Whether the live sample's translation lengths are measured at the photometric optimum
    /// (33 extra loss evaluations): for the metric scale and for the parallax-driven spacing.
    pub(super) fn measures_live_length(&self, live: &Triplet) -> bool {
        let target = match live.rotation_prior {
            Some(_) => self.config.target_parallax_px_with_gyro,
            None => self.config.target_parallax_px,
        };
        live.travel.is_some() || target > 0.0
    }

    /// What the live sample's motion tells the rest of the loop, on either loss backend: its
    /// parallax sets the next triplet's spacing, and its translation lengths (when `at_optimum`,
    /// i.e. measured by the length search) are the depth units the metric scale compares with
    /// the odometry.
    pub(super) fn record_live_motion(
        &mut self,
        live: &Triplet,
        translation_lengths: [f32; 2],
        median_depth: f32,
        at_optimum: bool,
    ) {
        let parallax = parallax_px(live.intrinsics, translation_lengths, median_depth);
        self.selector.observe_parallax(live.k, parallax);
        self.stats.fresh.travel_units = match (live.travel, at_optimum) {
            (Some(_), true) => translation_lengths,
            _ => [0.0; 2],
        };
    }

    /// Sample `index` of the batch (0 = the live one) at its network poses `network`, with
    /// `disparities` and `pyramid` its host maps; `Ok(Err(verdict))` rejects the step.
    pub(super) fn sample_poses(
        &mut self,
        index: usize,
        triplet: &Triplet,
        disparities: &[&[f32]],
        pyramid: &[&[f32]],
        network: [Pose6; 2],
    ) -> Result<Result<SamplePoses, StepOutcome>, AdaptError> {
        let live = index == 0;
        if self.config.pose_refine_iterations == 0 {
            if live {
                let median = self.median_depth(disparities[0]) as f32;
                self.record_live_motion(triplet, lengths(&network), median, false);
            }
            return Ok(Ok(SamplePoses { poses: network, targets: None }));
        }
        let median = self.median_depth(disparities[0]) as f32;
        let hw = triplet.width * triplet.height;
        self.zero_noise.resize(2 * hw, 0.0);
        let sources: [&[f32]; 2] = [&triplet.prev, &triplet.next];
        let start = start_at_rotation_prior(network, triplet.rotation_prior);
        let refine_inputs = triplet.loss_inputs(
            &sources,
            &disparities[..1],
            &pyramid[..1],
            &start,
            Some(&self.zero_noise),
        );
        let refined = match refine_poses(
            &mut self.refine_loss,
            &refine_inputs,
            self.config.pose_refinement(),
            median,
        ) {
            Ok(refined) => refined,
            Err(LossError::NonFinite { field, index }) => {
                return Ok(Err(StepOutcome::Rejected(format!(
                    "non-finite network output: {field} index {index}"
                ))));
            }
            Err(e) => return Err(e.into()),
        };
        if live {
            self.stats.fresh.refined_motion = refined.poses.each_ref().map(Pose6::row);
            self.stats.fresh.refine_loss = [refined.loss_before, refined.loss_after];
            let at_optimum = self.measures_live_length(triplet);
            let factor = match at_optimum {
                true => translation_length_factor(refined.poses, |poses| {
                    let inputs = LossInputs { poses, ..refine_inputs };
                    self.refine_loss.forward(&inputs).map(|out| out.photometric)
                })?,
                false => 1.0,
            };
            let measured = lengths(&refined.poses).map(|length| factor * length);
            self.record_live_motion(triplet, measured, median, at_optimum);
        }
        let mut targets = refined.poses;
        if let (Some(travel), true) = (triplet.travel, self.config.velocity_weight > 0.0) {
            // Metric conditioning: the translations take the odometry's length along their
            // refined direction, so the depth gradient is taken at metric motion.
            for (pose, metres) in targets.iter_mut().zip(travel) {
                let length = pose.translation_length();
                if length > 0.0 && metres > 0.0 && metres.is_finite() {
                    pose.translation = pose.translation.map(|v| v * metres / length);
                }
            }
        }
        Ok(Ok(SamplePoses { poses: targets, targets: Some((network, targets, median)) }))
    }
}
