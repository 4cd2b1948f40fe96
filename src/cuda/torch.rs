//! The fused CUDA loss on libtorch tensors (features `cuda` + `torch`): the adaptation loop calls
//! [`TorchFusedLoss::step`] when libtorch runs on CUDA instead of the CPU loss.
//!
//! The kernels read the tensors' device memory in place (`data_ptr`) in libtorch's own primary
//! context and write the gradients into tensors from libtorch's allocator; the returned
//! surrogate `Σ_s <disparity_s, g_s> + <poses, g_poses>` (gradients detached) makes
//! `surrogate.backward()` deposit exactly d total / d disparity and d total / d pose into the
//! networks' parameters. Launches go to the legacy default stream, libtorch's current stream
//! unless a stream guard is active, so no host synchronisation is needed; the loss values stay on
//! the device (copy them out only for logging).

use super::CudaError;
use super::device::{
    CudaKernels, DeviceLossGrads, DeviceLossInputs, FramePreprocessor, FusedLossGpu,
};
use super::{Normalization, PackedFrame, Resize};
use crate::loss::LossConfig;
use std::sync::Arc;
use tch::{Device, Kind, Tensor};

/// Loss inputs as libtorch tensors on one CUDA device (float32; batch size 1).
pub struct TorchLossInputs<'a> {
    /// [1, 3, H, W] or [3, H, W] in [0, 1].
    pub target: &'a Tensor,
    /// Each like `target`.
    pub sources: &'a [Tensor],
    /// Scale s: [1, 1, H >> s, W >> s] (or any shape with that many elements).
    pub disparities: &'a [Tensor],
    /// Scale s: 3 x (H >> s) x (W >> s) elements.
    pub target_pyramid: &'a [Tensor],
    /// [n_sources, 6] (axis-angle, translation), the pose network's output.
    pub poses: &'a Tensor,
    pub invert: &'a [bool],
    /// fx, fy, cx, cy at W x H.
    pub intrinsics: [f32; 4],
    /// [n_sources, H, W] noise for the identity errors, or None.
    pub tie_break_noise: Option<&'a Tensor>,
}

/// The result of one step.
pub struct TorchLossStep {
    /// Backward this to propagate the loss gradients into the networks.
    pub surrogate: Tensor,
    /// Device tensor [12]: total, photometric, smoothness, masked fraction, photometric per
    /// scale [4], smoothness per scale [4].
    pub scalars: Tensor,
    /// d total / d disparity per scale (shapes of the inputs).
    pub grad_disparities: Vec<Tensor>,
    /// d total / d poses, [n_sources, 6].
    pub grad_poses: Tensor,
}

/// The address of a float32 CUDA tensor with `numel` elements, made contiguous if needed
/// (the contiguous copy is returned to keep it alive).
fn cuda_float_ptr(
    t: &Tensor,
    what: &str,
    numel: usize,
    ordinal: usize,
) -> Result<(u64, Option<Tensor>), CudaError> {
    if t.device() != Device::Cuda(ordinal) {
        return Err(CudaError::invalid(
            what,
            format!("on {:?}, expected Cuda({ordinal})", t.device()),
        ));
    }
    if t.kind() != Kind::Float {
        return Err(CudaError::invalid(
            what,
            format!("dtype {:?}, expected Float (f32)", t.kind()),
        ));
    }
    if t.numel() != numel {
        return Err(CudaError::invalid(
            what,
            format!("{} elements ({:?}), expected {numel}", t.numel(), t.size()),
        ));
    }
    if t.is_contiguous() {
        Ok((t.data_ptr() as u64, None))
    } else {
        let c = t.contiguous();
        Ok((c.data_ptr() as u64, Some(c)))
    }
}

/// The fused loss on libtorch tensors.
pub struct TorchFusedLoss {
    loss: FusedLossGpu,
    kernels: Arc<CudaKernels>,
    ordinal: usize,
    automask: bool,
}

impl TorchFusedLoss {
    /// Loads the kernels on CUDA device `ordinal` (the device libtorch uses).
    pub fn new(ordinal: usize, config: LossConfig) -> Result<Self, CudaError> {
        Self::with_kernels(Arc::new(CudaKernels::new(ordinal)?), ordinal, config)
    }

