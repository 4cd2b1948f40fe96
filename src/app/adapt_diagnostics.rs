//! `eval --adapt --diagnose FILE.csv`: one row per frame of a lock-step adaptation run that
//! shows why adaptation helps or hurts, against the dataset's ground truth: abs_rel of the
//! served, the adapted and the frozen weights on the same frame; what the never-worse guard
//! serves; and, for the fresh triplet scored at that frame, its spacing k, the adapted and frozen
//! photometric losses, how far the adapted depth's shape is from the frozen one's (deviation and
//! log-depth correlation), the parallax the pose network implies versus the ground-truth parallax,
//! the pose network's rotation and translation-direction errors and its scale consistency with
//! the depth network; plus the masked fraction, distillation coverage, drift and rollbacks.
//!
//! The ground truth is only read here, never by the adapter.

use crate::adapt::AdaptStats;
use crate::eval::FrameMetrics;
use crate::frame::Frame;
use crate::sink::metrics::MetricsCsvWriter;
use nalgebra::{Isometry3, Vector3};
use std::path::Path;

/// How many of [`COLUMNS`] describe the fresh triplet: `fresh_target` .. `refine_loss_ratio`.
const FRESH_COLUMN_COUNT: usize = 21;

const COLUMNS: &[&str] = &[
    "position",
    "frame",
    "abs_rel_served",
    "abs_rel_adapted",
    "abs_rel_frozen",
    "serving_adapted",
    "steps",
    "rollbacks",
    "masked_fraction",
    "distill_fraction",
    "anchor_drift",
    "fresh_target",
    "k",
    "adapted_loss",
    "frozen_loss",
    "serve_ratio",
    "frozen_scale",
    "win_fraction",
    "changed_ratio",
    "deviation",
    "log_depth_correlation",
    "parallax_px",
    "gt_parallax_px",
    "gt_translation_mm",
    "gt_rotation_deg",
    "rotation_deg",
    "rotation_error_deg",
    "translation_direction_error_deg",
    "pose_scale_consistency",
    "refined_rotation_error_deg",
    "refined_direction_error_deg",
    "refine_loss_ratio",
];

/// What the ground truth says about one frame.
#[derive(Clone, Copy, Debug)]
struct Truth {
    pose: Option<Isometry3<f64>>,
    median_depth: f64,
    /// median(gt) / median(adapted prediction) on this frame.
    adapted_scale: f64,
}

/// Collects the rows of a diagnosed run and writes them as CSV as it goes.
pub struct AdaptDiagnostics {
    csv: MetricsCsvWriter,
    truth: Vec<Truth>,
    last_fresh: Option<u64>,
}

impl AdaptDiagnostics {
    pub fn create(path: &Path) -> crate::Result<Self> {
        Ok(Self {
            csv: MetricsCsvWriter::create(path, COLUMNS)?,
            truth: Vec::new(),
            last_fresh: None,
        })
    }

    /// Writes the row of the frame at `position` once its steps are done.
    pub fn record(
        &mut self,
        position: usize,
        frame: &Frame,
        served: &FrameMetrics,
        adapted: &FrameMetrics,
        frozen: &FrameMetrics,
        stats: &AdaptStats,
    ) -> crate::Result<()> {
        let median_depth = frame.gt_depth.as_ref().map_or(f64::NAN, |gt| {
            let mut valid: Vec<f32> = gt.data.iter().copied().filter(|&d| d > 0.0).collect();
            if valid.is_empty() {
                return f64::NAN;
            }
            let mid = valid.len() / 2;
            f64::from(*valid.select_nth_unstable_by(mid, f32::total_cmp).1)
        });
        self.truth.push(Truth {
            pose: frame.gt_pose,
            median_depth,
            adapted_scale: adapted.scale_ratio,
        });
        let fresh = stats.fresh;
        let is_new = stats.fresh.k > 0 && self.last_fresh != Some(fresh.target_index);
        let mut fresh_columns = [f64::NAN; FRESH_COLUMN_COUNT];
        if is_new {
            self.last_fresh = Some(fresh.target_index);
            fresh_columns = self.fresh_columns(stats);
        }
        let mut row = vec![
            position as f64,
            frame.index as f64,
            served.abs_rel,
            adapted.abs_rel,
            frozen.abs_rel,
            f64::from(u8::from(stats.serving == crate::adapt::Served::Adapted)),
            stats.steps as f64,
            stats.rollbacks as f64,
            stats.last_masked_fraction,
            stats.last_distill_fraction,
            stats.last_anchor_drift,
        ];
        row.extend_from_slice(&fresh_columns);
        self.csv.write_row(&row)?;
        Ok(())
    }

