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
//!
//! With a mirrored start ([`Refinement::mirrored_start`]) a second walk starts from the network's
//! poses with both translations reversed, and the lower final loss wins. Over a short baseline a
//! translation and the rotation that compensates it explain nearly the same image motion as the
//! reversed translation with its own compensating rotation, and a walk of a few steps stays in
//! the basin it starts in: a pose network whose translation points backwards (a fresh head can
//! start that way, and on the kitchen it drifts there when the camera circles the table) would
//! otherwise be taught its own reversed direction by every refinement.

use crate::loss::{LossError, LossInputs, Pose6, SelfSupervisedLoss};

/// The first rotation step by default, radians. Rprop grows a step by [`GROW`] per iteration
/// while the gradient keeps its sign, so a walk of n iterations moves a rotation coordinate by at
/// most step·(GROWⁿ − 1)/(GROW − 1): 0.95° for 8 iterations from 1e-3.
pub const DEFAULT_FIRST_ROTATION_STEP: f32 = 1e-3;
/// The first translation step, as a fraction of the median depth.
const TRANSLATION_STEP: f32 = 2e-3;
const GROW: f32 = 1.2;
const SHRINK: f32 = 0.5;

/// How poses are refined: Rprop iterations per walk (0: off), whether a second walk starts
/// from the network's translations reversed, and the first rotation step (radians).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Refinement {
    pub iterations: usize,
    pub mirrored_start: bool,
    pub first_rotation_step: f32,
}

impl Refinement {
    /// `iterations` per walk from the network's poses only, at the default first steps.
    pub fn one_walk(iterations: usize) -> Self {
        Self { iterations, mirrored_start: false, first_rotation_step: DEFAULT_FIRST_ROTATION_STEP }
    }
}

/// The outcome of one refinement.
#[derive(Clone, Copy, Debug)]
pub struct RefinedPoses {
    pub poses: [Pose6; 2],
    /// Loss at the network's poses and at the refined ones.
    pub loss_before: f32,
    pub loss_after: f32,
    /// The walk from the reversed translations won.
    pub mirrored: bool,
    /// The median depth (loss units) that scaled the translation steps.
    pub median_depth: f32,
}

/// Where a refinement starts: the network's poses, with their rotations replaced by a measured
/// prior (a gyro's, [`crate::adapt::Triplet::rotation_prior`]) when there is one. The pose
/// network of a hand-held indoor sequence predicts a fraction of the true rotation, and over a
/// short baseline the photometric loss lets a sideways translation stand in for the rest
/// (docs/adapt.md, "A gyro starts the rotation").
pub fn start_at_rotation_prior(network: [Pose6; 2], prior: Option<[[f32; 3]; 2]>) -> [Pose6; 2] {
    let Some(rotations) = prior else { return network };
    let mut start = network;
    for (pose, axis_angle) in start.iter_mut().zip(rotations) {
        if axis_angle.iter().all(|v| v.is_finite()) {
            pose.axis_angle = axis_angle;
        }
    }
    start
}

/// Refines `inputs.poses` (two sources) as `refinement` says; `median_depth` (in the loss's
/// depth units) scales the translation steps. `inputs` should hold the finest scale only
/// and no tie-break noise, so that the result is deterministic and cheap.
pub fn refine_poses(
    loss: &mut SelfSupervisedLoss,
    inputs: &LossInputs<'_>,
    refinement: Refinement,
    median_depth: f32,
) -> Result<RefinedPoses, LossError> {
    let Ok(start) = <[Pose6; 2]>::try_from(inputs.poses) else {
        return Err(LossError::Shape {
            field: "poses".into(),
            expected: "two poses (previous, next)".into(),
            got: inputs.poses.len().to_string(),
        });
    };
    refine_poses_with(start, refinement, median_depth, |poses| {
        let out = loss.forward_backward(&LossInputs { poses, ..*inputs })?;
        Ok((out.photometric, [out.grad_poses[0], out.grad_poses[1]]))
    })
}

/// The refinement itself, on any evaluator of the loss: `evaluate(poses)` returns the
/// photometric loss at the finest scale and its gradient with respect to each pose (axis-angle,
/// translation). The CPU path evaluates with our CPU loss ([`refine_poses`]), the CUDA path with
/// the fused kernels on the device; both walk the same iterations.
pub fn refine_poses_with<E>(
    start: [Pose6; 2],
    refinement: Refinement,
    median_depth: f32,
    mut evaluate: impl FnMut(&[Pose6]) -> Result<(f32, [[f32; 6]; 2]), E>,
) -> Result<RefinedPoses, E> {
    let first = walk(start, refinement, median_depth, &mut evaluate)?;
    if !refinement.mirrored_start || refinement.iterations == 0 {
        return Ok(first);
    }
    let reversed = start.map(|p| Pose6 { translation: p.translation.map(|v| -v), ..p });
    let second = walk(reversed, refinement, median_depth, &mut evaluate)?;
    Ok(if second.loss_after < first.loss_after {
        RefinedPoses { loss_before: first.loss_before, mirrored: true, ..second }
    } else {
        first
    })
}

