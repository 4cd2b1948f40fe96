//! The CUDA loss backend of the adaptation loop (feature `cuda`): the fused kernels on
//! libtorch's device tensors for a whole batch (loss, gradients as a surrogate, the multi-view
//! distillation mask, test-time pose refinement), with one small host read per step; see the
//! parent module for the contract it shares with the CPU backend.

use super::{AdaptError, DeviceBatch, DeviceTerms, summarise_step, tie_break_noise_tensor};
use crate::adapt::host_batch::tensor_to_host;
use crate::adapt::pose_refine::{
    RefinedPoses, Refinement, refine_poses_with, start_at_rotation_prior, translation_length_factor,
};
use crate::adapt::triplet::lengths;
use crate::cuda::torch::{TorchFusedLoss, TorchLossInputs, TorchLossStep};
use crate::loss::{LossConfig, Pose6};
use tch::{Device, Kind, Tensor};

/// Two poses as the fused loss takes them: a [2, 6] tensor of [`Pose6::row`]s on `device`.
fn pose_rows_tensor(poses: &[Pose6], device: Device) -> Result<Tensor, tch::TchError> {
    let rows: Vec<f32> = poses.iter().flat_map(Pose6::row).collect();
    Tensor::f_from_slice(&rows)?.f_to_device(device)?.f_reshape([-1, 6])
}

/// One sample at the finest scale with its depth held fixed: what pose refinement and the
/// translation-length search evaluate the loss on (no tie-break noise).
struct FinestScale<'a> {
    target: &'a Tensor,
    sources: &'a [Tensor; 2],
    disparities: [Tensor; 1],
    pyramid: [Tensor; 1],
    intrinsics: [f32; 4],
    device: Device,
}

impl FinestScale<'_> {
    /// The loss and its gradients at `poses` (previous inverted, next).
    fn step(
        &self,
        refiner: &mut TorchFusedLoss,
        poses: &[Pose6],
    ) -> Result<TorchLossStep, AdaptError> {
        let rows = pose_rows_tensor(poses, self.device)?;
        Ok(refiner.step(&TorchLossInputs {
            target: self.target,
            sources: self.sources,
            disparities: &self.disparities,
            target_pyramid: &self.pyramid,
            poses: &rows,
            invert: &[true, false],
            intrinsics: self.intrinsics,
            tie_break_noise: None,
        })?)
    }
}

impl From<crate::cuda::CudaError> for AdaptError {
    fn from(e: crate::cuda::CudaError) -> Self {
        AdaptError::Cuda(e.to_string())
    }
}

/// The fused CUDA loss for the adaptation loop: the student's loss with gradients, and the
/// teacher's (no automask, scale 0, forward only) for the multi-view distillation mask.
pub struct DeviceLoss {
    student: TorchFusedLoss,
    teacher: TorchFusedLoss,
    /// The student's loss at the finest scale, for pose refinement (its own workspace).
    refiner: TorchFusedLoss,
    ordinal: usize,
    tie_break_std: f32,
    seed: u64,
    /// Disparity range of the loss (for the median depth that scales refinement steps).
    min_disp: f64,
    max_disp: f64,
}

impl DeviceLoss {
    /// Loads the kernels on CUDA device `ordinal` (libtorch's), with the loss settings.
    pub fn new(ordinal: usize, config: &LossConfig) -> Result<Self, AdaptError> {
        // The kernels take the tie-break noise as an input (drawn below per step), not from
        // `tie_break_std` and `seed`.
        let cannot_load = |e: crate::cuda::CudaError| {
            AdaptError::Cuda(format!(
                "the loss kernels cannot load on cuda:{ordinal} ({e}); run with \
                 LIVEDEPTH_ADAPT_LOSS=cpu to use the CPU loss instead"
            ))
        };
        let student = TorchFusedLoss::new(ordinal, *config).map_err(cannot_load)?;
        let teacher = TorchFusedLoss::with_kernels(
            student.kernels().clone(),
            ordinal,
            LossConfig { automask: false, ..*config },
        )
        .map_err(cannot_load)?;
        let refiner = TorchFusedLoss::with_kernels(student.kernels().clone(), ordinal, *config)
            .map_err(cannot_load)?;
        Ok(Self {
            student,
            teacher,
            refiner,
            ordinal,
            tie_break_std: config.tie_break_std,
            seed: config.seed,
            min_disp: 1.0 / f64::from(config.max_depth),
            max_disp: 1.0 / f64::from(config.min_depth),
        })
    }

