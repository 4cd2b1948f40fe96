//! Offline training (`livedepth train`): the depth network and its companion pose network over
//! one or more recorded or rendered datasets, for a number of epochs, with seeded colour jitter
//! and horizontal flips.
//!
//! Each step takes a batch of frame triplets (t−k, t, t+k) and minimises
//!
//! - the adapter's self-supervised Monodepth2 loss ([`SelfSupervisedLoss`]: photometric
//!   reprojection with auto-mask and minimum over sources, plus edge-aware smoothness), whose
//!   analytic gradients are fed back through libtorch as `Σ output · grad`: this is the second
//!   driver of [`crate::adapt::step`], the step [`crate::adapt::Adapter`] runs online (the same
//!   forward, per-sample loss, finite-gradient check and [`Adam`]);
//! - optionally supervised depth where ground truth exists: Eigen's scale-invariant log loss
//!   `mean(g²) − 0.85·mean(g)²` with `g = log d̂ − log d`, over every output scale upsampled
//!   to the input size (`supervised_weight`);
//! - optionally supervised pose from ground-truth camera poses (synthetic drives): L1 on the
//!   axis-angle and the translation in metres (`pose_supervised_weight`).
//!
//! As in Monodepth2 the networks see the colour-jittered images while the photometric loss
//! compares the un-jittered ones. The self-supervised loss runs where the adapter's would
//! ([`LossBackend::new`]): our CPU loss on host copies, or our fused CUDA kernels on the device
//! tensors when the networks are on a GPU (`LIVEDEPTH_ADAPT_LOSS` or
//! [`TrainOptions::loss_backend`] overrides it, and the sidecar records which one ran).
//!
//! Weights are written as safetensors (depth and pose) with a JSON sidecar ([`TrainSidecar`])
//! atomically, every `checkpoint_every` steps, at the end and on Ctrl-C.

mod options;
mod samples;
pub mod saved_set;
mod sidecar;
use crate::adapt::host_batch::{HostGradients, HostOutputs, stack_planar};
use crate::adapt::loss_backend::{DeviceBatch, LossBackend, LossBackendKind};
use crate::adapt::pose_refine::Refinement;
use crate::adapt::step::{self, Adam, TripletForward, select_variables};
use crate::adapt::{AdaptError, StepOutcome};
use crate::loss::{LossConfig, LossError, LossInputs, SelfSupervisedLoss, target_pyramid};
use crate::model::network::{DepthNetwork, PoseNetwork};
use crate::model::{ModelError, PoseArch};
use crate::source::dataset::DatasetError;
pub use options::{Augmentation, TrainOptions};
use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_pcg::Pcg64Mcg;
use samples::{Prepared, TripletIndex, load_clip, prepare};
pub use sidecar::{DatasetUsage, LossParts, TrainSidecar, TrainedModel};
use std::path::PathBuf;
use std::time::Instant;
use tch::{Kind, Tensor, nn};

/// File names inside a training output folder.
pub const DEPTH_FILE: &str = "depth.safetensors";
pub const POSE_FILE: &str = "pose.safetensors";
pub const SIDECAR_FILE: &str = crate::model::TRAINED_SIDECAR;
/// Format tag of the sidecar.
pub const SIDECAR_FORMAT: &str = "livedepth-train/1";

/// Weight of the squared mean in the scale-invariant log loss (Eigen et al. use 0.5–1).
const SI_LAMBDA: f64 = 0.85;

