//! The self-supervised step, written once for its two drivers: offline training
//! (`crate::train`: datasets, epochs, optional supervised terms) and the online
//! [`super::Adapter`] (live triplets with replay, distillation, guards). Each driver adds its own
//! terms between the pieces below; what every step does is here:
//!
//! 1. [`forward`]: a batch of triplets normalised for the depth network's architecture, depth on
//!    the targets and pose on the (prev, target) and (target, next) pairs, with autograd;
//! 2. [`sample_loss`]: one sample's self-supervised loss and its gradients on the host, with the
//!    verdict on non-finite values;
//! 3. [`scale_invariant_log_loss`] over [`log_depth`]: Eigen's scale-invariant log-depth loss
//!    (λ = 0.85 against ground truth in `train`, λ = 1 against a teacher when distilling);
//! 4. [`apply`]: the backward pass of the step's objective, one read-back that checks every
//!    gradient is finite, and a step of each [`Adam`].
//!
//! [`StepOutcome`] is what a step did; [`select_variables`] picks the variables an optimiser
//! trains.

mod adam;

pub use adam::Adam;

use super::host_batch::stack_planar;
use crate::loss::{LossError, LossInputs, LossOutputs, SelfSupervisedLoss};
use crate::model::ModelError;
use crate::model::network::{DepthNetwork, PoseNetwork};
use tch::{Kind, TchError, Tensor};

/// What one step did.
#[derive(Clone, Debug, PartialEq)]
pub enum StepOutcome {
    Accepted,
    /// Rejected by a guard (non-finite values); the reason says where.
    Rejected(String),
    SkippedStationary,
    /// Accepted, then the held-back check rolled the weights back.
    RolledBack,
}

/// The forward pass of one batch of B triplets: the normalised inputs `[B, 3, H, W]`, the
/// disparities per scale `[B, 1, H >> s, W >> s]`, and the pose rows `[2B, 3]` (rows `0..B` the
/// (prev, target) pairs, rows `B..2B` the (target, next) pairs; see [`super::host_batch`]).
pub struct TripletForward {
    pub x_prev: Tensor,
    pub x_target: Tensor,
    pub x_next: Tensor,
    pub disps: Vec<Tensor>,
    pub rot: Tensor,
    pub trans: Tensor,
}

/// Planar RGB images in [0, 1] (3 x `h` x `w` each) stacked and normalised for `depth`'s
/// architecture, on its device, without gradients.
pub fn normalised(
    depth: &DepthNetwork,
    images: &[&[f32]],
    w: usize,
    h: usize,
) -> Result<Tensor, TchError> {
    let (mean, std) = depth.arch().normalisation();
    let x = stack_planar(images, 3, w, h, depth.device())?;
    Ok(((x - f64::from(mean[0])) / f64::from(std[0])).set_requires_grad(false))
}

/// Depth on the targets and pose on both pairs of each triplet, with autograd. `train` puts the
/// networks in training mode (batch-norm statistics update), as offline training does.
pub fn forward(
    depth: &DepthNetwork,
    pose: &PoseNetwork,
    [prev, target, next]: [&[&[f32]]; 3],
    w: usize,
    h: usize,
    train: bool,
) -> Result<TripletForward, ModelError> {
    let x_target = normalised(depth, target, w, h)?;
    let x_prev = normalised(depth, prev, w, h)?;
    let x_next = normalised(depth, next, w, h)?;
    let disps = depth.try_forward_t(&x_target, train)?;
    let pairs = Tensor::f_cat(
        &[Tensor::f_cat(&[&x_prev, &x_target], 1)?, Tensor::f_cat(&[&x_target, &x_next], 1)?],
        0,
    )?;
    let (rot, trans) = pose.try_forward_t(&pairs, train)?;
    Ok(TripletForward { x_prev, x_target, x_next, disps, rot, trans })
}

/// One sample's self-supervised loss with its gradients, or the reason the step must be
/// rejected (a non-finite network output or loss); other loss errors are errors.
pub fn sample_loss<'l>(
    loss: &'l mut SelfSupervisedLoss,
    inputs: &LossInputs,
) -> Result<Result<&'l LossOutputs, String>, LossError> {
    let out = match loss.forward_backward(inputs) {
        Ok(out) => out,
        Err(LossError::NonFinite { field, index }) => {
            return Ok(Err(format!("non-finite network output: {field} index {index}")));
        }
        Err(e) => return Err(e),
    };
    if !out.total.is_finite() {
        return Ok(Err("non-finite loss".into()));
    }
    Ok(Ok(out))
}

/// Log depth of a sigmoid disparity, mapped as the loss maps it:
/// depth = 1 / (1/max_depth + (1/min_depth − 1/max_depth) · disp).
pub fn log_depth(disp: &Tensor, min_depth: f32, max_depth: f32) -> Tensor {
    let (min_disp, max_disp) = (1.0 / f64::from(max_depth), 1.0 / f64::from(min_depth));
    -((disp * (max_disp - min_disp)) + min_disp).log()
}

