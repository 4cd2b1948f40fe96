//! The libtorch backend of the engine: a network, a [`Preprocessor`], a host staging buffer and
//! a preallocated `[B,C,H,W]` input tensor on the network's device; forward passes run under
//! `no_grad` with BatchNorm in inference mode.

use super::{
    DepthEngine, Disparity, EngineError, PoseEngine, Preprocessor, RelativePose, WeightSwapStats,
};
use crate::frame::RgbImage;
use crate::model::network::{DepthNetwork, PoseNetwork};
use crate::model::{Arch, PoseArch, check_input_size};
use std::path::Path;
use tch::{Device, Kind, Tensor};

/// CUDA device 0 when libtorch sees a GPU (after loading its CUDA backend), else the CPU.
pub fn default_device() -> Device {
    if super::torch_cuda_available() { Device::Cuda(0) } else { Device::Cpu }
}

/// A zero `[batch, channels, height, width]` tensor with channels-last strides.
fn channels_last_zeros(
    batch: i64,
    channels: i64,
    height: u32,
    width: u32,
    device: Device,
) -> Result<Tensor, EngineError> {
    let nhwc =
        Tensor::f_zeros([batch, height as i64, width as i64, channels], (Kind::Float, device))?;
    Ok(nhwc.f_permute([0, 3, 1, 2])?)
}

/// Copies `host` (the first `len` values) into the first `batch` entries of `input`.
pub(crate) fn upload(
    input: &mut Tensor,
    host: &[f32],
    batch: usize,
    item_shape: [i64; 3],
) -> Result<(), EngineError> {
    let shape = [batch as i64, item_shape[0], item_shape[1], item_shape[2]];
    let len = shape.iter().product::<i64>() as usize;
    if host.len() < len {
        return Err(EngineError::Internal("staging buffer smaller than the batch".into()));
    }
    // SAFETY: `host[..len]` is a live, contiguous f32 buffer of exactly `shape` elements that
    // outlives `view`, which is only read by `copy_` before being dropped.
    let view = unsafe {
        Tensor::f_from_blob(
            host.as_ptr() as *const u8,
            &shape,
            &[shape[1] * shape[2] * shape[3], shape[2] * shape[3], shape[3], 1],
            Kind::Float,
            Device::Cpu,
        )?
    };
    let mut dst = input.f_narrow(0, 0, batch as i64)?;
    dst.f_copy_(&view)?;
    Ok(())
}

/// Depth inference with a libtorch network.
#[derive(Debug)]
pub struct TorchDepthEngine {
    network: DepthNetwork,
    preprocessor: Preprocessor,
    staging: Vec<f32>,
    input: Tensor,
    width: u32,
    height: u32,
    max_batch: usize,
    /// Disparity scale-0 output copied to the host, reused between calls.
    host_output: Vec<f32>,
    swaps: WeightSwapStats,
}

impl TorchDepthEngine {
    /// An engine running `network` at `width` x `height` (multiples of 32) on batches of up to
    /// `max_batch` frames, on the network's device. The weights are switched to channels-last
    /// strides, the faster layout for convolutions (same values, same outputs).
    pub fn new(
        mut network: DepthNetwork,
        width: u32,
        height: u32,
        max_batch: usize,
    ) -> Result<Self, EngineError> {
        check_input_size(width as i64, height as i64)?;
        network.use_channels_last();
        let max_batch = max_batch.max(1);
        let (mean, std) = network.arch().normalisation();
        let preprocessor = Preprocessor::new(width, height, mean, std)?;
        let item = preprocessor.output_len();
        let input = channels_last_zeros(max_batch as i64, 3, height, width, network.device())?;
        Ok(Self {
            network,
            preprocessor,
            staging: vec![0.0; item * max_batch],
            input,
            width,
            height,
            max_batch,
            host_output: vec![0.0; (width * height) as usize * max_batch],
            swaps: WeightSwapStats::default(),
        })
    }