/// Errors of offline training; each names the flag, dataset or file involved.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    #[error("train option `{flag}`: expected {expected}, got {got}")]
    Flag { flag: &'static str, expected: &'static str, got: String },
    #[error("training dataset `{spec}`: {source}")]
    Dataset { spec: String, source: DatasetError },
    #[error("training dataset `{spec}`: {reason}")]
    Data { spec: String, reason: String },
    #[error("{}: {reason}", path.display())]
    Sidecar { path: PathBuf, reason: String },
    #[error("{}: {source}", path.display())]
    Io { path: PathBuf, source: std::io::Error },
    #[error("train --out {}: {reason}", path.display())]
    Output { path: PathBuf, reason: String },
    #[error(transparent)]
    Model(#[from] ModelError),
    #[error(transparent)]
    Loss(#[from] LossError),
    /// Choosing or running the loss backend (names `LIVEDEPTH_ADAPT_LOSS` when it is at fault).
    #[error(transparent)]
    LossBackend(#[from] AdaptError),
    #[error("libtorch: {0}")]
    Torch(String),
}

impl From<tch::TchError> for TrainError {
    fn from(e: tch::TchError) -> Self {
        TrainError::Torch(e.to_string())
    }
}

fn flag(flag: &'static str, expected: &'static str, got: impl std::fmt::Display) -> TrainError {
    TrainError::Flag { flag, expected, got: got.to_string() }
}

/// What one step computed: the loss parts (unweighted) or why it was rejected.
enum StepResult {
    Done(LossParts),
    Rejected(String),
}

struct Trainer<'a> {
    options: &'a TrainOptions,
    depth: DepthNetwork,
    pose: PoseNetwork,
    depth_opt: Adam,
    pose_opt: Adam,
    loss: SelfSupervisedLoss,
    /// Where the self-supervised loss runs: [`SelfSupervisedLoss`] on host copies, or our CUDA
    /// kernels on the device tensors; None when it is off.
    backend: Option<LossBackend>,
    /// Steps tried so far: the CUDA loss's tie-break noise stream.
    attempts: u64,
    /// This run's id, part of every save's generation.
    run_id: String,
}

/// A batch's self-supervised loss: (surrogate to backward, mean photometric, mean smoothness),
/// or (inner error) why the step is rejected.
type SelfSupervised = Result<Result<(Tensor, f64, f64), String>, TrainError>;

impl Trainer<'_> {
    /// One step on `batch`; the gradients are cleared afterwards whatever the verdict.
    fn step(&mut self, batch: &[Prepared]) -> Result<StepResult, TrainError> {
        let result = self.step_terms(batch);
        self.attempts += 1;
        self.depth_opt.zero_grad();
        self.pose_opt.zero_grad();
        result
    }

    fn step_terms(&mut self, batch: &[Prepared]) -> Result<StepResult, TrainError> {
        let o = self.options;
        let (w, h) = (o.width as usize, o.height as usize);
        let b = batch.len();
        let device = self.depth.device();
        let pick = |k: usize| -> Vec<&[f32]> { batch.iter().map(|p| &p.jittered[k][..]).collect() };
        let images = [&pick(0)[..], &pick(1)[..], &pick(2)[..]];
        let forward = step::forward(&self.depth, &self.pose, images, w, h, true)?;
        let TripletForward { disps, rot, trans, .. } = &forward;
        let mut parts = LossParts::default();
        let mut objective = Tensor::f_zeros([], (Kind::Float, device))?;

        if let Some(kind) = self.backend.as_ref().map(LossBackend::kind) {
            let outcome = match kind {
                LossBackendKind::Cpu => self.host_loss(batch, &forward)?,
                LossBackendKind::Cuda => self.device_loss(batch, &forward)?,
            };
            let (surrogate, photometric, smoothness) = match outcome {
                Ok(terms) => terms,
                Err(reason) => return Ok(StepResult::Rejected(reason)),
            };
            parts.photometric = photometric;
            parts.smoothness = smoothness;
            objective += surrogate * o.self_supervised_weight;
            parts.total += o.self_supervised_weight * (parts.photometric + parts.smoothness);
        }

        if o.supervised_weight > 0.0 && batch.iter().all(|p| p.depth.is_some()) {
            let depths: Vec<&[f32]> = batch.iter().filter_map(|p| p.depth.as_deref()).collect();
            let depth = stack_planar(&depths, 1, w, h, device)?;
            let valid = depth.gt(0.0).to_kind(Kind::Float);
            let gt = depth.clamp(f64::from(o.loss.min_depth), f64::from(o.loss.max_depth));
            let log_gt = gt.log();
            let mut si_total = Tensor::f_zeros([], (Kind::Float, device))?;
            for d in disps {
                let d = if d.size()[2] as usize == h {
                    d.shallow_clone()
                } else {
                    d.f_upsample_bilinear2d([h as i64, w as i64], false, None, None)?
                };
                let log_pred = step::log_depth(&d, o.loss.min_depth, o.loss.max_depth);
                si_total += step::scale_invariant_log_loss(&log_pred, &log_gt, &valid, SI_LAMBDA);
            }
            let si = si_total / disps.len() as f64;
            let value = si.double_value(&[]);
            if !value.is_finite() {
                return Ok(StepResult::Rejected("non-finite supervised depth loss".into()));
            }
            parts.supervised_depth = value;
            parts.total += o.supervised_weight * value;
            objective += si * o.supervised_weight;
        }

        if o.pose_supervised_weight > 0.0 && batch.iter().all(|p| p.poses.is_some()) {
            let mut gt_rot = vec![0f32; 2 * b * 3];
            let mut gt_trans = vec![0f32; 2 * b * 3];
            for (i, p) in batch.iter().enumerate() {
                if let Some(poses) = &p.poses {
                    for (k, j) in [i, b + i].into_iter().enumerate() {
                        gt_rot[3 * j..3 * j + 3].copy_from_slice(&poses[k].0);
                        gt_trans[3 * j..3 * j + 3].copy_from_slice(&poses[k].1);
                    }
                }
            }
            let gt_rot =
                Tensor::f_from_slice(&gt_rot)?.f_reshape(rot.size())?.f_to_device(device)?;
            let gt_trans =
                Tensor::f_from_slice(&gt_trans)?.f_reshape(trans.size())?.f_to_device(device)?;
            // Rotations are small angles (radians): weight them like centimetres of motion.
            let l1 = (rot - gt_rot).abs().mean(Kind::Float) * 10.0
                + (trans - gt_trans).abs().mean(Kind::Float);
            let value = l1.double_value(&[]);
            if !value.is_finite() {
                return Ok(StepResult::Rejected("non-finite supervised pose loss".into()));
            }
            parts.supervised_pose = value;
            parts.total += o.pose_supervised_weight * value;
            objective += l1 * o.pose_supervised_weight;
        }

        match step::apply(&objective, &mut [&mut self.depth_opt, &mut self.pose_opt])? {
            Some(reason) => Ok(StepResult::Rejected(reason)),
            None => Ok(StepResult::Done(parts)),
        }
    }

    /// The self-supervised loss with [`SelfSupervisedLoss`] on host copies of the outputs, one
    /// sample at a time (the un-jittered images as the photometric targets).
    fn host_loss(&mut self, batch: &[Prepared], out: &TripletForward) -> SelfSupervised {
        let (disps, rot, trans) = (&out.disps, &out.rot, &out.trans);
        let (w, h) = (self.options.width as usize, self.options.height as usize);
        let b = batch.len();
        let host = HostOutputs::copy(disps, rot, trans, b, w, h)?;
        let mut grads = HostGradients::zeros_like(&host);
        let inv_b = 1.0 / b as f32;
        let (mut photometric, mut smoothness) = (0.0, 0.0);
        for (i, sample) in batch.iter().enumerate() {
            let pyramid = target_pyramid(&sample.clean[1], w, h, disps.len());
            let pyramid_refs: Vec<&[f32]> = pyramid.iter().map(Vec::as_slice).collect();
            let disp_refs = host.sample_disparities(i);
            let poses = host.sample_poses(i);
            let sources: [&[f32]; 2] = [&sample.clean[0], &sample.clean[2]];
            let inputs = LossInputs {
                width: w,
                height: h,
                target: &sample.clean[1],
                sources: &sources,
                disparities: &disp_refs,
                target_pyramid: &pyramid_refs,
                poses: &poses,
                intrinsics: sample.intrinsics,
                tie_break_noise: None,
            };
            let out = match step::sample_loss(&mut self.loss, &inputs)? {
                Ok(out) => out,
                Err(reason) => return Ok(Err(reason)),
            };
            photometric += f64::from(out.photometric) / b as f64;
            smoothness += f64::from(out.smoothness) / b as f64;
            grads.set_sample(i, out, inv_b);
        }
        if !grads.all_finite() {
            return Ok(Err("non-finite loss gradient".into()));
        }
        // Surrogate whose gradient is the self-supervised loss gradient.
        let surrogate = grads.surrogate(disps, rot, trans)?;
        Ok(Ok((surrogate, photometric, smoothness)))
    }

    /// The self-supervised loss with our fused CUDA kernels on the device tensors: the loss the
    /// adapter runs on a GPU, with no pose refinement, no distillation and no stationary skip
    /// (training has none of them), and one small read to the host per step.
    fn device_loss(&mut self, batch: &[Prepared], out: &TripletForward) -> SelfSupervised {
        let (disps, rot, trans) = (&out.disps, &out.rot, &out.trans);
        let (w, h) = (self.options.width as usize, self.options.height as usize);
        // The kernels compare the un-jittered images, as they are: normalisation (0, 1).
        let device = self.depth.device();
        let clean = |k: usize| {
            let images: Vec<&[f32]> = batch.iter().map(|p| &p.clean[k][..]).collect();
            stack_planar(&images, 3, w, h, device)
        };
        let (x_prev, x_target, x_next) = (clean(0)?, clean(1)?, clean(2)?);
        let intrinsics: Vec<[f32; 4]> = batch.iter().map(|p| p.intrinsics).collect();
        let Some(backend) = self.backend.as_mut() else {
            return Err(AdaptError::Cuda("the CUDA loss backend is not set up".into()).into());
        };
        let terms = backend.device_terms(&DeviceBatch {
            x_target: &x_target,
            x_prev: &x_prev,
            x_next: &x_next,
            normalisation: (0.0, 1.0),
            disps,
            rot,
            trans,
            intrinsics: &intrinsics,
            rotation_priors: &[],
            multiview: None,
            attempt: self.attempts,
            // Never stationary: a masked fraction above 1 and a translation below 0 never occur.
            stationary_masked_fraction: f32::INFINITY,
            stationary_translation: 0.0,
            pose_refinement: Refinement::one_walk(0),
            measure_live_length: false,
        })?;
        let Some(terms) = terms else {
            return Err(AdaptError::Cuda("the CUDA loss backend computed no terms".into()).into());
        };
        match terms.verdict {
            Some(StepOutcome::Rejected(reason)) => Ok(Err(reason)),
            Some(other) => Ok(Err(format!("the CUDA loss decided {other:?}"))),
            None => {
                let b = batch.len() as f64;
                Ok(Ok((terms.surrogate, terms.sums.1 / b, terms.sums.2 / b)))
            }
        }
    }

    /// Writes the weights, then the sidecar: one generation in all three (see [`saved_set`]).
    fn save(&self, sidecar: &TrainSidecar) -> Result<(), TrainError> {
        let out = &self.options.out;
        let generation = saved_set::generation(&self.run_id, sidecar.steps);
        let stamp = [(saved_set::GENERATION_KEY, generation.as_str())];
        self.depth.save_safetensors_with(&out.join(DEPTH_FILE), &stamp)?;
        self.pose.save_safetensors_with(&out.join(POSE_FILE), &stamp)?;
        let sidecar = TrainSidecar { generation: Some(generation.clone()), ..sidecar.clone() };
        let path = out.join(SIDECAR_FILE);
        let mut json = serde_json::to_vec_pretty(&sidecar).map_err(|e| TrainError::Sidecar {
            path: path.clone(),
            reason: format!("cannot encode: {e}"),
        })?;
        json.push(b'\n');
        crate::model::checkpoint::write_atomically(&path, &json)?;
        Ok(())
    }
}

