//! Test-time pose refinement by direct photometric alignment.
//!
//! The online pose network starts with a freshly initialised head and learns from a few hundred
//! frames, so on a hand-held indoor sequence its motion estimates are poor (rotation errors as
//! large as the rotation itself, translation directions that stop following the camera when the
//! motion pattern changes: see docs/adapt.md, "Diagnosis"). A depth gradient computed with a
//! wrong pose teaches the depth network the wrong shape. Before each step, the two poses of a
//! sample are therefore refined: starting from the network's estimate, a few iterations of
//! resilient back-propagation (Rprop, Riedmiller and Braun 1993: a step size per parameter that
//! grows while the gradient keeps its sign and halves when it flips, moving by the sign only)
//! minimise the photometric loss at the finest scale with the current depth held fixed, using the
//! loss's analytic pose gradient. The lowest-loss pose seen is kept. The depth step then uses the
//! refined poses, and the pose network is taught to predict them (an L2 pull of its outputs toward
//! the refined values) instead of following the loss gradient at its own estimate.

use crate::loss::{LossError, LossInputs, Pose6, SelfSupervisedLoss};

/// Starting step sizes: rotation in radians, translation as a fraction of the median depth.
const ROTATION_STEP: f32 = 1e-3;
const TRANSLATION_STEP: f32 = 2e-3;
const GROW: f32 = 1.2;
const SHRINK: f32 = 0.5;

/// The outcome of one refinement.
#[derive(Clone, Copy, Debug)]
pub struct RefinedPoses {
    pub poses: [Pose6; 2],
    /// Loss at the network's poses and at the refined ones.
    pub loss_before: f32,
    pub loss_after: f32,
}

/// Refines `inputs.poses` (two sources) over `iterations` Rprop steps; `median_depth` (in the
/// loss's depth units) scales the translation steps. `inputs` should hold the finest scale only
/// and no tie-break noise, so that the result is deterministic and cheap.
pub fn refine_poses(
    loss: &mut SelfSupervisedLoss,
    inputs: &LossInputs<'_>,
    iterations: usize,
    median_depth: f32,
) -> Result<RefinedPoses, LossError> {
    let Ok(start) = <[Pose6; 2]>::try_from(inputs.poses) else {
        return Err(LossError::Shape {
            field: "poses".into(),
            expected: "two poses (previous, next)".into(),
            got: inputs.poses.len().to_string(),
        });
    };
    let depth = if median_depth.is_finite() && median_depth > 0.0 { median_depth } else { 1.0 };
    let mut current = start;
    let mut steps = [[0f32; 6]; 2];
    for step in &mut steps {
        step[..3].fill(ROTATION_STEP);
        step[3..].fill(TRANSLATION_STEP * depth);
    }
    let mut previous_gradient = [[0f32; 6]; 2];
    let mut best = RefinedPoses { poses: start, loss_before: f32::NAN, loss_after: f32::INFINITY };
    for iteration in 0..=iterations {
        let out = loss.forward_backward(&LossInputs { poses: &current, ..*inputs })?;
        let value = out.photometric;
        if iteration == 0 {
            best.loss_before = value;
        }
        if value.is_finite() && value < best.loss_after {
            best.loss_after = value;
            best.poses = current;
        }
        if iteration == iterations {
            break;
        }
        for (s, pose) in current.iter_mut().enumerate() {
            for c in 0..6 {
                let g = out.grad_poses[s][c];
                if !g.is_finite() {
                    continue;
                }
                let agreement = g * previous_gradient[s][c];
                if agreement < 0.0 {
                    // Overshot: smaller step, and no move this time (iRprop−).
                    steps[s][c] *= SHRINK;
                    previous_gradient[s][c] = 0.0;
                    continue;
                }
                if agreement > 0.0 {
                    steps[s][c] *= GROW;
                }
                let delta = -g.signum() * steps[s][c];
                match c {
                    0..3 => pose.axis_angle[c] += delta,
                    _ => pose.translation[c - 3] += delta,
                }
                previous_gradient[s][c] = g;
            }
        }
    }
    if !best.loss_after.is_finite() {
        best.loss_after = best.loss_before;
    }
    Ok(best)
}