    /// Test-time pose refinement of one sample on the device, as the CPU path does it
    /// ([`refine_poses_with`]): the finest scale, the current depth held fixed, no tie-break
    /// noise. Returns the refined poses [2, 6] on the device and the refinement's record (with
    /// the median depth that scaled the steps). Each iteration reads 13 floats back.
    #[allow(clippy::too_many_arguments)]
    fn refine(
        &mut self,
        target: &Tensor,
        sources: &[Tensor; 2],
        disparity: &Tensor,
        network_poses: &Tensor,
        intrinsics: [f32; 4],
        refinement: Refinement,
        rotation_prior: Option<[[f32; 3]; 2]>,
    ) -> Result<(Tensor, RefinedPoses), AdaptError> {
        let device = Device::Cuda(self.ordinal);
        let disparity = disparity.f_detach()?.f_contiguous()?;
        // The median depth as the CPU computes it: element len / 2 of the sorted depths.
        let depth = disparity
            .f_mul_scalar(self.max_disp - self.min_disp)?
            .f_add_scalar(self.min_disp)?
            .f_reciprocal()?
            .f_flatten(0, -1)?;
        let k = depth.numel() as i64 / 2 + 1;
        let (median, _) = depth.f_kthvalue(k, 0, false)?;
        let median = tensor_to_host(&median)?.first().copied().unwrap_or(f32::NAN);
        let rows = tensor_to_host(network_poses)?;
        let network = [Pose6::from_row(&rows[..6], true), Pose6::from_row(&rows[6..], false)];
        let start = start_at_rotation_prior(network, rotation_prior);
        let sample = FinestScale {
            target,
            sources,
            disparities: [disparity],
            pyramid: [target.shallow_clone()],
            intrinsics,
            device,
        };
        let refiner = &mut self.refiner;
        let refined = refine_poses_with(start, refinement, median, |poses| {
            let step = sample.step(refiner, poses)?;
            let read = Tensor::f_cat(
                &[step.scalars.f_narrow(0, 1, 1)?, step.grad_poses.f_reshape([-1])?],
                0,
            )?;
            let v = tensor_to_host(&read)?;
            let g = |s: usize| -> [f32; 6] { std::array::from_fn(|c| v[1 + 6 * s + c]) };
            Ok::<_, AdaptError>((v[0], [g(0), g(1)]))
        })?;
        Ok((pose_rows_tensor(&refined.poses, device)?, refined))
    }

    /// The translation lengths the depth implies along the refined directions (the photometric
    /// optimum of [`translation_length_factor`], as the CPU path measures them): 33 forward
    /// evaluations at the finest scale, one float read back each.
    fn translation_lengths(
        &mut self,
        target: &Tensor,
        sources: &[Tensor; 2],
        disparity: &Tensor,
        refined: &RefinedPoses,
        intrinsics: [f32; 4],
    ) -> Result<[f32; 2], AdaptError> {
        let sample = FinestScale {
            target,
            sources,
            disparities: [disparity.f_detach()?.f_contiguous()?],
            pyramid: [target.shallow_clone()],
            intrinsics,
            device: Device::Cuda(self.ordinal),
        };
        let refiner = &mut self.refiner;
        let factor = translation_length_factor(refined.poses, |poses| {
            let step = sample.step(refiner, poses)?;
            let photometric = tensor_to_host(&step.scalars.f_narrow(0, 1, 1)?)?;
            Ok::<_, AdaptError>(photometric.first().copied().unwrap_or(f32::NAN))
        })?;
        Ok(lengths(&refined.poses).map(|length| factor * length))
    }