/// Eigen's scale-invariant log loss `mean(g²) − λ·mean(g)²` with `g = log_pred − log_target`
/// over the mask's pixels, per sample (`[B, 1, H, W]`), averaged over the batch. λ = 1 makes it
/// the variance of the log-depth difference.
pub fn scale_invariant_log_loss(
    log_pred: &Tensor,
    log_target: &Tensor,
    mask: &Tensor,
    lambda: f64,
) -> Tensor {
    let diff = (log_pred - log_target) * mask;
    let dims = [1i64, 2, 3];
    let count = mask.sum_dim_intlist(dims.as_slice(), false, Kind::Float).clamp_min(1.0);
    let mean = diff.sum_dim_intlist(dims.as_slice(), false, Kind::Float) / &count;
    let mean_sq = diff.square().sum_dim_intlist(dims.as_slice(), false, Kind::Float) / &count;
    (mean_sq - mean.square() * lambda).mean(Kind::Float)
}

/// The backward pass of `objective`, then, when every gradient of every optimiser is finite
/// (one read-back for all of them), a step of each optimiser; otherwise the reason the step is
/// rejected, with the weights untouched. The caller clears the gradients ([`Adam::zero_grad`])
/// whatever the verdict.
pub fn apply(objective: &Tensor, optimisers: &mut [&mut Adam]) -> Result<Option<String>, TchError> {
    objective.f_backward()?;
    let mut sums = Vec::new();
    for optimiser in optimisers.iter() {
        optimiser.push_gradient_sums(&mut sums)?;
    }
    let magnitude = match sums.is_empty() {
        true => 0.0,
        false => Tensor::f_stack(&sums, 0)?.f_sum(Kind::Double)?.f_double_value(&[])?,
    };
    if !magnitude.is_finite() {
        return Ok(Some("non-finite parameter gradient".into()));
    }
    for optimiser in optimisers.iter_mut() {
        optimiser.step();
    }
    Ok(None)
}

/// Variables of `vs` sorted by name; those `adapt` rejects stop requiring gradients (buffers
/// such as batch-norm statistics never require them and are skipped).
pub fn select_variables(
    vs: &tch::nn::VarStore,
    adapt: impl Fn(&str, &Tensor) -> bool,
) -> Vec<(String, Tensor)> {
    let mut all: Vec<(String, Tensor)> = vs.variables().into_iter().collect();
    all.sort_by(|a, b| a.0.cmp(&b.0));
    let mut chosen = Vec::new();
    for (name, var) in all {
        if !var.requires_grad() {
            continue;
        }
        if adapt(&name, &var) {
            chosen.push((name, var));
        } else {
            let _ = var.set_requires_grad(false);
        }
    }
    chosen
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scale_invariant_loss_is_the_masked_variance_at_lambda_one() {
        // Per-sample log differences 0, 1, 2 (masked-out pixel: 7): variance 2/3, mean² 1.
        let pred = Tensor::from_slice(&[0f32, 1.0, 2.0, 7.0]).reshape([1, 1, 2, 2]);
        let target = Tensor::zeros([1, 1, 2, 2], (Kind::Float, tch::Device::Cpu));
        let mask = Tensor::from_slice(&[1f32, 1.0, 1.0, 0.0]).reshape([1, 1, 2, 2]);
        let variance = scale_invariant_log_loss(&pred, &target, &mask, 1.0).double_value(&[]);
        assert!((variance - 2.0 / 3.0).abs() < 1e-6, "{variance}");
        let eigen = scale_invariant_log_loss(&pred, &target, &mask, 0.85).double_value(&[]);
        assert!((eigen - (5.0 / 3.0 - 0.85)).abs() < 1e-6, "{eigen}");
    }

    #[test]
    fn a_non_finite_gradient_is_rejected_and_leaves_the_weights_untouched() {
        let var = Tensor::from_slice(&[1f32, 2.0]).set_requires_grad(true);
        let mut adam = Adam::new(vec![("w".into(), var.shallow_clone())], 0.1);
        let objective = (&var * f64::NAN).sum(Kind::Float);
        let verdict = apply(&objective, &mut [&mut adam]).expect("backward");
        assert_eq!(verdict.as_deref(), Some("non-finite parameter gradient"));
        assert_eq!(Vec::<f32>::try_from(&var.detach()).expect("values"), [1.0, 2.0]);
        adam.zero_grad();
        let objective = (&var * &var).sum(Kind::Float);
        assert_eq!(apply(&objective, &mut [&mut adam]).expect("backward"), None);
        let after = Vec::<f32>::try_from(&var.detach()).expect("values");
        assert!(after[0] < 1.0 && after[1] < 2.0, "Adam moved downhill: {after:?}");
    }
}