    /// Loads `arch` weights from a checkpoint folder (encoder.pth + depth.pth) or a safetensors
    /// file onto `device` (see [`default_device`]) and builds a batch-1 engine.
    pub fn load(
        model: &Path,
        arch: Arch,
        width: u32,
        height: u32,
        device: Device,
    ) -> Result<Self, EngineError> {
        check_input_size(width as i64, height as i64)?;
        let network = DepthNetwork::load(model, arch, device)?;
        Self::new(network, width, height, 1)
    }

    pub fn network(&self) -> &DepthNetwork {
        &self.network
    }

    /// The network, e.g. to copy adapted weights in with `copy_weights_from`.
    pub fn network_mut(&mut self) -> &mut DepthNetwork {
        &mut self.network
    }

    /// Gives the network back (e.g. to build an engine of another input size).
    pub fn into_network(self) -> DepthNetwork {
        self.network
    }

    /// The preprocessing stage (to reuse its resize for evaluation or display).
    pub fn preprocessor_mut(&mut self) -> &mut Preprocessor {
        &mut self.preprocessor
    }

    /// Runs the network on already normalised planar inputs (`batch` × 3 × H × W values) and
    /// returns the full-resolution disparities on the host, `batch` × H × W values.
    pub fn forward_normalised(
        &mut self,
        normalised: &[f32],
        batch: usize,
    ) -> Result<&[f32], EngineError> {
        if batch == 0 || batch > self.max_batch {
            return Err(EngineError::BatchTooLarge { found: batch, capacity: self.max_batch });
        }
        let item = self.preprocessor.output_len();
        if normalised.len() != item * batch {
            return Err(EngineError::Internal(format!(
                "normalised input holds {} values, expected {}",
                normalised.len(),
                item * batch
            )));
        }
        self.staging[..item * batch].copy_from_slice(normalised);
        self.run_batch(batch)
    }

    fn run_batch(&mut self, batch: usize) -> Result<&[f32], EngineError> {
        let (w, h) = (self.width as i64, self.height as i64);
        upload(&mut self.input, &self.staging, batch, [3, h, w])?;
        let x = self.input.f_narrow(0, 0, batch as i64)?;
        let disp = tch::no_grad(|| self.network.try_forward_t(&x, false))?;
        // One output channel: channels-last and NCHW layouts coincide.
        let full = disp[0].f_to_device(Device::Cpu)?.f_contiguous()?;
        let n = batch * (w * h) as usize;
        full.f_copy_data(&mut self.host_output[..n], n)?;
        Ok(&self.host_output[..n])
    }
}

impl DepthEngine for TorchDepthEngine {
    fn input_size(&self) -> (u32, u32) {
        (self.width, self.height)
    }

    fn backend(&self) -> &'static str {
        "torch"
    }

    fn input_normalisation(&self) -> ([f32; 3], [f32; 3]) {
        self.network.arch().normalisation()
    }

    fn forward_planar(&mut self, input: &[f32], out: &mut [f32]) -> Result<(), EngineError> {
        let host = self.forward_normalised(input, 1)?;
        super::copy_exact(out, host, "the disparity")
    }

    fn refresh_weights(
        &mut self,
        receiver: &crate::adapt::WeightsReceiver,
    ) -> Result<bool, EngineError> {
        let start = std::time::Instant::now();
        match receiver.try_install_timed(&mut self.network) {
            Some(published_at) => {
                self.swaps.record(published_at, start.elapsed());
                Ok(true)
            }
            None => Ok(false),
        }
    }

    fn weight_swaps(&self) -> &WeightSwapStats {
        &self.swaps
    }

    fn torch_device(&self) -> Option<Device> {
        Some(self.network.device())
    }

    fn forward_device_tensor(&mut self, x: &Tensor, out: &mut [f32]) -> Result<(), EngineError> {
        let disp = tch::no_grad(|| self.network.try_forward_t(x, false))?;
        let first =
            disp.first().ok_or_else(|| EngineError::Internal("no disparity output".into()))?;
        let host = first.f_to_device(Device::Cpu)?.f_contiguous()?;
        let n = host.numel();
        if n != out.len() {
            return Err(EngineError::Internal(format!(
                "disparity holds {n} values, the caller expects {}",
                out.len()
            )));
        }
        host.f_copy_data(out, n)?;
        Ok(())
    }

    fn max_batch(&self) -> usize {
        self.max_batch
    }

    fn predict_disparity_into(
        &mut self,
        image: &RgbImage,
        out: &mut Disparity,
    ) -> Result<(), EngineError> {
        let item = self.preprocessor.output_len();
        self.preprocessor.run(image, &mut self.staging[..item])?;
        let (w, h) = (self.width, self.height);
        let host = self.run_batch(1)?;
        out.width = w;
        out.height = h;
        out.data.clear();
        out.data.extend_from_slice(host);
        Ok(())
    }

    fn predict_disparity_batch(
        &mut self,
        images: &[&RgbImage],
    ) -> Result<Vec<Disparity>, EngineError> {
        if images.is_empty() {
            return Ok(Vec::new());
        }
        if images.len() > self.max_batch {
            return Err(EngineError::BatchTooLarge {
                found: images.len(),
                capacity: self.max_batch,
            });
        }
        let item = self.preprocessor.output_len();
        for (i, image) in images.iter().enumerate() {
            self.preprocessor.run(image, &mut self.staging[i * item..(i + 1) * item])?;
        }
        let (w, h) = (self.width, self.height);
        let plane = (w * h) as usize;
        let host = self.run_batch(images.len())?;
        Ok(host.chunks_exact(plane).map(|d| Disparity::from_data(w, h, d.to_vec())).collect())
    }
}