/// Translation-length factors searched by [`translation_length_factor`]: 2^(i/8) for i in
/// −16..=16, a quarter to four times the start.
const LENGTH_SEARCH_STEPS: i32 = 16;
const LENGTH_SEARCH_PER_OCTAVE: f32 = 8.0;

/// The factor on both translations of `poses` (rotations kept, depth held fixed) at which
/// `evaluate` (the photometric loss) is lowest, searched on a log grid from ¼× to 4× and refined
/// by a parabola through the best point and its neighbours. This is the translation length the
/// depth's own scale implies: Rprop moves each coordinate by small steps and cannot change the
/// length by much, where a start far off in length (a pose network asked for a longer baseline
/// than it learnt) needs a search along the direction. Used to measure metres per depth unit
/// against an odometry (`--metric-scale speed`).
pub fn translation_length_factor<E>(
    poses: [Pose6; 2],
    mut evaluate: impl FnMut(&[Pose6]) -> Result<f32, E>,
) -> Result<f32, E> {
    let exponent = |i: i32| i as f32 / LENGTH_SEARCH_PER_OCTAVE;
    let mut losses = Vec::with_capacity((2 * LENGTH_SEARCH_STEPS + 1) as usize);
    for i in -LENGTH_SEARCH_STEPS..=LENGTH_SEARCH_STEPS {
        let factor = exponent(i).exp2();
        let scaled = poses.map(|p| Pose6 { translation: p.translation.map(|v| v * factor), ..p });
        let value = evaluate(&scaled)?;
        losses.push(if value.is_finite() { value } else { f32::INFINITY });
    }
    let best = (0..losses.len()).min_by(|&a, &b| losses[a].total_cmp(&losses[b])).unwrap_or(0);
    let mut e = exponent(best as i32 - LENGTH_SEARCH_STEPS);
    if best > 0 && best + 1 < losses.len() {
        let (l, c, r) = (losses[best - 1], losses[best], losses[best + 1]);
        let curvature = l - 2.0 * c + r;
        if curvature > 0.0 && curvature.is_finite() {
            e += 0.5 * (l - r) / curvature / LENGTH_SEARCH_PER_OCTAVE;
        }
    }
    Ok(e.exp2())
}