    /// The fresh-triplet columns: fresh_target .. refine_loss_ratio.
    fn fresh_columns(&self, stats: &AdaptStats) -> [f64; FRESH_COLUMN_COUNT] {
        let fresh = stats.fresh;
        let target = fresh.target_index as usize;
        let k = fresh.k as usize;
        let next = self.truth.get(target + k);
        let here = self.truth.get(target);
        // Ground-truth motion target → next in the target camera's frame, as the loss warps:
        // X_next = T · X_target with T = P_next⁻¹ · P_target (camera-to-world poses).
        let gt_motion = match (here.and_then(|t| t.pose), next.and_then(|t| t.pose)) {
            (Some(p_target), Some(p_next)) => Some(p_next.inverse() * p_target),
            _ => None,
        };
        let m = fresh.motion[1];
        let rotation = Vector3::new(f64::from(m[0]), f64::from(m[1]), f64::from(m[2]));
        let translation = Vector3::new(f64::from(m[3]), f64::from(m[4]), f64::from(m[5]));
        let r = fresh.refined_motion[1];
        let refined_rotation = Vector3::new(f64::from(r[0]), f64::from(r[1]), f64::from(r[2]));
        let refined_translation = Vector3::new(f64::from(r[3]), f64::from(r[4]), f64::from(r[5]));
        let (mut gt_parallax, mut gt_mm, mut gt_rot, mut rot_err, mut dir_err, mut consistency) =
            (f64::NAN, f64::NAN, f64::NAN, f64::NAN, f64::NAN, f64::NAN);
        let (mut refined_rot_err, mut refined_dir_err) = (f64::NAN, f64::NAN);
        if let (Some(gt), Some(here)) = (gt_motion, here) {
            let gt_t = gt.translation.vector;
            gt_mm = 1000.0 * gt_t.norm();
            gt_rot = gt.rotation.angle().to_degrees();
            let predicted = nalgebra::UnitQuaternion::from_scaled_axis(rotation);
            rot_err = gt.rotation.angle_to(&predicted).to_degrees();
            if translation.norm() > 0.0 && gt_t.norm() > 0.0 {
                dir_err = translation.angle(&gt_t).to_degrees();
                consistency = translation.norm() * here.adapted_scale / gt_t.norm();
            }
            if refined_translation.norm() > 0.0 && gt_t.norm() > 0.0 {
                let refined = nalgebra::UnitQuaternion::from_scaled_axis(refined_rotation);
                refined_rot_err = gt.rotation.angle_to(&refined).to_degrees();
                refined_dir_err = refined_translation.angle(&gt_t).to_degrees();
            }
            // Parallax of the true translation at the target's median depth, network pixels.
            if here.median_depth.is_finite() && here.median_depth > 0.0 {
                gt_parallax = fresh.fx * gt_t.norm() / here.median_depth;
            }
        }
        [
            fresh.target_index as f64,
            k as f64,
            fresh.adapted_loss,
            fresh.frozen_loss,
            stats.serve_ratio,
            fresh.frozen_scale,
            fresh.win_fraction,
            fresh.changed_ratio,
            fresh.deviation,
            fresh.log_depth_correlation,
            fresh.parallax_px,
            gt_parallax,
            gt_mm,
            gt_rot,
            rotation.norm().to_degrees(),
            rot_err,
            dir_err,
            consistency,
            refined_rot_err,
            refined_dir_err,
            f64::from(fresh.refine_loss[1]) / f64::from(fresh.refine_loss[0]),
        ]
    }

    pub fn finish(self) -> crate::Result<()> {
        self.csv.finish()?;
        Ok(())
    }
}