/// Trains from `options`; returns the sidecar that was written last.
pub fn train(options: &TrainOptions) -> Result<TrainSidecar, TrainError> {
    options.validate()?;
    let started = Instant::now();
    crate::tempfiles::create_output_dir(&options.out, "train --out")
        .map_err(|e| TrainError::Output { path: options.out.clone(), reason: e.to_string() })?;
    let (w, h) = (options.width, options.height);
    let mut clips = Vec::new();
    let mut usage = Vec::new();
    for spec in &options.datasets {
        let (samples, used) = load_clip(spec, w, h, options.frame_gap)?;
        if options.supervised_weight > 0.0 && !used.with_depth {
            tracing::info!(
                "train: {spec} has no ground-truth depth on every frame: self-supervised only there"
            );
        }
        clips.push(samples);
        usage.push(used);
    }
    let gap = options.frame_gap;
    let triplets: Vec<TripletIndex> = clips
        .iter()
        .enumerate()
        .flat_map(|(c, clip)| (gap..clip.len() - gap).map(move |t| (c, t - gap, t, t + gap)))
        .collect();

    tch::set_num_threads(options.threads as i32);
    tch::manual_seed(options.seed as i64);
    let device = crate::engine::default_device();
    let pose_arch: PoseArch = options.arch.companion_pose();
    let depth = match &options.init_model {
        Some(path) => DepthNetwork::load(path, options.arch, device)?,
        None => {
            let net = DepthNetwork::new(options.arch, device);
            kaiming_init(net.var_store())?;
            net
        }
    };
    let pose = match &options.init_pose {
        Some(path) => PoseNetwork::load(path, pose_arch, device)?,
        None => {
            let net = PoseNetwork::new(pose_arch, device);
            kaiming_init(net.var_store())?;
            net
        }
    };
    let depth_opt =
        Adam::new(select_variables(depth.var_store(), |_, _| true), options.learning_rate);
    let pose_opt =
        Adam::new(select_variables(pose.var_store(), |_, _| true), options.pose_learning_rate);
    let loss_config = LossConfig { seed: options.seed, ..options.loss };
    let mut trainer = Trainer {
        options,
        depth,
        pose,
        depth_opt,
        pose_opt,
        loss: SelfSupervisedLoss::new(loss_config),
        backend: loss_backend(options, device, &loss_config)?,
        attempts: 0,
        run_id: saved_set::new_run_id(),
    };

    let steps_per_epoch = triplets.len().div_ceil(options.batch_size);
    let planned = steps_per_epoch * options.epochs;
    let total_steps = options.max_steps.map_or(planned, |m| m.min(planned));
    let mut sidecar = TrainSidecar {
        format: SIDECAR_FORMAT.into(),
        arch: options.arch.name().into(),
        pose_arch: pose_arch.name().into(),
        width: w,
        height: h,
        depth_file: DEPTH_FILE.into(),
        pose_file: POSE_FILE.into(),
        command: options.command.clone(),
        seed: options.seed,
        datasets: usage,
        epochs: options.epochs,
        epochs_completed: 0.0,
        steps: 0,
        rejected_steps: 0,
        batch_size: options.batch_size,
        frame_gap: gap,
        learning_rate: options.learning_rate,
        pose_learning_rate: options.pose_learning_rate,
        self_supervised_weight: options.self_supervised_weight,
        supervised_weight: options.supervised_weight,
        pose_supervised_weight: options.pose_supervised_weight,
        loss: options.loss,
        loss_backend: trainer.backend.as_ref().map(LossBackend::kind),
        augmentation: options.augmentation,
        first_losses: LossParts::default(),
        final_losses: LossParts::default(),
        complete: false,
        interrupted: false,
        wall_seconds: 0.0,
        generation: None,
    };

    let ctrl_c_baseline = if options.stop_on_ctrl_c {
        crate::pipeline::install_ctrl_c_handler()
            .map_err(|e| TrainError::Data { spec: "<ctrl-c>".into(), reason: e.to_string() })?;
        Some(crate::pipeline::ctrl_c_count())
    } else {
        None
    };
    let bar = if options.progress {
        let bar = indicatif::ProgressBar::new(total_steps as u64);
        if let Ok(style) = indicatif::ProgressStyle::with_template(
            "[{elapsed_precise}] {wide_bar} {pos}/{len} ETA {eta} {msg}",
        ) {
            bar.set_style(style);
        }
        bar
    } else {
        indicatif::ProgressBar::hidden()
    };

    // Loss means over a window of recent steps.
    let window = options.log_every.max(20);
    // The "first" losses: the mean over the first steps (a quarter of a short run).
    let first_window = window.min(total_steps.div_ceil(4)).max(1);
    let mut recent: std::collections::VecDeque<LossParts> = std::collections::VecDeque::new();
    let mut rng = Pcg64Mcg::seed_from_u64(options.seed);
    let mut step = 0usize;
    let mut order = triplets.clone();
    'epochs: for _epoch in 0..options.epochs {
        order.shuffle(&mut rng);
        for chunk in order.chunks(options.batch_size) {
            if step >= total_steps {
                break 'epochs;
            }
            if let Some(base) = ctrl_c_baseline
                && crate::pipeline::ctrl_c_count() > base
            {
                sidecar.interrupted = true;
                break 'epochs;
            }
            // Cosine decay to 5 % of the learning rate over the run.
            let progress = step as f64 / total_steps.max(1) as f64;
            let factor = 0.05 + 0.95 * 0.5 * (1.0 + (std::f64::consts::PI * progress).cos());
            trainer.depth_opt.set_lr(options.learning_rate * factor);
            trainer.pose_opt.set_lr(options.pose_learning_rate * factor);
            let batch: Vec<Prepared> = chunk
                .iter()
                .map(|&index| prepare(&clips, index, &options.augmentation, &mut rng))
                .collect();
            match trainer.step(&batch)? {
                StepResult::Done(parts) => {
                    recent.push_back(parts);
                    if recent.len() > window {
                        recent.pop_front();
                    }
                    if sidecar.steps < first_window {
                        sidecar.first_losses = mean_parts(&recent);
                    }
                    sidecar.steps += 1;
                }
                StepResult::Rejected(reason) => {
                    sidecar.rejected_steps += 1;
                    tracing::info!("train: step {step} rejected: {reason}");
                }
            }
            step += 1;
            let m = mean_parts(&recent);
            bar.set_position(step as u64);
            bar.set_message(format!(
                "loss {:.4} (photo {:.4} smooth {:.5} depth {:.4} pose {:.4})",
                m.total, m.photometric, m.smoothness, m.supervised_depth, m.supervised_pose
            ));
            if options.log_every > 0 && step.is_multiple_of(options.log_every) {
                let elapsed = started.elapsed().as_secs_f64();
                let eta = elapsed / step as f64 * (total_steps - step) as f64;
                tracing::info!(
                    "train: step {step}/{total_steps} epoch {:.2} loss {:.4} (photo {:.4} smooth \
                     {:.5} depth {:.4} pose {:.4}) {:.1}s elapsed, ETA {:.0}s",
                    step as f64 / steps_per_epoch as f64,
                    m.total,
                    m.photometric,
                    m.smoothness,
                    m.supervised_depth,
                    m.supervised_pose,
                    elapsed,
                    eta
                );
            }
            if options.checkpoint_every > 0 && step.is_multiple_of(options.checkpoint_every) {
                sidecar.final_losses = m;
                sidecar.epochs_completed = step as f64 / steps_per_epoch as f64;
                sidecar.wall_seconds = started.elapsed().as_secs_f64();
                trainer.save(&sidecar)?;
            }
        }
    }
    bar.finish_and_clear();
    sidecar.final_losses = mean_parts(&recent);
    sidecar.epochs_completed = step as f64 / steps_per_epoch as f64;
    sidecar.complete = !sidecar.interrupted;
    sidecar.wall_seconds = started.elapsed().as_secs_f64();
    trainer.save(&sidecar)?;
    Ok(sidecar)
}

