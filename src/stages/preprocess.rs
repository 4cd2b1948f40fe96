//! The `preprocess` stage of the live path: each frame resized (Pillow-exact Lanczos-3) and
//! normalised as the engine asks ([`crate::engine::DepthEngine::input_normalisation`]) on the
//! CPU into a buffer from a small pool, or, with feature `cuda` and a libtorch engine on CUDA,
//! by our CUDA kernel straight into the network's input tensor (stage `preprocess[cuda]`).
//! The input buffers and network-size images come from [`BufferPool`] and go back to it when
//! dropped (after the depth stage, in the outputs, or in a keep-latest queue that replaced the
//! frame), so the hot path allocates none of them once the pools are warm
//! (tests/live_path_allocations.rs).

use crate::engine::{Disparity, Preprocessor};
use crate::frame::{Frame, RgbImage};
use crate::pipeline::{Stage, StageError};
use crate::pool::{Pooled, Recycler};
use serde::Serialize;

/// A frame resized and normalised for the network.
pub struct PreparedFrame {
    pub frame: Frame,
    /// The frame at the network size (8-bit), kept for the outputs.
    pub resized: Pooled<RgbImage>,
    /// The normalised network input.
    pub input: NetworkInput,
}

/// Where a prepared frame's normalised network input is.
pub enum NetworkInput {
    /// Planar, 3 × H × W, in host memory (back to the pool once the depth stage has run it).
    Host(Pooled<Vec<f32>>),
    /// Already on the network's device, [1, 3, H, W] (CUDA preprocessing).
    Device(tch::Tensor),
}

/// Which preprocessing the live path runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum PreprocessPath {
    /// Pillow-exact Lanczos-3 resize + normalisation on the CPU, uploaded per frame.
    #[serde(rename = "cpu-lanczos")]
    CpuLanczos,
    /// Our CUDA kernel: upload of the packed RGB frame, area resize + normalisation in one pass
    /// into the network's input tensor.
    #[serde(rename = "cuda-area")]
    CudaArea,
}

impl PreprocessPath {
    pub fn name(self) -> &'static str {
        match self {
            PreprocessPath::CpuLanczos => "cpu-lanczos",
            PreprocessPath::CudaArea => "cuda-area",
        }
    }

    /// The pipeline stage name (shown in the live per-stage statistics and the report).
    pub fn stage_name(self) -> &'static str {
        match self {
            PreprocessPath::CpuLanczos => "preprocess",
            PreprocessPath::CudaArea => "preprocess[cuda]",
        }
    }
}

/// The live path's recycled per-frame buffers: the network inputs (preprocess → depth), and
/// the network-size images and disparities (→ outputs). Each goes back to its pool when
/// dropped, also when a keep-latest queue drops its frame.
#[derive(Clone)]
pub struct BufferPool {
    pub inputs: Recycler<Vec<f32>>,
    pub images: Recycler<RgbImage>,
    pub disparities: Recycler<Disparity>,
}

impl BufferPool {
    /// Pools keeping up to `capacity` idle buffers each; inputs hold `input_len` values.
    pub fn new(capacity: usize, input_len: usize) -> Self {
        Self {
            inputs: Recycler::new(capacity, move || vec![0.0; input_len]),
            images: Recycler::new(capacity, || RgbImage::new(0, 0)),
            disparities: Recycler::new(capacity, || Disparity::new(0, 0)),
        }
    }
}

/// The `preprocess` stage.
pub struct PreprocessStage {
    preprocessor: Preprocessor,
    pool: BufferPool,
    /// The CUDA kernel path, when it runs (feature `cuda`, libtorch on CUDA).
    #[cfg(feature = "cuda")]
    gpu: Option<gpu_preprocess::GpuPreprocess>,
}

impl PreprocessStage {
    /// A stage running `preprocessor` into buffers of `pool`, or the CUDA path `gpu` where
    /// given (see [`gpu_preprocess_for`]).
    pub fn new(
        preprocessor: Preprocessor,
        pool: BufferPool,
        #[cfg(feature = "cuda")] gpu: Option<gpu_preprocess::GpuPreprocess>,
    ) -> Self {
        Self {
            preprocessor,
            pool,
            #[cfg(feature = "cuda")]
            gpu,
        }
    }

    /// Which preprocessing this stage runs.
    pub fn path(&self) -> PreprocessPath {
        #[cfg(feature = "cuda")]
        if self.gpu.is_some() {
            return PreprocessPath::CudaArea;
        }
        PreprocessPath::CpuLanczos
    }
}

impl Stage<Frame> for PreprocessStage {
    type Out = PreparedFrame;

