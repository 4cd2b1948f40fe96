//! [`Adapter`]: the online training loop. One step takes the live triplet plus a few replayed
//! ones, runs depth and pose forward in libtorch with autograd, copies the disparities and poses
//! to the host, evaluates our CPU Monodepth2 loss and its analytic gradients (or, with the CUDA
//! [`LossBackend`], our fused kernels on the device tensors, no host copies), adds the
//! scale-invariant distillation term (in libtorch), backpropagates
//! `Σ output · grad + w · L_distill` through libtorch and takes an Adam step.
//!
//! Guards: a non-finite input, loss or parameter gradient rejects the step (counted, weights
//! untouched); the self-supervised loss of held-back triplets is compared with the frozen
//! starting model's every few steps and the weights roll back to the last good ones when it
//! worsens beyond a threshold. Checkpoints (weights, Adam moments, EMA teacher, counters) are
//! single safetensors files written atomically; [`Adapter::resume`] continues from one.

mod anchor;
mod checkpoint;
mod inputs;
mod refine;
mod scoring;
mod stats;
mod tensors;

pub use checkpoint::checkpoint_accepted_steps;
use inputs::{
    check_batch, fill_tie_break_noise, scale_invariant_distillation, velocity_supervision,
};
use refine::SamplePoses;
pub use stats::{AdaptStats, FreshScore};
use tensors::{copy_from_stored, stored, to_host};

use super::AdaptError;
use super::config::{AdaptConfig, TeacherKind};
use super::host_batch::{HostGradients, HostOutputs, tensor_to_host};
use super::loss_backend::{DeviceBatch, LossBackend, LossBackendKind};
use super::publish::WeightsPublisher;
use super::serve_guard::{ServeGuard, Served};
use super::step::{self, Adam, StepOutcome, TripletForward, select_variables};
use super::triplet::{NetFrame, ReplayBuffer, Triplet, TripletSelector, lengths};
use crate::loss::{LossConfig, LossInputs, Pose6, SelfSupervisedLoss, target_pyramid};
use crate::model::network::{DepthNetwork, PoseNetwork};
use rand::SeedableRng;
use rand_pcg::Pcg64Mcg;
use std::path::PathBuf;
use std::sync::Arc;
use tch::{Kind, Tensor};

/// The adapted student, or the frozen start while the never-worse guard (when on) serves it;
/// a free function so that `publish` can borrow the publisher mutably beside it.
fn served_network<'a>(
    guard_on: bool,
    guard: &ServeGuard,
    student: &'a DepthNetwork,
    anchor: &'a DepthNetwork,
) -> &'a DepthNetwork {
    match (guard_on, guard.serving()) {
        (true, Served::Frozen) => anchor,
        _ => student,
    }
}

/// The online adaptation state: student depth and pose networks, teacher(s), optimisers,
/// triplet selection, replay and held-back sets, counters.
pub struct Adapter {
    config: AdaptConfig,
    student: DepthNetwork,
    pose: PoseNetwork,
    /// Frozen copy of the starting depth network (frozen teacher and rollback reference).
    anchor: DepthNetwork,
    /// The anchor's values of the adapted depth variables, in the optimiser's order (θ₀ of the
    /// forgetting guard).
    anchor_values: Vec<Tensor>,
    /// EMA teacher, when configured.
    ema: Option<DepthNetwork>,
    good_student: DepthNetwork,
    good_pose: PoseNetwork,
    adam: Adam,
    pose_adam: Adam,
    loss: SelfSupervisedLoss,
    teacher_loss: SelfSupervisedLoss,
    /// The loss at the finest scale only, for pose refinement (its own workspace), and the
    /// all-zero tie-break noise it runs with (so that its numbers do not depend on how often it
    /// ran before).
    refine_loss: SelfSupervisedLoss,
    zero_noise: Vec<f32>,
    selector: TripletSelector,
    replay: ReplayBuffer,
    holdout: Vec<Arc<Triplet>>,
    live: Option<Arc<Triplet>>,
    rng: Pcg64Mcg,
    publisher: Option<WeightsPublisher>,
    checkpoint_path: Option<PathBuf>,
    stats: AdaptStats,
    /// Tie-break noise of the auto-mask, drawn per (seed, step, sample) so that a resumed run
    /// continues with the same numbers.
    noise: Vec<f32>,
    /// Where the loss runs: CPU on host copies, or the fused CUDA kernels on device tensors.
    backend: LossBackend,
    /// The never-worse guard and the live triplet it has not scored yet.
    serve: ServeGuard,
    unscored: Option<Arc<Triplet>>,
}

