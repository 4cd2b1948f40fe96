//! Our kernels on a CUDA device: cudarc loads the driver at run time (a machine without CUDA gets
//! [`CudaError::NoDriver`], never a crash), retains the device's primary context (the one
//! libtorch's runtime uses), compiles the kernels with NVRTC for the device's compute capability
//! (PTX cached on disk) and launches them on raw device pointers — our own buffers or libtorch's
//! tensors (`Tensor::data_ptr()`).
//!
//! Streams: every launch goes to the legacy default (null) stream. That is libtorch's current
//! stream unless the caller installed another with a stream guard, so our kernels are ordered
//! after the libtorch work that produced their inputs and before the work that consumes their
//! outputs, with no host synchronisation. Only [`FusedLossGpu::scalars`] copies (twelve floats)
//! to the host, and only when called.

use super::CudaError;
use super::nvrtc;
use super::sources;
use super::twin::common::{MAX_SCALES, MAX_SOURCES};
use super::twin::{FusedLossConfig, Normalization, PixelFormat, Resize};
use cudarc::driver::{
    CudaContext, CudaFunction, CudaSlice, CudaStream, DevicePtr, DeviceRepr, LaunchConfig,
    PushKernelArg, ValidAsZeroBits,
};
use std::sync::Arc;

/// A raw device address (CUdeviceptr), e.g. `tensor.data_ptr() as u64`.
pub type DevicePtrRaw = u64;

fn driver_err(during: &str) -> impl FnOnce(cudarc::driver::DriverError) -> CudaError + '_ {
    move |e| CudaError::Driver { during: during.to_string(), detail: format!("{e:?}") }
}

/// Whether a CUDA driver library can be loaded on this machine (no device query).
pub fn driver_present() -> bool {
    // SAFETY: only probes dlopen of libcuda by name.
    unsafe { cudarc::driver::sys::is_culib_present() }
}

/// The loaded kernel modules on one device.
pub struct CudaKernels {
    ctx: Arc<CudaContext>,
    stream: Arc<CudaStream>,
    /// `compute_XY` of the device, the architecture the PTX was compiled for.
    pub arch: String,
    /// The device's name as the driver reports it.
    pub device_name: String,
    /// NVRTC used (path, version).
    pub nvrtc: nvrtc::NvrtcInfo,
    preprocess: CudaFunction,
    upsample: CudaFunction,
    upsample_adjoint: CudaFunction,
    loss: LossFunctions,
}

struct LossFunctions {
    pose_matrices: CudaFunction,
    identity_error: CudaFunction,
    forward: CudaFunction,
    backward: CudaFunction,
    smooth_sum: CudaFunction,
    smooth_forward: CudaFunction,
    disparity_backward: CudaFunction,
    finalize: CudaFunction,
}

