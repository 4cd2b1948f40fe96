//! The adapter's per-step inputs beside the networks: the checks a batch passes before any
//! forward pass, the seeded tie-break noise of the photometric minimum, the distillation term
//! toward the teacher's depth, and velocity supervision of the pose network's translation.

use super::{AdaptError, StepOutcome, Triplet};
use crate::adapt::step;
use rand::SeedableRng;
use rand_pcg::Pcg64Mcg;
use std::sync::Arc;
use tch::{Kind, Tensor};

/// Checks a batch before any forward pass: every image has 3 × h × w values (an error: the
/// caller built it wrong) and every value and intrinsic is finite (a rejected step, counted:
/// a corrupt frame must not reach the weights).
pub(super) fn check_batch(
    batch: &[Arc<Triplet>],
    w: usize,
    h: usize,
) -> Result<Option<StepOutcome>, AdaptError> {
    let hw = w * h;
    for (i, t) in batch.iter().enumerate() {
        for (name, image) in [("prev", &t.prev), ("target", &t.target), ("next", &t.next)] {
            if image.len() != 3 * hw {
                return Err(AdaptError::Frame(format!(
                    "triplet {i} {name}: {} values, expected 3 x {h} x {w}",
                    image.len()
                )));
            }
            if let Some(p) = image.iter().position(|v| !v.is_finite()) {
                return Ok(Some(StepOutcome::Rejected(format!(
                    "non-finite input: triplet {i} (frame {}) {name} value {p}",
                    t.target_index
                ))));
            }
        }
        if t.intrinsics.iter().any(|v| !v.is_finite()) {
            return Ok(Some(StepOutcome::Rejected(format!(
                "non-finite intrinsics in triplet {i}"
            ))));
        }
    }
    Ok(None)
}

/// Fills `noise` with `len` samples of N(0, std²) determined by (seed, stream).
pub(super) fn fill_tie_break_noise(
    noise: &mut Vec<f32>,
    len: usize,
    std: f32,
    seed: u64,
    stream: u64,
) {
    noise.resize(len, 0.0);
    if std <= 0.0 {
        noise.fill(0.0);
        return;
    }
    let mut rng = Pcg64Mcg::seed_from_u64(seed ^ stream.wrapping_mul(0x9E37_79B9_7F4A_7C15));
    let Ok(normal) = rand_distr::Normal::new(0.0f32, std) else {
        noise.fill(0.0);
        return;
    };
    for v in noise.iter_mut() {
        *v = rand::RngExt::sample(&mut rng, normal);
    }
}

/// The distillation term: the scale-invariant log-depth loss (Eigen's, with λ = 1: the variance
/// of the log-depth difference) between the student's and the teacher's finest disparity over
/// the mask, per sample, averaged over the batch. Disparity maps to depth as in the loss:
/// depth = 1 / (1/max_depth + (1/min_depth − 1/max_depth) · disp).
pub(super) fn scale_invariant_distillation(
    student_disp: &Tensor,
    teacher_disp: &Tensor,
    mask: &Tensor,
    min_depth: f32,
    max_depth: f32,
) -> Tensor {
    let log_depth = |d: &Tensor| step::log_depth(d, min_depth, max_depth);
    step::scale_invariant_log_loss(&log_depth(student_disp), &log_depth(teacher_disp), mask, 1.0)
}

/// Velocity supervision (after PackNet-SfM's, from its description): the mean L1 distance
/// between the length of each predicted translation and the metres the odometry travelled
/// between the same two frames, over the pairs whose triplet carries a distance; `None` when no
/// triplet of the batch does. `translations` holds 3 values per row: rows 0..b are the
/// (prev, target) pairs, rows b..2b the (target, next) pairs.
pub(super) fn velocity_supervision(
    translations: &Tensor,
    batch: &[Arc<Triplet>],
) -> Result<Option<Tensor>, AdaptError> {
    let b = batch.len();
    let mut metres = vec![0f32; 2 * b];
    let mut known = vec![0f32; 2 * b];
    for (i, travel) in batch.iter().enumerate().filter_map(|(i, t)| Some((i, t.travel?))) {
        for (pair, &d) in travel.iter().enumerate() {
            if d.is_finite() {
                metres[pair * b + i] = d;
                known[pair * b + i] = 1.0;
            }
        }
    }
    let count: f32 = known.iter().sum();
    if count == 0.0 {
        return Ok(None);
    }
    let device = translations.device();
    let to_device = |v: &[f32]| Tensor::f_from_slice(v)?.f_to_device(device);
    let rows = translations.f_reshape([2 * b as i64, 3])?;
    // √(|t|² + ε): the length's gradient stays finite at a zero translation.
    let length = (rows.f_square()?.f_sum_dim_intlist([1i64].as_slice(), false, Kind::Float)?
        + 1e-12)
        .f_sqrt()?;
    let error = (length - to_device(&metres)?).f_abs()? * to_device(&known)?;
    Ok(Some(error.f_sum(Kind::Float)? / f64::from(count)))
}