/// One Rprop walk from `start` (`refinement`'s iterations and first rotation step); the
/// lowest-loss poses seen are kept.
fn walk<E>(
    start: [Pose6; 2],
    refinement: Refinement,
    median_depth: f32,
    evaluate: &mut impl FnMut(&[Pose6]) -> Result<(f32, [[f32; 6]; 2]), E>,
) -> Result<RefinedPoses, E> {
    let depth = if median_depth.is_finite() && median_depth > 0.0 { median_depth } else { 1.0 };
    let iterations = refinement.iterations;
    let mut current = start;
    let mut steps = [[0f32; 6]; 2];
    for step in &mut steps {
        step[..3].fill(refinement.first_rotation_step);
        step[3..].fill(TRANSLATION_STEP * depth);
    }
    let mut previous_gradient = [[0f32; 6]; 2];
    let mut best = RefinedPoses {
        poses: start,
        loss_before: f32::NAN,
        loss_after: f32::INFINITY,
        mirrored: false,
        median_depth,
    };
    for iteration in 0..=iterations {
        let (value, gradient) = evaluate(&current)?;
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
                let g = gradient[s][c];
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::loss::{LossConfig, target_pyramid};

    const W: usize = 64;
    const H: usize = 48;

    fn walk_of(iterations: usize) -> Refinement {
        Refinement::one_walk(iterations)
    }

    /// A smooth planar RGB texture sampled at x + shift.
    fn texture(shift: f32) -> Vec<f32> {
        let mut out = vec![0f32; 3 * W * H];
        for c in 0..3 {
            for y in 0..H {
                for x in 0..W {
                    let (u, v) = (x as f32 + shift, y as f32);
                    out[c * W * H + y * W + x] = 0.5
                        + 0.2 * (0.31 * u + 0.7 * c as f32).sin()
                        + 0.15 * (0.23 * v + 0.17 * u).cos();
                }
            }
        }
        out
    }

    /// A fronto-parallel plane at depth 5 seen by a camera that translates 0.2 along x between
    /// frames: with fx = 50 the sources are the target shifted by 2 px.
    const FX: f32 = 50.0;
    const DEPTH: f32 = 5.0;
    const TRUE_TX: f32 = 0.2;

    struct PlaneScene {
        target: Vec<f32>,
        prev: Vec<f32>,
        next: Vec<f32>,
        disparity: Vec<f32>,
        pyramid: Vec<Vec<f32>>,
        noise: Vec<f32>,
    }

    impl PlaneScene {
        fn new() -> Self {
            let shift = FX * TRUE_TX / DEPTH;
            let config = LossConfig::default();
            let (min_disp, max_disp) = (1.0 / config.max_depth, 1.0 / config.min_depth);
            let target = texture(0.0);
            Self {
                pyramid: target_pyramid(&target, W, H, 1),
                target,
                prev: texture(shift),
                next: texture(-shift),
                disparity: vec![(1.0 / DEPTH - min_disp) / (max_disp - min_disp); W * H],
                noise: vec![0f32; 2 * W * H],
            }
        }

        /// Refines from both poses translating by `start_tx` along x.
        fn refine(&self, start_tx: f32, refinement: Refinement) -> (RefinedPoses, [Pose6; 2]) {
            self.refine_from([0.0; 3], start_tx, refinement)
        }

        /// Refines from both poses rotated by `axis_angle` and translating by `start_tx` along x.
        fn refine_from(
            &self,
            axis_angle: [f32; 3],
            start_tx: f32,
            refinement: Refinement,
        ) -> (RefinedPoses, [Pose6; 2]) {
            let pose = |invert| Pose6 { axis_angle, translation: [start_tx, 0.0, 0.0], invert };
            let start = [pose(true), pose(false)];
            let sources: [&[f32]; 2] = [&self.prev, &self.next];
            let inputs = LossInputs {
                width: W,
                height: H,
                target: &self.target,
                sources: &sources,
                disparities: &[&self.disparity],
                target_pyramid: &[&self.pyramid[0]],
                poses: &start,
                intrinsics: [FX, FX, W as f32 / 2.0, H as f32 / 2.0],
                tie_break_noise: Some(&self.noise),
            };
            let mut loss = SelfSupervisedLoss::new(LossConfig::default());
            (refine_poses(&mut loss, &inputs, refinement, DEPTH).unwrap(), start)
        }
    }

    #[test]
    fn refinement_moves_a_wrong_translation_toward_the_true_one() {
        let scene = PlaneScene::new();
        let shift = FX * TRUE_TX / DEPTH;
        let (refined, start) = scene.refine(0.05, walk_of(16));
        assert!(
            refined.loss_after < 0.5 * refined.loss_before,
            "{} -> {}",
            refined.loss_before,
            refined.loss_after
        );
        // A small rotation about y and a translation along x move the image centre alike
        // (by fx·(ω_y + t_x / Z)); refinement may use either, so check the motion it explains.
        let centre_motion = |p: &Pose6| FX * (p.axis_angle[1] + p.translation[0] / DEPTH);
        for p in &refined.poses {
            let (now, before) = (centre_motion(p) - shift, centre_motion(&start[1]) - shift);
            assert!(now.abs() < 0.5 * before.abs(), "centre motion error {now} px vs {before} px");
        }
        // Zero iterations keep the network's poses.
        let (kept, _) = scene.refine(0.05, walk_of(0));
        assert_eq!(kept.poses[1].translation, start[1].translation);
        assert_eq!(kept.loss_before, kept.loss_after);
    }

    #[test]
    fn the_first_rotation_step_sets_how_far_a_walk_reaches() {
        // Both network poses have the true translation and a 1.5° roll too many. Eight
        // iterations move a coordinate by at most 0.95° from the default first step, 1.9° from
        // twice that. The loss takes the per-pixel minimum over the two sources, so once one
        // pose is right the other barely counts: the walk's reach is the best pose's error.
        let scene = PlaneScene::new();
        let roll = 1.5f32.to_radians();
        let best_error_deg = |step: f32| {
            let refinement = Refinement { first_rotation_step: step, ..walk_of(8) };
            let (refined, _) = scene.refine_from([0.0, 0.0, roll], TRUE_TX, refinement);
            let errors = refined.poses.map(|p| p.axis_angle[2].abs().to_degrees());
            errors[0].min(errors[1])
        };
        let short = best_error_deg(DEFAULT_FIRST_ROTATION_STEP);
        let long = best_error_deg(2.0 * DEFAULT_FIRST_ROTATION_STEP);
        assert!(short > 0.4, "the default walk should fall short: {short}° left");
        assert!(long < 0.3, "twice the first step should reach: {long}° left");
    }

    #[test]
    fn a_mirrored_start_escapes_a_reversed_translation() {
        // The network's translation points the wrong way and is too large for a short walk to
        // turn round: the walk from the reversed start ends lower.
        let scene = PlaneScene::new();
        let (one_way, _) = scene.refine(-TRUE_TX, walk_of(4));
        let both = Refinement { mirrored_start: true, ..walk_of(4) };
        let (mirrored, _) = scene.refine(-TRUE_TX, both);
        assert!(!one_way.mirrored);
        assert!(mirrored.mirrored, "the reversed start should win: {mirrored:?}");
        assert!(
            mirrored.loss_after < 0.5 * one_way.loss_after,
            "mirrored {} vs one walk {}",
            mirrored.loss_after,
            one_way.loss_after
        );
        assert_eq!(mirrored.loss_before, one_way.loss_before, "both start at the network's poses");
        for p in &mirrored.poses {
            assert!(p.translation[0] > 0.0, "now points along the true motion: {p:?}");
        }
    }
}
