//! Our kernels on a CUDA device: cudarc loads the driver at run time (a machine without CUDA gets
//! [`CudaError::NoDriver`], never a crash), retains the device's primary context (the one
//! libtorch's runtime uses), compiles the kernels with NVRTC for the device's compute capability
//! (PTX cached on disk) and launches them on raw device pointers — our own buffers or libtorch's
//! tensors (`Tensor::data_ptr()`).
//!
//! Streams: every launch goes to the legacy default (null) stream. That is libtorch's current
//! stream unless the caller installed another with a stream guard, so our kernels are ordered
//! after the libtorch work that produced their inputs and before the work that consumes their
//! outputs, with no host synchronisation.
//!
//! The fused self-supervised loss on these kernels is [`super::fused_loss`] (re-exported here).

use super::CudaError;
use super::nvrtc;
use super::sources;
use super::{Normalization, PixelFormat, Resize};
use cudarc::driver::{
    CudaContext, CudaFunction, CudaSlice, CudaStream, DevicePtr, DeviceRepr, LaunchConfig,
    PushKernelArg, ValidAsZeroBits,
};
use std::sync::Arc;

pub use super::fused_loss::{DeviceLossGrads, DeviceLossInputs, FusedLossGpu, LossScalars};

/// A raw device address (CUdeviceptr), e.g. `tensor.data_ptr() as u64`.
pub type DevicePtrRaw = u64;

pub(super) fn driver_err(
    during: &str,
) -> impl FnOnce(cudarc::driver::DriverError) -> CudaError + '_ {
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
    pub(super) stream: Arc<CudaStream>,
    /// `compute_XY` of the device, the architecture the PTX was compiled for.
    pub arch: String,
    /// The device's name as the driver reports it.
    pub device_name: String,
    /// NVRTC used (path, version).
    pub nvrtc: nvrtc::NvrtcInfo,
    preprocess: CudaFunction,
    upsample: CudaFunction,
    upsample_adjoint: CudaFunction,
    pub(super) loss: LossFunctions,
}

pub(super) struct LossFunctions {
    pub(super) pose_matrices: CudaFunction,
    pub(super) identity_error: CudaFunction,
    pub(super) forward: CudaFunction,
    pub(super) backward: CudaFunction,
    pub(super) smooth_sum: CudaFunction,
    pub(super) smooth_forward: CudaFunction,
    pub(super) disparity_backward: CudaFunction,
    pub(super) finalize: CudaFunction,
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

    pub(super) fn launch<P: DeviceRepr>(
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
        frame: &super::PackedFrame,
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
