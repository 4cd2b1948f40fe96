//! The fused self-supervised loss on the GPU ([`FusedLossGpu`]): the device workspace, the
//! kernels' parameter block, and the forward and backward launches of kernels/loss.cu on raw
//! device pointers (ours or libtorch's). Only [`FusedLossGpu::scalars`] copies (twelve floats) to
//! the host, and only when called.

use super::CudaError;
use super::device::{CudaKernels, DevicePtrRaw, driver_err};
use super::loss_contract::{MAX_SCALES, MAX_SOURCES, check_geometry, disparity_range};
use crate::loss::{LossConfig, ScaleLoss};
use cudarc::driver::{CudaSlice, DeviceRepr, LaunchConfig};
use std::sync::Arc;

/// The kernels' `LdLossParams` (kernels/loss.cu), field for field.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
struct LossParams {
    target: u64,
    sources: [u64; MAX_SOURCES],
    disp: [u64; MAX_SCALES],
    pyramid: [u64; MAX_SCALES],
    noise: u64,
    poses: u64,
    transforms: u64,
    winners: u64,
    min_error: u64,
    id_min: u64,
    id_arg: u64,
    grad_full: u64,
    grad_disp: [u64; MAX_SCALES],
    grad_poses: u64,
    grad_intrinsics: u64,
    scalars: u64,
    accum: u64,
    width: i32,
    height: i32,
    n_sources: i32,
    n_scales: i32,
    automask: i32,
    invert_mask: i32,
    fx: f32,
    fy: f32,
    cx: f32,
    cy: f32,
    min_disp: f32,
    max_disp: f32,
    ssim_weight: f32,
    smoothness_weight: f32,
}
// SAFETY: plain-old-data matching `LdLossParams` (pointers as 64-bit addresses).
unsafe impl DeviceRepr for LossParams {}

/// Doubles in the kernels' accumulator (`LD_ACC_SIZE`).
const ACC_SIZE: usize = 20 + 12 * MAX_SOURCES + 4;
/// Floats of the kernels' scalar output (`LD_SCALARS`).
const SCALARS: usize = 12;
const TILE_W: u32 = 32;
const TILE_H: u32 = 8;

/// Inputs of the fused loss in device memory: [`crate::loss::LossInputs`] with device pointers
/// for the slices (the same shapes).
#[derive(Clone, Debug, Default)]
pub struct DeviceLossInputs {
    pub width: usize,
    pub height: usize,
    /// Planar 3 x H x W floats.
    pub target: DevicePtrRaw,
    pub sources: Vec<DevicePtrRaw>,
    /// Scale s: (H >> s) x (W >> s) floats.
    pub disparities: Vec<DevicePtrRaw>,
    /// Scale s: 3 x (H >> s) x (W >> s) floats.
    pub target_pyramid: Vec<DevicePtrRaw>,
    /// n_sources x 6 floats (axis-angle, translation): the pose network's output.
    pub poses: DevicePtrRaw,
    pub invert: Vec<bool>,
    /// fx, fy, cx, cy at W x H.
    pub intrinsics: [f32; 4],
    /// n_sources x H x W floats added to the identity errors, or None.
    pub tie_break_noise: Option<DevicePtrRaw>,
}

/// Where the backward pass writes (device memory, overwritten).
#[derive(Clone, Debug, Default)]
pub struct DeviceLossGrads {
    /// Scale s: (H >> s) x (W >> s) floats, d total / d disparity.
    pub grad_disparities: Vec<DevicePtrRaw>,
    /// n_sources x 6 floats, d total / d pose; None = internal buffer.
    pub grad_poses: Option<DevicePtrRaw>,
}

/// The loss values (copied from the device by [`FusedLossGpu::scalars`]).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct LossScalars {
    pub total: f32,
    pub photometric: f32,
    pub smoothness: f32,
    pub masked_fraction: f32,
    pub per_scale: Vec<ScaleLoss>,
}