/// A packed frame already in device memory.
#[derive(Clone, Copy, Debug)]
pub struct DeviceFrame {
    pub data: DevicePtrRaw,
    pub width: usize,
    pub height: usize,
    /// Bytes per row (luma rows for NV12).
    pub pitch: usize,
    pub format: PixelFormat,
    /// NV12 only: the interleaved chroma plane (e.g. `data + pitch * height`).
    pub uv: DevicePtrRaw,
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
struct NormParams {
    mean: [f32; 3],
    inv_std: [f32; 3],
}
// SAFETY: plain-old-data with the layout of `LdNorm` in kernels/preprocess.cu.
unsafe impl DeviceRepr for NormParams {}

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

impl CudaKernels {
    /// Opens device `ordinal`, compiles (or loads from the PTX cache) and loads every module.
    pub fn new(ordinal: usize) -> Result<Self, CudaError> {
        if !driver_present() {
            return Err(CudaError::NoDriver {
                detail: "libcuda.so / libcuda.so.1 not found".into(),
            });
        }
        let count = CudaContext::device_count().map_err(|e| CudaError::NoDriver {
            detail: format!("cuInit / cuDeviceGetCount: {e:?}"),
        })?;
        if ordinal >= count.max(0) as usize {
            return Err(CudaError::NoDevice { ordinal, count: count.max(0) as usize });
        }
        let ctx = CudaContext::new(ordinal).map_err(driver_err("retaining the primary context"))?;
        // SAFETY: every allocation, copy and launch of ours goes to the one default stream, so
        // cudarc's per-buffer events (an event record per access) are redundant.
        unsafe { ctx.disable_event_tracking() };
        let (major, minor) = ctx.compute_capability().map_err(driver_err("compute capability"))?;
        let device_name = ctx.name().unwrap_or_else(|_| format!("CUDA device {ordinal}"));
        let arch = format!("compute_{major}{minor}");
        let nvrtc_info = nvrtc::load_nvrtc()?;
        let cache = nvrtc::cache_dir();
        let mut modules = Vec::new();
        for module in sources::ALL {
            let (ptx, _) = nvrtc::cached_ptx(&module, &arch, &cache)?;
            let loaded = ctx
                .load_module(cudarc::nvrtc::Ptx::from_src(ptx))
                .map_err(driver_err(&format!(
                    "loading kernels/{}.cu (PTX {arch} from NVRTC {}.{}; the driver must support that \
                     PTX version: use the NVRTC of the installed CUDA, e.g. LIVEDEPTH_NVRTC)",
                    module.name, nvrtc_info.version.0, nvrtc_info.version.1
                )))?;
            modules.push(loaded);
        }
        let f = |m: usize, name: &str| {
            modules[m].load_function(name).map_err(driver_err(&format!("looking up kernel {name}")))
        };
        let loss = LossFunctions {
            pose_matrices: f(2, "ld_pose_matrices")?,
            identity_error: f(2, "ld_identity_error")?,
            forward: f(2, "ld_loss_forward")?,
            backward: f(2, "ld_loss_backward")?,
            smooth_sum: f(2, "ld_smooth_sum")?,
            smooth_forward: f(2, "ld_smooth_forward")?,
            disparity_backward: f(2, "ld_disparity_backward")?,
            finalize: f(2, "ld_finalize")?,
        };
        Ok(Self {
            stream: ctx.default_stream(),
            preprocess: f(0, "ld_preprocess")?,
            upsample: f(1, "ld_upsample_bilinear")?,
            upsample_adjoint: f(1, "ld_upsample_bilinear_adjoint")?,
            loss,
            ctx,
            arch,
            device_name,
            nvrtc: nvrtc_info,
        })
    }

    /// The stream every launch uses (the legacy default stream).
    pub fn stream(&self) -> &Arc<CudaStream> {
        &self.stream
    }

    /// The retained primary context.
    pub fn context(&self) -> &Arc<CudaContext> {
        &self.ctx
    }

    /// Waits for all launched work.
    pub fn synchronize(&self) -> Result<(), CudaError> {
        self.stream.synchronize().map_err(driver_err("synchronising"))
    }

    /// Peak DRAM bandwidth in bytes/s from the memory clock and bus width (double data rate).
    pub fn peak_bandwidth(&self) -> Result<f64, CudaError> {
        use cudarc::driver::sys::CUdevice_attribute as A;
        let clock_khz = self
            .ctx
            .attribute(A::CU_DEVICE_ATTRIBUTE_MEMORY_CLOCK_RATE)
            .map_err(driver_err("memory clock"))?;
        let bus_bits = self
            .ctx
            .attribute(A::CU_DEVICE_ATTRIBUTE_GLOBAL_MEMORY_BUS_WIDTH)
            .map_err(driver_err("bus width"))?;
        Ok(2.0 * clock_khz as f64 * 1e3 * bus_bits as f64 / 8.0)
    }

    /// Copies host data into a new device buffer.
    pub fn upload<T: DeviceRepr>(&self, data: &[T]) -> Result<CudaSlice<T>, CudaError> {
        self.stream.clone_htod(data).map_err(driver_err("copying to the device"))
    }

    /// A zeroed device buffer.
    pub fn zeros<T: DeviceRepr + ValidAsZeroBits>(
        &self,
        len: usize,
    ) -> Result<CudaSlice<T>, CudaError> {
        self.stream.alloc_zeros(len.max(1)).map_err(driver_err("allocating device memory"))
    }

    /// Copies a device buffer to the host (synchronises).
    pub fn download<T: DeviceRepr>(&self, data: &CudaSlice<T>) -> Result<Vec<T>, CudaError> {
        self.stream.clone_dtoh(data).map_err(driver_err("copying to the host"))
    }

    /// The raw address of one of our buffers, to pass where a [`DevicePtrRaw`] is expected.
    pub fn ptr<T>(&self, data: &CudaSlice<T>) -> DevicePtrRaw {
        let (ptr, _record) = data.device_ptr(&self.stream);
        ptr
    }

    fn launch<P: DeviceRepr>(
        &self,
        f: &CudaFunction,
        cfg: LaunchConfig,
        params: &P,
        what: &str,
    ) -> Result<(), CudaError> {
        let mut b = self.stream.launch_builder(f);
        b.arg(params);
        // SAFETY: each kernel takes exactly one by-value parameter struct whose layout matches
        // `P`; the addresses inside were validated by the caller's contract.
        unsafe { b.launch(cfg) }.map(|_| ()).map_err(driver_err(what))
    }