    /// Loss, gradients (as a surrogate), distillation mask and the step's verdict for a
    /// batch, all on the device; one small device-to-host copy at the end.
    pub fn batch_terms(&mut self, batch: &DeviceBatch) -> Result<DeviceTerms, AdaptError> {
        let device = Device::Cuda(self.ordinal);
        let size = batch.x_target.size();
        let [b, _, h, w] = size[..] else {
            return Err(AdaptError::Frame(format!("target batch shape {size:?}")));
        };
        let (hw, bu) = ((w * h) as usize, b as usize);
        if batch.intrinsics.len() != bu {
            return Err(AdaptError::Frame(format!(
                "{} intrinsics for a batch of {b} network inputs",
                batch.intrinsics.len()
            )));
        }
        let (mean, std) = (f64::from(batch.normalisation.0), f64::from(batch.normalisation.1));
        let raw = |x: &Tensor| -> Result<Tensor, AdaptError> {
            Ok(x.f_detach()?.f_mul_scalar(std)?.f_add_scalar(mean)?.f_contiguous()?)
        };
        let (target, prev, next) = (raw(batch.x_target)?, raw(batch.x_prev)?, raw(batch.x_next)?);
        let rot = batch.rot.f_reshape([-1, 3])?;
        let trans = batch.trans.f_reshape([-1, 3])?;
        let scales = batch.disps.len();
        let mut surrogate = Tensor::f_zeros([], (Kind::Float, device))?;
        let mut scalars = Vec::with_capacity(bu);
        let mut masks = Vec::with_capacity(bu);
        let mut bad_gradients = Tensor::f_zeros([], (Kind::Float, device))?;
        let mut live_translation = None;
        let mut live_refinement = None;
        let mut live_lengths = None;
        for i in 0..b {
            let target_i = target.f_narrow(0, i, 1)?;
            let sources = [prev.f_narrow(0, i, 1)?, next.f_narrow(0, i, 1)?];
            let disparities: Vec<Tensor> =
                batch.disps.iter().map(|d| d.f_narrow(0, i, 1)).collect::<Result<_, _>>()?;
            let mut pyramid = vec![target_i.shallow_clone()];
            for s in 1..scales {
                let level =
                    pyramid[s - 1].f_avg_pool2d([2, 2], [2, 2], [0, 0], false, true, None)?;
                pyramid.push(level);
            }
            let pose_row = |j: i64| -> Result<Tensor, tch::TchError> {
                Tensor::f_cat(&[rot.f_narrow(0, j, 1)?, trans.f_narrow(0, j, 1)?], 1)
            };
            let network_poses = Tensor::f_cat(&[pose_row(i)?, pose_row(b + i)?], 0)?;
            let intrinsics = batch.intrinsics[i as usize];
            // With refinement the loss sees the refined poses (constants), and the pose
            // network is pulled toward them: the gradient of ½‖r − r*‖² + ½‖t − t*‖² / m²
            // (m the median depth), as the CPU path's pose targets.
            let poses = if batch.pose_refinement.iterations > 0 {
                let (refined, record) = self.refine(
                    &target_i,
                    &sources,
                    &disparities[0],
                    &network_poses,
                    intrinsics,
                    batch.pose_refinement,
                    batch.rotation_priors.get(i as usize).copied().flatten(),
                )?;
                let median = record.median_depth;
                if i == 0 {
                    if batch.measure_live_length {
                        live_lengths = Some(self.translation_lengths(
                            &target_i,
                            &sources,
                            &disparities[0],
                            &record,
                            intrinsics,
                        )?);
                    }
                    live_refinement = Some(record);
                }
                let m = if median.is_finite() && median > 0.0 { median } else { 1.0 };
                // As the CPU path's pose targets compute it: (1 / m)².
                let inv_m = 1.0 / m;
                let inv_m2 = inv_m * inv_m;
                let scale = Tensor::f_from_slice(&[1.0f32, 1.0, 1.0, inv_m2, inv_m2, inv_m2])?
                    .f_to_device(device)?
                    .f_reshape([1, 6])?;
                let pull = (network_poses.f_detach()? - &refined) * scale;
                surrogate += (&network_poses * pull.f_detach()?).f_sum(Kind::Float)?;
                refined
            } else {
                network_poses
            };
            if i == 0 {
                live_translation = Some(poses.f_narrow(1, 3, 3)?.f_detach()?);
            }
            let stream = batch.attempt * 1024 + i as u64;
            let noise = if self.tie_break_std > 0.0 {
                Some(
                    tie_break_noise_tensor(2 * hw, self.tie_break_std, self.seed, stream, device)?
                        .f_reshape([2, h, w])?,
                )
            } else {
                None
            };
            let inputs = TorchLossInputs {
                target: &target_i,
                sources: &sources,
                disparities: &disparities,
                target_pyramid: &pyramid,
                poses: &poses,
                invert: &[true, false],
                intrinsics,
                tie_break_noise: noise.as_ref(),
            };
            let step = self.student.step(&inputs)?;
            surrogate += step.surrogate;
            scalars.push(step.scalars);
            for g in step.grad_disparities.iter().chain(std::iter::once(&step.grad_poses)) {
                bad_gradients += g.f_isfinite()?.f_logical_not()?.f_sum(Kind::Float)?;
            }
            let mask = match batch.multiview {
                Some((teacher_disp, threshold)) => {
                    let (_, kept) = self.student.scale0_maps((w as usize, h as usize), 2)?;
                    let teacher_d = [teacher_disp.f_narrow(0, i, 1)?];
                    let _teacher_scalars = self.teacher.forward(&TorchLossInputs {
                        disparities: &teacher_d,
                        target_pyramid: &pyramid[..1],
                        tie_break_noise: None,
                        ..inputs
                    })?;
                    let (teacher_min, _) = self.teacher.scale0_maps((w as usize, h as usize), 2)?;
                    kept * teacher_min.f_lt(f64::from(threshold))?.f_to_kind(Kind::Float)?
                }
                None => Tensor::f_ones([h, w], (Kind::Float, device))?,
            };
            masks.push(mask);
        }
        let surrogate = surrogate / b as f64;
        let distill_mask = Tensor::f_stack(&masks, 0)?.f_reshape([b, 1, h, w])?;
        // The one host read of the step: [B × 12 scalars, 2 live translations, bad gradient
        // count, mask coverage].
        let Some(live_translation) = live_translation else {
            return Err(AdaptError::Frame("empty batch".into()));
        };
        let translation_norms = live_translation.f_reshape([2, 3])?.f_norm_scalaropt_dim(
            2,
            [1i64].as_slice(),
            false,
        )?;
        let summary = Tensor::f_cat(
            &[
                Tensor::f_stack(&scalars, 0)?.f_reshape([-1])?,
                translation_norms.f_detach()?.f_to_kind(Kind::Float)?,
                bad_gradients.f_reshape([1])?,
                distill_mask.f_mean(Kind::Float)?.f_reshape([1])?,
            ],
            0,
        )?;
        let summary = summarise_step(
            &tensor_to_host(&summary)?,
            bu,
            batch.stationary_masked_fraction,
            batch.stationary_translation,
        )?;
        Ok(DeviceTerms {
            surrogate,
            distill_mask,
            distill_fraction: summary.distill_fraction,
            sums: summary.sums,
            live_masked_fraction: summary.live_masked_fraction,
            verdict: summary.verdict,
            live_refinement,
            live_lengths,
        })
    }
}