/// The fused loss on the GPU with its device workspace (reused while the size is unchanged).
pub struct FusedLossGpu {
    kernels: Arc<CudaKernels>,
    config: LossConfig,
    /// (min_disp, max_disp) of `config`, checked once in [`FusedLossGpu::new`].
    disparity_range: (f32, f32),
    layout: Option<(usize, usize, usize, usize)>,
    transforms: Option<CudaSlice<f32>>,
    winners: Option<CudaSlice<u8>>,
    id_min: Option<CudaSlice<f32>>,
    id_arg: Option<CudaSlice<u8>>,
    grad_full: Option<CudaSlice<f32>>,
    grad_poses: Option<CudaSlice<f32>>,
    grad_intrinsics: CudaSlice<f32>,
    min_error: Option<CudaSlice<f32>>,
    scalars: CudaSlice<f32>,
    accum: CudaSlice<f64>,
    n_scales: usize,
}

impl FusedLossGpu {
    /// A loss evaluator on `kernels`' device.
    pub fn new(kernels: Arc<CudaKernels>, config: LossConfig) -> Result<Self, CudaError> {
        let disparity_range = disparity_range(&config)?;
        Ok(Self {
            disparity_range,
            grad_intrinsics: kernels.zeros(4)?,
            scalars: kernels.zeros(SCALARS)?,
            accum: kernels.zeros(ACC_SIZE)?,
            kernels,
            config,
            layout: None,
            transforms: None,
            winners: None,
            id_min: None,
            id_arg: None,
            grad_full: None,
            grad_poses: None,
            min_error: None,
            n_scales: 0,
        })
    }

    fn ensure(&mut self, w: usize, h: usize, n: usize, scales: usize) -> Result<(), CudaError> {
        if self.layout == Some((w, h, n, scales)) {
            return Ok(());
        }
        let k = &self.kernels;
        let hw = w * h;
        self.transforms = Some(k.zeros(12 * n)?);
        self.winners = Some(k.zeros(scales * hw)?);
        self.id_min = Some(k.zeros(hw)?);
        self.id_arg = Some(k.zeros(hw)?);
        self.grad_full = Some(k.zeros(scales * hw)?);
        self.grad_poses = Some(k.zeros(6 * n)?);
        self.min_error = Some(k.zeros(hw)?);
        self.layout = Some((w, h, n, scales));
        Ok(())
    }

    fn params(&mut self, inputs: &DeviceLossInputs) -> Result<LossParams, CudaError> {
        let (w, h) = (inputs.width, inputs.height);
        let n = inputs.sources.len();
        let scales = inputs.disparities.len();
        check_geometry(w, h, n, scales, inputs.intrinsics)?;
        if inputs.invert.len() != n || inputs.target_pyramid.len() != scales {
            return Err(CudaError::invalid(
                "loss inputs",
                format!(
                    "{} invert flags, {} pyramid levels",
                    inputs.invert.len(),
                    inputs.target_pyramid.len()
                ),
            ));
        }
        let null = [inputs.target, inputs.poses]
            .iter()
            .chain(&inputs.sources)
            .chain(&inputs.disparities)
            .chain(&inputs.target_pyramid)
            .any(|&p| p == 0);
        if null {
            return Err(CudaError::invalid("loss inputs", "a null device pointer"));
        }
        let [fx, fy, cx, cy] = inputs.intrinsics;
        let (min_disp, max_disp) = self.disparity_range;
        self.ensure(w, h, n, scales)?;
        self.n_scales = scales;
        let k = &self.kernels;
        let opt = |s: &Option<CudaSlice<f32>>| s.as_ref().map_or(0, |s| k.ptr(s));
        let mut p = LossParams {
            target: inputs.target,
            noise: inputs.tie_break_noise.unwrap_or(0),
            poses: inputs.poses,
            transforms: opt(&self.transforms),
            winners: self.winners.as_ref().map_or(0, |s| k.ptr(s)),
            min_error: opt(&self.min_error),
            id_min: opt(&self.id_min),
            id_arg: self.id_arg.as_ref().map_or(0, |s| k.ptr(s)),
            grad_full: opt(&self.grad_full),
            scalars: k.ptr(&self.scalars),
            accum: k.ptr(&self.accum),
            width: w as i32,
            height: h as i32,
            n_sources: n as i32,
            n_scales: scales as i32,
            automask: i32::from(self.config.automask),
            invert_mask: inputs.invert.iter().enumerate().map(|(i, &v)| i32::from(v) << i).sum(),
            fx,
            fy,
            cx,
            cy,
            min_disp,
            max_disp,
            ssim_weight: self.config.ssim_weight,
            smoothness_weight: self.config.smoothness_weight,
            ..Default::default()
        };
        p.sources[..n].copy_from_slice(&inputs.sources);
        p.disp[..scales].copy_from_slice(&inputs.disparities);
        p.pyramid[..scales].copy_from_slice(&inputs.target_pyramid);
        Ok(p)
    }