    fn process(&mut self, frame: Frame) -> Result<PreparedFrame, StageError> {
        #[cfg(feature = "cuda")]
        if let Some(gpu) = self.gpu.as_mut() {
            let mut resized = self.pool.images.get();
            let input = gpu.run(&frame.rgb, &mut resized)?;
            return Ok(PreparedFrame { frame, resized, input: NetworkInput::Device(input) });
        }
        let mut input = self.pool.inputs.get();
        self.preprocessor.run(&frame.rgb, &mut input)?;
        let mut resized = self.pool.images.get();
        resized.copy_from(self.preprocessor.resized());
        Ok(PreparedFrame { frame, resized, input: NetworkInput::Host(input) })
    }
}

/// The CUDA preprocessing of the live path (feature `cuda`).
#[cfg(feature = "cuda")]
pub mod gpu_preprocess {
    use crate::cuda::device::{CudaKernels, FramePreprocessor};
    use crate::cuda::torch::preprocess_to_tensor;
    use crate::cuda::{Normalization, PackedFrame, PixelFormat, Resize};
    use crate::engine::EngineError;
    use crate::frame::RgbImage;
    use std::sync::Arc;
    use tch::{Device, Kind, Tensor};

    /// Packed RGB8 host frames → normalised [1, 3, H, W] tensors on CUDA device `ordinal`
    /// (plus the 8-bit image at the network size for the outputs, read back from the device).
    pub struct GpuPreprocess {
        pre: FramePreprocessor,
        ordinal: usize,
        size: (usize, usize),
        norm: Normalization,
        /// `norm` as [1, 3, 1, 1] device tensors (to recover the 8-bit image).
        mean: Tensor,
        std: Tensor,
    }

    impl GpuPreprocess {
        /// Loads the kernels on `ordinal`; the error says why they cannot run.
        pub fn new(
            ordinal: usize,
            (width, height): (u32, u32),
            (mean, std): ([f32; 3], [f32; 3]),
        ) -> Result<Self, crate::cuda::CudaError> {
            let kernels = Arc::new(CudaKernels::new(ordinal)?);
            let device = Device::Cuda(ordinal);
            let channel_tensor = |v: &[f32; 3]| -> Result<Tensor, crate::cuda::CudaError> {
                Tensor::f_from_slice(v)
                    .and_then(|t| t.f_to_device(device))
                    .and_then(|t| t.f_view([1, 3, 1, 1]))
                    .map_err(|e| crate::cuda::CudaError::Driver {
                        during: "uploading the normalisation".into(),
                        detail: e.to_string(),
                    })
            };
            Ok(Self {
                pre: FramePreprocessor::new(kernels),
                ordinal,
                size: (width as usize, height as usize),
                norm: Normalization { mean, std },
                mean: channel_tensor(&mean)?,
                std: channel_tensor(&std)?,
            })
        }

        /// The normalised input tensor of `image`, and its 8-bit image at the network size into
        /// `resized` (reshaped, its allocation kept).
        pub fn run(
            &mut self,
            image: &RgbImage,
            resized: &mut RgbImage,
        ) -> Result<Tensor, EngineError> {
            let frame = PackedFrame {
                data: &image.data,
                width: image.width as usize,
                height: image.height as usize,
                pitch: 3 * image.width as usize,
                format: PixelFormat::Rgb,
            };
            let (w, h) = self.size;
            let input = preprocess_to_tensor(
                &mut self.pre,
                &frame,
                self.size,
                Resize::Area,
                &self.norm,
                self.ordinal,
            )
            .map_err(|e| EngineError::Internal(format!("CUDA preprocessing: {e}")))?;
            // The 8-bit network-size image for the outputs and the adapter: one small read back.
            let bytes = ((&input * &self.std + &self.mean) * 255.0)
                .f_round()?
                .f_clamp(0.0, 255.0)?
                .f_to_kind(Kind::Uint8)?
                .f_permute([0, 2, 3, 1])?
                .f_contiguous()?
                .f_to_device(Device::Cpu)?;
            resized.reshape(w as u32, h as u32);
            let n = resized.data.len();
            bytes.f_copy_data_u8(&mut resized.data, n)?;
            Ok(input)
        }
    }
}

/// The CUDA preprocessing for an engine on `device`, when feature `cuda` is on and the kernels
/// load; otherwise None (with a printed warning when CUDA was expected but failed), and the CPU
/// path runs.
#[cfg(feature = "cuda")]
pub fn gpu_preprocess_for(
    device: tch::Device,
    size: (u32, u32),
    normalisation: ([f32; 3], [f32; 3]),
) -> Option<gpu_preprocess::GpuPreprocess> {
    let tch::Device::Cuda(ordinal) = device else {
        return None;
    };
    match gpu_preprocess::GpuPreprocess::new(ordinal, size, normalisation) {
        Ok(gpu) => Some(gpu),
        Err(e) => {
            tracing::warn!(
                "warning: CUDA preprocessing unavailable ({e}); using the CPU preprocessing"
            );
            None
        }
    }
}