impl std::fmt::Debug for Adapter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Adapter").field("stats", &self.stats).finish()
    }
}

impl Adapter {
    /// An adapter fine-tuning `student` with `pose` (both on the same device).
    pub fn new(
        config: AdaptConfig,
        student: DepthNetwork,
        pose: PoseNetwork,
    ) -> Result<Self, AdaptError> {
        config.validate()?;
        tch::manual_seed(config.seed as i64);
        let arch = student.arch();
        let device = student.device();
        let copy_depth = |src: &DepthNetwork| -> Result<DepthNetwork, AdaptError> {
            let mut net = DepthNetwork::new(arch, device);
            net.copy_weights_from(src)?;
            for (_, var) in net.var_store().variables() {
                let _ = var.set_requires_grad(false);
            }
            Ok(net)
        };
        let anchor = copy_depth(&student)?;
        let good_student = copy_depth(&student)?;
        let ema = match (config.distill.enabled, config.distill.teacher) {
            (true, TeacherKind::Ema) => Some(copy_depth(&student)?),
            _ => None,
        };
        let mut good_pose = PoseNetwork::new(pose.arch(), device);
        good_pose.copy_weights_from(&pose)?;
        let layers = config.layers;
        let depth_vars =
            select_variables(student.var_store(), |name, var| layers.adapts(name, var.dim()));
        let pose_vars = select_variables(pose.var_store(), |_, _| true);
        let anchor_all = anchor.var_store().variables();
        let anchor_values = depth_vars
            .iter()
            .map(|(name, _)| {
                anchor_all.get(name).map(Tensor::shallow_clone).ok_or_else(|| {
                    AdaptError::Frame(format!("start model has no variable `{name}`"))
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let adam = Adam::new(depth_vars, config.learning_rate);
        let pose_adam = Adam::new(pose_vars, config.pose_learning_rate);
        let loss_config = LossConfig { seed: config.seed, ..config.loss };
        let teacher_config = LossConfig { automask: false, seed: config.seed ^ 1, ..config.loss };
        let backend = LossBackend::new(device, &loss_config)?;
        let g = config.guards;
        Ok(Self {
            serve: ServeGuard::new(
                g.serve_window,
                g.serve_min_samples,
                g.serve_tolerance,
                g.serve_trust_deviation,
                g.serve_evidence_margin,
            ),
            unscored: None,
            selector: TripletSelector::with_parallax_target(
                config.k_min,
                config.k_max,
                config.motion_threshold,
                config.target_parallax_px,
            )
            .with_gyro_target(config.target_parallax_px_with_gyro),
            replay: ReplayBuffer::new(config.replay_capacity),
            holdout: Vec::new(),
            live: None,
            rng: Pcg64Mcg::seed_from_u64(config.seed),
            loss: SelfSupervisedLoss::new(loss_config),
            refine_loss: SelfSupervisedLoss::new(loss_config),
            zero_noise: Vec::new(),
            teacher_loss: SelfSupervisedLoss::new(teacher_config),
            adam,
            pose_adam,
            anchor,
            anchor_values,
            ema,
            good_student,
            good_pose,
            student,
            pose,
            config,
            publisher: None,
            checkpoint_path: None,
            stats: AdaptStats::default(),
            noise: Vec::new(),
            backend,
        })
    }

    /// Publishes weights to a live engine every `publish_every` accepted steps.
    pub fn with_publisher(mut self, publisher: WeightsPublisher) -> Self {
        self.publisher = Some(publisher);
        self
    }

    /// Checkpoints to `path` every `checkpoint_every` accepted steps (and on [`Self::finish`]).
    pub fn with_checkpoint(mut self, path: impl Into<PathBuf>) -> Self {
        self.checkpoint_path = Some(path.into());
        self
    }

    pub fn config(&self) -> &AdaptConfig {
        &self.config
    }

    pub fn stats(&self) -> &AdaptStats {
        &self.stats
    }

    /// Where the loss runs (CPU, or the fused CUDA kernels when the student is on CUDA).
    pub fn loss_backend(&self) -> LossBackendKind {
        self.backend.kind()
    }

    pub fn student(&self) -> &DepthNetwork {
        &self.student
    }

    pub fn pose(&self) -> &PoseNetwork {
        &self.pose
    }

    /// Frames for which no triplet formed because the camera barely moved.
    pub fn stationary_frames(&self) -> u64 {
        self.selector.stationary
    }

    /// Feeds the newest frame; returns true when it completed a new live triplet (which then
    /// goes to the held-back set or, after being trained on, to the replay buffer).
    pub fn observe(&mut self, frame: NetFrame) -> bool {
        let Some(triplet) = self.selector.push(frame) else {
            return false;
        };
        self.stats.triplets += 1;
        self.stats.rotation_priors += u64::from(triplet.rotation_prior.is_some());
        let triplet = Arc::new(triplet);
        let guards = self.config.guards;
        if guards.rollback
            && self.holdout.len() < guards.holdout_size
            && (self.stats.triplets - 1).is_multiple_of(guards.holdout_every as u64)
        {
            self.holdout.push(triplet);
            return false;
        }
        if self.config.guards.serve_guard {
            self.unscored = Some(Arc::clone(&triplet));
        }
        if let Some(previous) = self.live.replace(triplet) {
            self.replay.push(previous);
        }
        true
    }

    /// Whether a live triplet is available to train on.
    pub fn has_live(&self) -> bool {
        self.live.is_some()
    }

    /// One step on the live triplet plus `replay_per_step` replayed ones; `None` before the
    /// first triplet.
    pub fn step(&mut self) -> Result<Option<StepOutcome>, AdaptError> {
        let Some(live) = self.live.clone() else {
            return Ok(None);
        };
        if let Some(fresh) = self.unscored.take() {
            self.score_fresh(&fresh)?;
        }
        let mut batch = vec![live];
        batch.extend(self.replay.sample(&mut self.rng, self.config.replay_per_step));
        self.step_on(&batch).map(Some)
    }

    /// One step on an explicit batch (the first triplet is the live one for the stationary
    /// rule). Guards reject non-finite values; the weights change only on `Accepted`.
    pub fn step_on(&mut self, batch: &[Arc<Triplet>]) -> Result<StepOutcome, AdaptError> {
        let outcome = self.train(batch);
        self.adam.zero_grad();
        self.pose_adam.zero_grad();
        let outcome = outcome?;
        match &outcome {
            StepOutcome::Rejected(_) => self.stats.rejected += 1,
            StepOutcome::SkippedStationary => self.stats.skipped_stationary += 1,
            StepOutcome::Accepted | StepOutcome::RolledBack => {}
        }
        if outcome != StepOutcome::Accepted {
            return Ok(outcome);
        }
        self.stats.steps += 1;
        let steps = self.stats.steps;
        let mut outcome = outcome;
        if self.config.guards.rollback
            && steps.is_multiple_of(self.config.guards.check_every)
            && self.check_holdout()?
        {
            outcome = StepOutcome::RolledBack;
        }
        if steps.is_multiple_of(self.config.publish_every) {
            self.publish()?;
        }
        if self.config.checkpoint_every > 0 && steps.is_multiple_of(self.config.checkpoint_every) {
            self.checkpoint()?;
        }
        Ok(outcome)
    }

    /// The weights the live path should use: the adapted student, or the frozen start weights
    /// while the never-worse guard finds adaptation no better on the current scene.
    pub fn served(&self) -> &DepthNetwork {
        served_network(self.config.guards.serve_guard, &self.serve, &self.student, &self.anchor)
    }

    /// Publishes the served weights now (if a publisher is attached).
    pub fn publish(&mut self) -> Result<(), AdaptError> {
        let served = served_network(
            self.config.guards.serve_guard,
            &self.serve,
            &self.student,
            &self.anchor,
        );
        if let Some(publisher) = self.publisher.as_mut() {
            publisher.publish(served)?;
            self.stats.published += 1;
        }
        Ok(())
    }

    /// Shutdown: a final publish and checkpoint.
    pub fn finish(&mut self) -> Result<(), AdaptError> {
        self.publish()?;
        self.checkpoint()
    }

    /// Disparity (scale 0, network size) of a frame with the served weights ([`Self::served`]).
    pub fn predict(&self, frame: &NetFrame) -> Result<Vec<f32>, AdaptError> {
        let x = self.normalised(&[&frame.planar[..]], frame.width, frame.height)?;
        let disp = tch::no_grad(|| self.served().try_forward_t(&x, false))?;
        to_host(&disp[0])
    }

    /// Disparities (scale 0) of a frame with the adapted student and with the frozen start
    /// weights, whatever is served (for diagnosis).
    pub fn predict_adapted_and_frozen(
        &self,
        frame: &NetFrame,
    ) -> Result<(Vec<f32>, Vec<f32>), AdaptError> {
        let x = self.normalised(&[&frame.planar[..]], frame.width, frame.height)?;
        let adapted = tch::no_grad(|| self.student.try_forward_t(&x, false))?;
        let frozen = tch::no_grad(|| self.anchor.try_forward_t(&x, false))?;
        Ok((to_host(&adapted[0])?, to_host(&frozen[0])?))
    }

    fn normalised(&self, images: &[&[f32]], w: usize, h: usize) -> Result<Tensor, AdaptError> {
        Ok(step::normalised(&self.student, images, w, h)?)
    }

    fn train(&mut self, batch: &[Arc<Triplet>]) -> Result<StepOutcome, AdaptError> {
        let Some(first) = batch.first() else {
            return Err(AdaptError::Frame("empty batch".into()));
        };
        let (w, h) = (first.width, first.height);
        let hw = w * h;
        if batch.iter().any(|t| (t.width, t.height) != (w, h)) {
            return Err(AdaptError::Frame("triplets of different sizes in one batch".into()));
        }
        if let Some(rejected) = check_batch(batch, w, h)? {
            return Ok(rejected);
        }
        let b = batch.len();
        let targets: Vec<&[f32]> = batch.iter().map(|t| &t.target[..]).collect();
        let prevs: Vec<&[f32]> = batch.iter().map(|t| &t.prev[..]).collect();
        let nexts: Vec<&[f32]> = batch.iter().map(|t| &t.next[..]).collect();
        let TripletForward { x_prev, x_target, x_next, disps, rot, trans } =
            step::forward(&self.student, &self.pose, [&prevs, &targets, &nexts], w, h, false)?;
        let scales = disps.len();

        let distill = self.config.distill;
        let teacher_disp = if distill.enabled {
            let teacher = self.ema.as_ref().unwrap_or(&self.anchor);
            Some(tch::no_grad(|| teacher.try_forward_t(&x_target, false))?.swap_remove(0))
        } else {
            None
        };
        let attempt = self.stats.steps + self.stats.rejected + self.stats.skipped_stationary;
        let (norm_mean, norm_std) = self.student.arch().normalisation();
        // CUDA backend: the loss runs on the device tensors, the host loop below is skipped.
        let intrinsics: Vec<[f32; 4]> = batch.iter().map(|t| t.intrinsics).collect();
        let rotation_priors: Vec<_> = batch.iter().map(|t| t.rotation_prior).collect();
        let device_terms = self.backend.device_terms(&DeviceBatch {
            x_target: &x_target,
            x_prev: &x_prev,
            x_next: &x_next,
            normalisation: (norm_mean[0], norm_std[0]),
            disps: &disps,
            rot: &rot,
            trans: &trans,
            intrinsics: &intrinsics,
            rotation_priors: &rotation_priors,
            multiview: teacher_disp
                .as_ref()
                .filter(|_| distill.multiview_mask)
                .map(|t| (t, distill.consistency_threshold)),
            attempt,
            stationary_masked_fraction: self.config.stationary_masked_fraction,
            stationary_translation: self.config.stationary_translation,
            pose_refinement: self.config.pose_refinement(),
            measure_live_length: self.measures_live_length(&batch[0]),
        })?;
        if let Some(terms) = &device_terms {
            self.stats.last_masked_fraction = terms.live_masked_fraction;
            if let Some(refined) = &terms.live_refinement {
                let (measured, at_optimum) = match terms.live_lengths {
                    Some(measured) => (measured, true),
                    None => (lengths(&refined.poses), false),
                };
                self.record_live_motion(&batch[0], measured, refined.median_depth, at_optimum);
                self.stats.fresh.refined_motion = refined.poses.each_ref().map(Pose6::row);
                self.stats.fresh.refine_loss = [refined.loss_before, refined.loss_after];
            }
            if let Some(verdict) = &terms.verdict {
                return Ok(verdict.clone());
            }
        }
        let on_host = device_terms.is_none();
        let host = match on_host {
            true => Some(HostOutputs::copy(&disps, &rot, &trans, b, w, h)?),
            false => None,
        };
        let teacher_host = teacher_disp.as_ref().filter(|_| on_host).map(to_host).transpose()?;

        let mut grads = host.as_ref().map(HostGradients::zeros_like);
        let mut distill_mask = vec![0f32; if on_host { b * hw } else { 0 }];
        let (mut total, mut photometric, mut smoothness) =
            device_terms.as_ref().map_or((0f64, 0f64, 0f64), |t| t.sums);
        let inv_b = 1.0 / b as f32;
        for (i, triplet) in batch.iter().enumerate() {
            let (Some(host), Some(grads)) = (&host, grads.as_mut()) else { break };
            let pyramid = target_pyramid(&triplet.target, w, h, scales);
            let pyramid_refs: Vec<&[f32]> = pyramid.iter().map(Vec::as_slice).collect();
            let disp_refs = host.sample_disparities(i);
            let sources: [&[f32]; 2] = [&triplet.prev, &triplet.next];
            let sample =
                self.sample_poses(i, triplet, &disp_refs, &pyramid_refs, host.sample_poses(i));
            let (poses, pose_targets) = match sample? {
                Ok(SamplePoses { poses, targets }) => (poses, targets),
                Err(verdict) => return Ok(verdict),
            };
            fill_tie_break_noise(
                &mut self.noise,
                2 * hw,
                self.config.loss.tie_break_std,
                self.config.seed,
                attempt * 1024 + i as u64,
            );
            let inputs =
                triplet.loss_inputs(&sources, &disp_refs, &pyramid_refs, &poses, Some(&self.noise));
            let out = match step::sample_loss(&mut self.loss, &inputs)? {
                Ok(out) => out,
                Err(reason) => return Ok(StepOutcome::Rejected(reason)),
            };
            if i == 0 {
                let moving = poses.iter().any(|p| {
                    p.translation.iter().map(|t| t * t).sum::<f32>().sqrt()
                        >= self.config.stationary_translation
                });
                let masked = out.masked_fraction;
                self.stats.last_masked_fraction = f64::from(masked);
                if masked > self.config.stationary_masked_fraction || !moving {
                    return Ok(StepOutcome::SkippedStationary);
                }
            }
            total += f64::from(out.total);
            photometric += f64::from(out.photometric);
            smoothness += f64::from(out.smoothness);
            grads.set_sample(i, out, inv_b);
            if let Some((network, refined, median)) = &pose_targets {
                grads.set_pose_targets(i, network, refined, *median, inv_b);
            }
            let mask = &mut distill_mask[i * hw..(i + 1) * hw];
            if let (true, Some(teacher_host)) = (distill.multiview_mask, &teacher_host) {
                let automask = out.automask.clone();
                let teacher_refs = [&teacher_host[i * hw..(i + 1) * hw]];
                let teacher_inputs = LossInputs {
                    disparities: &teacher_refs,
                    target_pyramid: &pyramid_refs[..1],
                    ..inputs
                };
                let teacher_out = self.teacher_loss.forward(&teacher_inputs)?;
                for ((m, &a), &e) in mask.iter_mut().zip(&automask).zip(&teacher_out.min_error) {
                    *m = if a == 1 && e < distill.consistency_threshold { 1.0 } else { 0.0 };
                }
            } else {
                mask.fill(1.0);
            }
        }
        if grads.as_ref().is_some_and(|g| !g.all_finite()) {
            return Ok(StepOutcome::Rejected("non-finite loss gradient".into()));
        }

        // Surrogate whose gradient is the loss gradient: Σ output · grad (+ distillation).
        let device = self.student.device();
        let mut surrogate = match (&device_terms, &grads) {
            (Some(terms), _) => terms.surrogate.shallow_clone(),
            (None, Some(grads)) => grads.surrogate(&disps, &rot, &trans)?,
            (None, None) => Tensor::f_zeros([], (Kind::Float, device))?,
        };
        self.stats.last_distill = 0.0;
        self.stats.last_distill_fraction = 0.0;
        if let Some(teacher_disp) = &teacher_disp {
            let weight = distill.lambda
                * distill.gamma.powf(self.stats.steps as f64).max(distill.lambda_floor);
            let mask = match &device_terms {
                Some(terms) => terms.distill_mask.shallow_clone(),
                None => Tensor::f_from_slice(&distill_mask)?
                    .f_reshape([b as i64, 1, h as i64, w as i64])?
                    .f_to_device(device)?,
            };
            let si = scale_invariant_distillation(
                &disps[0],
                teacher_disp,
                &mask,
                self.config.loss.min_depth,
                self.config.loss.max_depth,
            );
            let si_value = si.double_value(&[]);
            if !si_value.is_finite() {
                return Ok(StepOutcome::Rejected("non-finite distillation loss".into()));
            }
            self.stats.last_distill = si_value;
            self.stats.last_distill_fraction = match &device_terms {
                Some(terms) => terms.distill_fraction,
                None => {
                    distill_mask.iter().map(|&m| f64::from(m)).sum::<f64>()
                        / distill_mask.len() as f64
                }
            };
            surrogate += si * weight;
        }
        self.stats.last_velocity = 0.0;
        if self.config.velocity_weight > 0.0
            && let Some(term) = velocity_supervision(&trans, batch)?
        {
            let value = term.f_double_value(&[])?;
            if !value.is_finite() {
                return Ok(StepOutcome::Rejected("non-finite velocity supervision".into()));
            }
            self.stats.last_velocity = value;
            surrogate += term * self.config.velocity_weight;
        }
        if let Some(reason) = step::apply(&surrogate, &mut [&mut self.adam, &mut self.pose_adam])? {
            return Ok(StepOutcome::Rejected(reason));
        }
        self.pull_toward_anchor()?;
        self.update_ema_teacher();
        self.stats.last_total = total / b as f64;
        self.stats.last_photometric = photometric / b as f64;
        self.stats.last_smoothness = smoothness / b as f64;
        Ok(StepOutcome::Accepted)
    }
}