    /// Preprocesses a device frame into `dst` (3 x dst_h x dst_w floats).
    ///
    /// # Safety
    /// `frame.data` (and `frame.uv` for NV12) must address the whole frame as described and `dst`
    /// 3 * dst_w * dst_h floats, both on this device and alive until the stream reaches the launch.
    pub unsafe fn preprocess(
        &self,
        frame: &DeviceFrame,
        dst: DevicePtrRaw,
        dst_w: usize,
        dst_h: usize,
        resize: Resize,
        norm: &Normalization,
    ) -> Result<(), CudaError> {
        if frame.width == 0 || frame.height == 0 || dst_w == 0 || dst_h == 0 {
            return Err(CudaError::invalid(
                "preprocess size",
                format!("{}x{} -> {dst_w}x{dst_h}", frame.width, frame.height),
            ));
        }
        let inv_std = norm.inv_std()?;
        let (format, channels, uv_pitch) = match frame.format {
            PixelFormat::Rgb => (0i32, 3i32, 0i32),
            PixelFormat::Rgba => (0, 4, 0),
            PixelFormat::Nv12 { uv_pitch } => (1, 1, uv_pitch as i32),
        };
        let cfg = LaunchConfig {
            grid_dim: ((dst_w as u32).div_ceil(32), (dst_h as u32).div_ceil(8), 1),
            block_dim: (32, 8, 1),
            shared_mem_bytes: 0,
        };
        let mode = i32::from(resize == Resize::Area);
        let norm = NormParams { mean: norm.mean, inv_std };
        let mut b = self.stream.launch_builder(&self.preprocess);
        let (pitch, src_w, src_h, dw, dh) = (
            frame.pitch as i32,
            frame.width as i32,
            frame.height as i32,
            dst_w as i32,
            dst_h as i32,
        );
        b.arg(&frame.data).arg(&pitch).arg(&channels).arg(&frame.uv).arg(&uv_pitch).arg(&format);
        b.arg(&src_w).arg(&src_h).arg(&dst).arg(&dw).arg(&dh).arg(&mode).arg(&norm);
        // SAFETY: argument list matches `ld_preprocess`; addresses per this function's contract.
        unsafe { b.launch(cfg) }.map(|_| ()).map_err(driver_err("launching ld_preprocess"))
    }

    /// Bilinear upsampling of `planes` lw x lh maps at `lo` into hw x hh maps at `hi`.
    ///
    /// # Safety
    /// `lo` and `hi` must address planes * lw * lh and planes * hw * hh floats on this device.
    pub unsafe fn upsample_bilinear(
        &self,
        lo: DevicePtrRaw,
        (lw, lh): (usize, usize),
        hi: DevicePtrRaw,
        (hw, hh): (usize, usize),
        planes: usize,
    ) -> Result<(), CudaError> {
        let cfg = LaunchConfig {
            grid_dim: ((hw as u32).div_ceil(32), (hh as u32).div_ceil(8), planes as u32),
            block_dim: (32, 8, 1),
            shared_mem_bytes: 0,
        };
        let (a, b2, c, d, e) = (lw as i32, lh as i32, hw as i32, hh as i32, planes as i32);
        let mut b = self.stream.launch_builder(&self.upsample);
        b.arg(&lo).arg(&a).arg(&b2).arg(&hi).arg(&c).arg(&d).arg(&e);
        // SAFETY: argument list matches `ld_upsample_bilinear`.
        unsafe { b.launch(cfg) }.map(|_| ()).map_err(driver_err("launching ld_upsample_bilinear"))
    }