    /// A second evaluator (e.g. with other settings) on kernels already loaded on `ordinal`.
    pub fn with_kernels(
        kernels: Arc<CudaKernels>,
        ordinal: usize,
        config: LossConfig,
    ) -> Result<Self, CudaError> {
        let automask = config.automask;
        Ok(Self { loss: FusedLossGpu::new(kernels.clone(), config)?, kernels, ordinal, automask })
    }

    /// The loaded kernels (for preprocessing on the same device).
    pub fn kernels(&self) -> &Arc<CudaKernels> {
        &self.kernels
    }

    /// Checks the tensors and gathers their device addresses (contiguous copies, if any were
    /// needed, are pushed to `keep` and must outlive the launches' queueing).
    fn device_inputs(
        &self,
        inputs: &TorchLossInputs,
        keep: &mut Vec<Tensor>,
    ) -> Result<DeviceLossInputs, CudaError> {
        let size = inputs.target.size();
        let (h, w) = match size.as_slice() {
            [3, h, w] | [1, 3, h, w] => (*h as usize, *w as usize),
            other => {
                return Err(CudaError::invalid(
                    "target",
                    format!("shape {other:?}, expected [1, 3, H, W]"),
                ));
            }
        };
        let n = inputs.sources.len();
        let scales = inputs.disparities.len();
        let o = self.ordinal;
        let mut ptr = |t: &Tensor, what: String, numel: usize| -> Result<u64, CudaError> {
            let (p, copy) = cuda_float_ptr(t, &what, numel, o)?;
            keep.extend(copy);
            Ok(p)
        };
        let target = ptr(inputs.target, "target".into(), 3 * w * h)?;
        let mut sources = Vec::with_capacity(n);
        for (i, s) in inputs.sources.iter().enumerate() {
            sources.push(ptr(s, format!("sources[{i}]"), 3 * w * h)?);
        }
        let mut disparities = Vec::with_capacity(scales);
        let mut pyramid = Vec::with_capacity(scales);
        for s in 0..scales {
            let plane = (w >> s) * (h >> s);
            disparities.push(ptr(&inputs.disparities[s], format!("disparities[{s}]"), plane)?);
            let level = inputs.target_pyramid.get(s).ok_or_else(|| {
                CudaError::invalid(
                    "target_pyramid",
                    format!("{} levels for {scales} scales", inputs.target_pyramid.len()),
                )
            })?;
            pyramid.push(ptr(level, format!("target_pyramid[{s}]"), 3 * plane)?);
        }
        let poses_detached = inputs.poses.detach();
        let poses = ptr(&poses_detached, "poses".into(), 6 * n)?;
        let noise = match inputs.tie_break_noise {
            Some(t) => Some(ptr(t, "tie_break_noise".into(), n * w * h)?),
            None => None,
        };
        keep.push(poses_detached);
        Ok(DeviceLossInputs {
            width: w,
            height: h,
            target,
            sources,
            disparities,
            target_pyramid: pyramid,
            poses,
            invert: inputs.invert.to_vec(),
            intrinsics: inputs.intrinsics,
            tie_break_noise: noise,
        })
    }

    /// A fresh device tensor holding the twelve loss scalars of the last launch (no host copy).
    fn scalars_tensor(&self) -> Result<Tensor, CudaError> {
        let scalars = Tensor::zeros([12], (Kind::Float, Device::Cuda(self.ordinal)));
        let src = self.kernels.ptr(self.loss.scalars_buffer());
        // SAFETY: both buffers hold 12 floats on this device; ordered on the same stream.
        unsafe {
            cudarc::driver::result::memcpy_dtod_async(
                scalars.data_ptr() as u64,
                src,
                12 * std::mem::size_of::<f32>(),
                self.kernels.stream().cu_stream(),
            )
        }
        .map_err(|e| CudaError::Driver {
            during: "copying the loss scalars".into(),
            detail: format!("{e:?}"),
        })?;
        Ok(scalars)
    }