    fn run_forward(
        &mut self,
        p: &LossParams,
        w: usize,
        h: usize,
        scales: usize,
    ) -> Result<(), CudaError> {
        let k = &self.kernels;
        let lf = &k.loss;
        k.stream.memset_zeros(&mut self.accum).map_err(driver_err("clearing the accumulators"))?;
        let tiles = ((w as u32).div_ceil(TILE_W), (h as u32).div_ceil(TILE_H));
        let one = LaunchConfig { grid_dim: (1, 1, 1), block_dim: (32, 1, 1), shared_mem_bytes: 0 };
        let tiled = |z: u32| LaunchConfig {
            grid_dim: (tiles.0, tiles.1, z),
            block_dim: (TILE_W, TILE_H, 1),
            shared_mem_bytes: 0,
        };
        let flat = LaunchConfig {
            grid_dim: (((w * h) as u32).div_ceil(256), 1, scales as u32),
            block_dim: (256, 1, 1),
            shared_mem_bytes: 0,
        };
        k.launch(&lf.pose_matrices, one, p, "launching ld_pose_matrices")?;
        if self.config.automask {
            k.launch(&lf.identity_error, tiled(1), p, "launching ld_identity_error")?;
        }
        k.launch(&lf.smooth_sum, flat, p, "launching ld_smooth_sum")?;
        k.launch(&lf.forward, tiled(scales as u32), p, "launching ld_loss_forward")?;
        k.launch(&lf.smooth_forward, flat, p, "launching ld_smooth_forward")?;
        Ok(())
    }

    /// Launches the forward passes (no gradients); read the values with [`Self::scalars`].
    ///
    /// # Safety
    /// Every address in `inputs` must point to live device memory of the documented size on
    /// this device, written by work ordered before these launches on the default stream.
    pub unsafe fn forward(&mut self, inputs: &DeviceLossInputs) -> Result<(), CudaError> {
        let mut p = self.params(inputs)?;
        let scales = inputs.disparities.len();
        self.run_forward(&p, inputs.width, inputs.height, scales)?;
        p.grad_poses = 0;
        p.grad_intrinsics = 0;
        let one = LaunchConfig { grid_dim: (1, 1, 1), block_dim: (32, 1, 1), shared_mem_bytes: 0 };
        self.kernels.launch(&self.kernels.loss.finalize, one, &p, "launching ld_finalize")
    }