/// Relative pose inference with a libtorch pose network (batch 1).
#[derive(Debug)]
pub struct TorchPoseEngine {
    network: PoseNetwork,
    preprocessor: Preprocessor,
    staging: Vec<f32>,
    input: Tensor,
    width: u32,
    height: u32,
}

impl TorchPoseEngine {
    /// An engine running `network` at `width` x `height` (multiples of 32).
    pub fn new(mut network: PoseNetwork, width: u32, height: u32) -> Result<Self, EngineError> {
        check_input_size(width as i64, height as i64)?;
        network.use_channels_last();
        let (mean, std) = Arch::RtMonoDepthS.normalisation();
        let preprocessor = Preprocessor::new(width, height, mean, std)?;
        let input = channels_last_zeros(1, 6, height, width, network.device())?;
        Ok(Self {
            network,
            staging: vec![0.0; 2 * preprocessor.output_len()],
            preprocessor,
            input,
            width,
            height,
        })
    }

    /// Loads `arch` weights (pose_encoder.pth + pose.pth folder, or safetensors) onto `device`.
    pub fn load(
        model: &Path,
        arch: PoseArch,
        width: u32,
        height: u32,
        device: Device,
    ) -> Result<Self, EngineError> {
        check_input_size(width as i64, height as i64)?;
        Self::new(PoseNetwork::load(model, arch, device)?, width, height)
    }

    pub fn network(&self) -> &PoseNetwork {
        &self.network
    }

    /// The network, e.g. to copy adapted weights in with `copy_weights_from`.
    pub fn network_mut(&mut self) -> &mut PoseNetwork {
        &mut self.network
    }
}

impl PoseEngine for TorchPoseEngine {
    fn input_size(&self) -> (u32, u32) {
        (self.width, self.height)
    }

    fn predict_pose(
        &mut self,
        first: &RgbImage,
        second: &RgbImage,
    ) -> Result<RelativePose, EngineError> {
        let item = self.preprocessor.output_len();
        let (a, b) = self.staging.split_at_mut(item);
        self.preprocessor.run(first, a)?;
        self.preprocessor.run(second, b)?;
        upload(&mut self.input, &self.staging, 1, [6, self.height as i64, self.width as i64])?;
        let (rot, trans) = tch::no_grad(|| self.network.try_forward_t(&self.input, false))?;
        let mut axis_angle = [0f32; 3];
        let mut translation = [0f32; 3];
        rot.f_to_device(Device::Cpu)?.f_contiguous()?.f_copy_data(&mut axis_angle, 3)?;
        trans.f_to_device(Device::Cpu)?.f_contiguous()?.f_copy_data(&mut translation, 3)?;
        Ok(RelativePose { axis_angle, translation })
    }
}