    /// Forward + backward on the GPU; see the module doc.
    pub fn step(&mut self, inputs: &TorchLossInputs) -> Result<TorchLossStep, CudaError> {
        let mut keep = Vec::new();
        let device_inputs = self.device_inputs(inputs, &mut keep)?;
        let n = inputs.sources.len();
        let device = Device::Cuda(self.ordinal);
        let grad_disparities: Vec<Tensor> = inputs
            .disparities
            .iter()
            .map(|d| Tensor::zeros(d.size(), (Kind::Float, device)))
            .collect();
        let grad_poses = Tensor::zeros([n as i64, 6], (Kind::Float, device));
        let grads = DeviceLossGrads {
            grad_disparities: grad_disparities.iter().map(|g| g.data_ptr() as u64).collect(),
            grad_poses: Some(grad_poses.data_ptr() as u64),
        };
        // SAFETY: every address comes from a live, contiguous float32 tensor of the checked size
        // on this device (copies kept in `keep` until after the launches are queued; libtorch's
        // caching allocator only reuses their memory for work ordered after ours on the stream).
        unsafe { self.loss.forward_backward(&device_inputs, &grads)? };
        drop(keep);
        let scalars = self.scalars_tensor()?;
        let mut surrogate = (inputs.poses * grad_poses.detach()).sum(Kind::Float);
        for (d, g) in inputs.disparities.iter().zip(&grad_disparities) {
            surrogate += (d * g.detach()).sum(Kind::Float);
        }
        Ok(TorchLossStep { surrogate, scalars, grad_disparities, grad_poses })
    }

    /// Forward only (no gradients); returns the device tensor of the twelve scalars as
    /// [`TorchLossStep::scalars`]. Read the per-pixel maps with [`Self::scale0_maps`].
    pub fn forward(&mut self, inputs: &TorchLossInputs) -> Result<Tensor, CudaError> {
        let mut keep = Vec::new();
        let device_inputs = self.device_inputs(inputs, &mut keep)?;
        // SAFETY: as in `step`.
        unsafe { self.loss.forward(&device_inputs)? };
        drop(keep);
        self.scalars_tensor()
    }

    /// Copies (on the device) the scale-0 maps of the last [`Self::step`] or [`Self::forward`]
    /// into fresh tensors: the per-pixel minimum error `[H, W]` and the kept mask `[H, W]` (1.0
    /// where a warped source beat the identity errors, i.e. not auto-masked; all ones when the
    /// automask is off). `n_sources` is the number of sources of that launch.
    pub fn scale0_maps(
        &self,
        (width, height): (usize, usize),
        n_sources: usize,
    ) -> Result<(Tensor, Tensor), CudaError> {
        let Some((min_ptr, winners_ptr)) = self.loss.scale0_map_ptrs() else {
            return Err(CudaError::invalid("loss maps", "no evaluation has run yet"));
        };
        let device = Device::Cuda(self.ordinal);
        let (h, w) = (height as i64, width as i64);
        // SAFETY: the loss buffers hold at least H x W values of the last launch's layout on this
        // device; the clones are ordered on the same stream before any later launch rewrites them.
        let (min_error, winners) = unsafe {
            (
                Tensor::f_from_blob(min_ptr as *const u8, &[h, w], &[w, 1], Kind::Float, device),
                Tensor::f_from_blob(
                    winners_ptr as *const u8,
                    &[h, w],
                    &[w, 1],
                    Kind::Uint8,
                    device,
                ),
            )
        };
        let torch_err = |e: tch::TchError| CudaError::Driver {
            during: "reading the loss maps".into(),
            detail: e.to_string(),
        };
        let min_error = min_error.map_err(torch_err)?.copy();
        let winners = winners.map_err(torch_err)?;
        let kept = if self.automask {
            winners.ge(n_sources as i64).to_kind(Kind::Float)
        } else {
            Tensor::ones([h, w], (Kind::Float, device))
        };
        Ok((min_error, kept))
    }
}

/// A host frame preprocessed on the GPU into a new [1, 3, H, W] float tensor on CUDA device
/// `ordinal` (the live path's network input when libtorch runs on CUDA).
pub fn preprocess_to_tensor(
    pre: &mut FramePreprocessor,
    frame: &PackedFrame,
    (width, height): (usize, usize),
    resize: Resize,
    norm: &Normalization,
    ordinal: usize,
) -> Result<Tensor, CudaError> {
    let out =
        Tensor::zeros([1, 3, height as i64, width as i64], (Kind::Float, Device::Cuda(ordinal)));
    // SAFETY: `out` is a fresh contiguous float tensor of 3 x height x width on this device.
    unsafe { pre.run(frame, out.data_ptr() as u64, width, height, resize, norm)? };
    Ok(out)
}