    /// Adjoint of [`Self::upsample_bilinear`]: hw x hh gradients -> lw x lh (added when
    /// `accumulate`).
    ///
    /// # Safety
    /// As for [`Self::upsample_bilinear`].
    pub unsafe fn upsample_bilinear_adjoint(
        &self,
        g_hi: DevicePtrRaw,
        (hw, hh): (usize, usize),
        g_lo: DevicePtrRaw,
        (lw, lh): (usize, usize),
        planes: usize,
        accumulate: bool,
    ) -> Result<(), CudaError> {
        let cfg = LaunchConfig {
            grid_dim: ((lw as u32).div_ceil(16), (lh as u32).div_ceil(16), planes as u32),
            block_dim: (16, 16, 1),
            shared_mem_bytes: 0,
        };
        let (a, b2, c, d, e, acc) =
            (hw as i32, hh as i32, lw as i32, lh as i32, planes as i32, i32::from(accumulate));
        let mut b = self.stream.launch_builder(&self.upsample_adjoint);
        b.arg(&g_hi).arg(&a).arg(&b2).arg(&g_lo).arg(&c).arg(&d).arg(&e).arg(&acc);
        // SAFETY: argument list matches `ld_upsample_bilinear_adjoint`.
        unsafe { b.launch(cfg) }
            .map(|_| ())
            .map_err(driver_err("launching ld_upsample_bilinear_adjoint"))
    }
}

/// Inputs of the fused loss in device memory (shapes as in [`super::twin::FusedLossInputs`]).
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
    pub photometric_per_scale: Vec<f32>,
    pub smoothness_per_scale: Vec<f32>,
}

/// The fused loss on the GPU with its device workspace (reused while the size is unchanged).
pub struct FusedLossGpu {
    kernels: Arc<CudaKernels>,
    config: FusedLossConfig,
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
    pub fn new(kernels: Arc<CudaKernels>, config: FusedLossConfig) -> Result<Self, CudaError> {
        config.disparity_range()?;
        Ok(Self {
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
        if !(1..=MAX_SOURCES).contains(&n) || !(1..=MAX_SCALES).contains(&scales) {
            return Err(CudaError::invalid("loss inputs", format!("{n} sources, {scales} scales")));
        }
        if (w >> (scales - 1)) < 2 || (h >> (scales - 1)) < 2 {
            return Err(CudaError::invalid("image size", format!("{w}x{h} with {scales} scales")));
        }
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
        if !(fx.is_finite()
            && fy.is_finite()
            && cx.is_finite()
            && cy.is_finite()
            && fx != 0.0
            && fy != 0.0)
        {
            return Err(CudaError::invalid("intrinsics", format!("{:?}", inputs.intrinsics)));
        }
        let (min_disp, max_disp) = self.config.disparity_range()?;
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
            photometric_per_scale: v[4..4 + s].to_vec(),
            smoothness_per_scale: v[8..8 + s].to_vec(),
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

/// Live-path preprocessing of host frames (what a system-memory appsink hands over): one
/// host-to-device copy into a reused staging buffer, then [`CudaKernels::preprocess`] straight
/// into the network's input buffer (e.g. a libtorch tensor's `data_ptr`).
pub struct FramePreprocessor {
    kernels: Arc<CudaKernels>,
    staging: Option<CudaSlice<u8>>,
}

impl FramePreprocessor {
    pub fn new(kernels: Arc<CudaKernels>) -> Self {
        Self { kernels, staging: None }
    }

    /// Uploads `frame` and writes 3 x dst_h x dst_w normalised floats at `dst`.
    ///
    /// # Safety
    /// `dst` must address 3 * dst_w * dst_h floats of device memory on this device that nothing
    /// else uses until the launch completes.
    pub unsafe fn run(
        &mut self,
        frame: &super::twin::PackedFrame,
        dst: DevicePtrRaw,
        dst_w: usize,
        dst_h: usize,
        resize: Resize,
        norm: &Normalization,
    ) -> Result<(), CudaError> {
        let uv_offset = frame.validate()?;
        if dst == 0 {
            return Err(CudaError::invalid("preprocess output", "a null device pointer"));
        }
        let k = &self.kernels;
        let len = frame.data.len();
        let too_small = self.staging.as_ref().is_none_or(|s| s.len() < len);
        if too_small {
            // SAFETY: fully overwritten by the copy below before any kernel reads it.
            self.staging = Some(
                unsafe { k.stream.alloc::<u8>(len) }
                    .map_err(driver_err("allocating the staging buffer"))?,
            );
        }
        let Some(staging) = self.staging.as_mut() else {
            return Err(CudaError::invalid("staging buffer", "missing"));
        };
        let mut view = staging.slice_mut(0..len);
        k.stream
            .memcpy_htod(frame.data, &mut view)
            .map_err(driver_err("copying the frame to the device"))?;
        let base = k.ptr(staging);
        let device_frame = DeviceFrame {
            data: base,
            width: frame.width,
            height: frame.height,
            pitch: frame.pitch,
            format: frame.format,
            uv: base + uv_offset as u64,
        };
        // SAFETY: the staging buffer holds the validated frame; `dst` per this function's contract.
        unsafe { k.preprocess(&device_frame, dst, dst_w, dst_h, resize, norm) }
    }
}