    /// Launches forward and backward: gradients land in `grads` (and the pose gradients in the
    /// internal buffer when `grads.grad_poses` is None); nothing is copied to the host.
    ///
    /// # Safety
    /// As for [`Self::forward`], and every address in `grads` must point to device memory of the
    /// documented size that nothing else uses until these launches complete.
    pub unsafe fn forward_backward(
        &mut self,
        inputs: &DeviceLossInputs,
        grads: &DeviceLossGrads,
    ) -> Result<(), CudaError> {
        let mut p = self.params(inputs)?;
        let (w, h) = (inputs.width, inputs.height);
        let scales = inputs.disparities.len();
        if grads.grad_disparities.len() != scales || grads.grad_disparities.contains(&0) {
            return Err(CudaError::invalid(
                "grad_disparities",
                format!("{} non-null buffers needed for {scales} scales", scales),
            ));
        }
        p.grad_disp[..scales].copy_from_slice(&grads.grad_disparities);
        p.grad_poses = match grads.grad_poses {
            Some(ptr) if ptr != 0 => ptr,
            _ => self.grad_poses.as_ref().map_or(0, |s| self.kernels.ptr(s)),
        };
        p.grad_intrinsics = self.kernels.ptr(&self.grad_intrinsics);
        self.run_forward(&p, w, h, scales)?;
        let k = &self.kernels;
        let lf = &k.loss;
        let tiled = LaunchConfig {
            grid_dim: ((w as u32).div_ceil(TILE_W), (h as u32).div_ceil(TILE_H), scales as u32),
            block_dim: (TILE_W, TILE_H, 1),
            shared_mem_bytes: 0,
        };
        k.launch(&lf.backward, tiled, &p, "launching ld_loss_backward")?;
        let lowres = LaunchConfig {
            grid_dim: ((w as u32).div_ceil(16), (h as u32).div_ceil(16), scales as u32),
            block_dim: (16, 16, 1),
            shared_mem_bytes: 0,
        };
        k.launch(&lf.disparity_backward, lowres, &p, "launching ld_disparity_backward")?;
        let one = LaunchConfig { grid_dim: (1, 1, 1), block_dim: (32, 1, 1), shared_mem_bytes: 0 };
        k.launch(&lf.finalize, one, &p, "launching ld_finalize")
    }

    /// Copies the loss values of the last launch to the host (synchronises the stream).
    pub fn scalars(&self) -> Result<LossScalars, CudaError> {
        let v = self.kernels.download(&self.scalars)?;
        let s = self.n_scales;
        Ok(LossScalars {
            total: v[0],
            photometric: v[1],
            smoothness: v[2],
            masked_fraction: v[3],
            per_scale: (0..s)
                .map(|i| ScaleLoss { photometric: v[4 + i], smoothness: v[8 + i] })
                .collect(),
        })
    }

    /// The device buffer of the twelve scalars (total, photometric, smoothness, masked fraction,
    /// photometric per scale [4], smoothness per scale [4]) for consumers that stay on the GPU.
    pub fn scalars_buffer(&self) -> &CudaSlice<f32> {
        &self.scalars
    }

    /// Pose gradients of the last backward when no external buffer was given (n x 6, synchronises).
    pub fn grad_poses(&self) -> Result<Vec<f32>, CudaError> {
        match &self.grad_poses {
            Some(g) => self.kernels.download(g),
            None => Ok(Vec::new()),
        }
    }

    /// d total / d (fx, fy, cx, cy) of the last backward (synchronises).
    pub fn grad_intrinsics(&self) -> Result<[f32; 4], CudaError> {
        let v = self.kernels.download(&self.grad_intrinsics)?;
        Ok([v[0], v[1], v[2], v[3]])
    }

    /// Device addresses of the scale-0 per-pixel minimum (`H x W` f32) and winner codes
    /// (`H x W` u8, the first plane of the winners buffer; with the automask a code >= the
    /// number of sources means a warped source won, i.e. the pixel is kept) of the last
    /// evaluation, or None before the first. The buffers are reused by the next launch.
    pub fn scale0_map_ptrs(&self) -> Option<(DevicePtrRaw, DevicePtrRaw)> {
        match (&self.min_error, &self.winners) {
            (Some(m), Some(w)) if self.layout.is_some() => {
                Some((self.kernels.ptr(m), self.kernels.ptr(w)))
            }
            _ => None,
        }
    }

    /// Scale-0 per-pixel minimum and winners of the last evaluation (synchronises; for tests
    /// and visualisation).
    pub fn maps(&self) -> Result<(Vec<f32>, Vec<u8>), CudaError> {
        let (Some(m), Some(w), Some((width, height, _, _))) =
            (&self.min_error, &self.winners, self.layout)
        else {
            return Ok((Vec::new(), Vec::new()));
        };
        let mut winners = self.kernels.download(w)?;
        winners.truncate(width * height);
        Ok((self.kernels.download(m)?, winners))
    }
}