/// Where the self-supervised loss runs: as `--adapt` chooses, or as
/// [`TrainOptions::loss_backend`] asks (an error naming that option where it cannot run);
/// nowhere (None, nothing set up) when the loss is off.
fn loss_backend(
    options: &TrainOptions,
    device: tch::Device,
    config: &LossConfig,
) -> Result<Option<LossBackend>, TrainError> {
    if options.self_supervised_weight <= 0.0 {
        return Ok(None);
    }
    let backend = match options.loss_backend {
        None => LossBackend::new(device, config)?,
        Some(kind) => LossBackend::requested(device, config, Some(kind.name())).map_err(|e| {
            flag(
                "loss_backend",
                "a loss backend this build and machine can run",
                format!("{kind}: {e}"),
            )
        })?,
    };
    Ok(Some(backend))
}

/// Re-initialises a fresh network for training from scratch: convolution weights N(0, 2/fan_in)
/// (He et al.), biases 0, drawn in name order so that one seed gives one network. PyTorch's
/// default (uniform ±1/√fan_in) shrinks the signal about six-fold per layer, so a deep network
/// without normalisation (RT-MonoDepth-S has none) starts with a constant output and learns
/// structure very slowly.
fn kaiming_init(vs: &nn::VarStore) -> Result<(), TrainError> {
    let mut vars: Vec<(String, Tensor)> = vs.variables().into_iter().collect();
    vars.sort_by(|a, b| a.0.cmp(&b.0));
    tch::no_grad(|| -> Result<(), TrainError> {
        for (name, mut var) in vars {
            let size = var.size();
            if size.len() == 4 {
                let fan_in = (size[1] * size[2] * size[3]).max(1) as f64;
                let init = var.f_randn_like()? * (2.0 / fan_in).sqrt();
                var.f_copy_(&init)?;
            } else if name.ends_with("bias") {
                let _ = var.f_zero_()?;
            }
        }
        Ok(())
    })
}

fn mean_parts(parts: &std::collections::VecDeque<LossParts>) -> LossParts {
    let mut m = LossParts::default();
    let n = parts.len().max(1) as f64;
    for p in parts {
        m.add(p, 1.0 / n);
    }
    m
}
