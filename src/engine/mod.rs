//! The inference engine: [`DepthEngine`] / [`PoseEngine`] traits, their libtorch backend
//! ([`TorchDepthEngine`], [`TorchPoseEngine`]: CPU, or CUDA where libtorch sees a GPU; batched,
//! `no_grad`, preallocated input tensor), the [`preprocess`] stage, and the disparity
//! post-processing helpers (bilinear resize to the ground-truth size, disparity → depth).

pub mod camera_motion;
#[cfg(feature = "onnxruntime")]
pub mod onnxruntime;
pub mod preprocess;
#[cfg(feature = "torch")]
pub mod select;
#[cfg(feature = "tensorrt")]
pub mod tensorrt;
#[cfg(feature = "torch")]
mod torch_backend;
#[cfg(feature = "torch")]
mod torch_cuda;

#[cfg(feature = "onnxruntime")]
pub use onnxruntime::{OrtDepthEngine, OrtDevice, OrtOptions, OrtPoseEngine};
pub use preprocess::{Preprocessor, resize_lanczos};
#[cfg(feature = "torch")]
pub use select::{EngineKind, EngineRequest, LiveDepthEngine, OpenedEngine, open_depth_engine};
#[cfg(feature = "tensorrt")]
pub use tensorrt::{TensorRtDepthEngine, TensorRtOptions};
#[cfg(feature = "torch")]
pub use torch_backend::{TorchDepthEngine, TorchPoseEngine, default_device};
#[cfg(feature = "torch")]
pub use torch_cuda::{preload_torch_cuda, torch_cuda_available, torch_cuda_status};

use crate::frame::{DepthMap, RgbImage};
use crate::model::ModelError;
use nalgebra::{Isometry3, Translation3, UnitQuaternion, Vector3};

/// Monodepth2's default minimum depth in metres for disparity → depth.
pub const MIN_DEPTH: f32 = 0.1;
/// Monodepth2's default maximum depth in metres for disparity → depth.
pub const MAX_DEPTH: f32 = 100.0;

/// Errors of the inference engine.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error(transparent)]
    Model(#[from] ModelError),
    #[error("{what} size {width}x{height} is invalid")]
    InvalidSize { what: &'static str, width: u32, height: u32 },
    #[error("RGB image buffer holds {found} bytes, but {width}x{height} RGB8 needs {expected}")]
    ImageBuffer { width: u32, height: u32, expected: usize, found: usize },
    #[error("batch of {found} images exceeds the engine's batch capacity {capacity}")]
    BatchTooLarge { found: usize, capacity: usize },
    #[error("libtorch: {0}")]
    Torch(String),
    #[error("--engine `{value}`: unknown engine (expected one of: {})", select::ENGINE_KINDS)]
    UnknownEngine { value: String },
    #[error("--engine {engine}: {reason}")]
    Unavailable { engine: &'static str, reason: String },
    #[error("onnxruntime: {0}")]
    OnnxRuntime(String),
    /// ONNX Runtime cannot be loaded; the text says what to do.
    #[error("onnxruntime unavailable: {0}")]
    OnnxRuntimeMissing(String),
    #[error("tensorrt: {0}")]
    TensorRt(String),
    /// TensorRT's libraries cannot be loaded; the text says what to do.
    #[error("tensorrt unavailable: {0}")]
    TensorRtMissing(String),
    #[error("{0}")]
    Internal(String),
}

#[cfg(feature = "torch")]
impl From<tch::TchError> for EngineError {
    fn from(e: tch::TchError) -> Self {
        EngineError::Torch(e.to_string())
    }
}

/// How adapted weights reached a live engine (saved in `run_report.json`).
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize)]
pub struct WeightSwapStats {
    /// Adapted weights that went live.
    pub swaps: u64,
    /// Per swap: from publication (the adapter parked the weights) to the first frame served
    /// with them, in milliseconds.
    pub publish_to_live_ms: Vec<f64>,
    /// Per swap: time the live thread spent installing them (what a frame waited), in ms.
    pub install_ms: Vec<f64>,
    /// Per swap, for backends that rebuild (onnxruntime): export and session build on the
    /// background thread, in ms.
    pub rebuild_ms: Vec<f64>,
    /// Rebuilds that failed (the engine went on serving the previous weights).
    pub failures: u64,
}

impl WeightSwapStats {
    /// Records a swap that went live now.
    pub fn record(&mut self, published_at: std::time::Instant, install: std::time::Duration) {
        self.swaps += 1;
        self.publish_to_live_ms.push(published_at.elapsed().as_secs_f64() * 1e3);
        self.install_ms.push(install.as_secs_f64() * 1e3);
    }
}

/// Copies `src` into `dst`, or says what held how many values when their lengths differ.
pub(crate) fn copy_exact(dst: &mut [f32], src: &[f32], what: &str) -> Result<(), EngineError> {
    if dst.len() != src.len() {
        return Err(EngineError::Internal(format!(
            "{what} holds {} values, expected {}",
            src.len(),
            dst.len()
        )));
    }
    dst.copy_from_slice(src);
    Ok(())
}

pub use crate::frame::Disparity;

impl Disparity {
    /// Depth in metres per pixel with Monodepth2's conversion (see [`disparity_to_depth`]).
    pub fn to_depth(&self, min_depth: f32, max_depth: f32) -> DepthMap {
        let mut depth = DepthMap::new(0, 0);
        self.to_depth_into(min_depth, max_depth, &mut depth);
        depth
    }

    /// [`Self::to_depth`] into `out` (reshaped to this size, its allocation kept).
    pub fn to_depth_into(&self, min_depth: f32, max_depth: f32, out: &mut DepthMap) {
        (out.width, out.height) = (self.width, self.height);
        out.data.clear();
        out.data.extend(self.data.iter().map(|&d| disparity_to_depth(d, min_depth, max_depth)));
    }
}

/// Monodepth2's disparity → depth: `1 / (1/max + (1/min − 1/max) · disp)`.
#[inline]
pub fn disparity_to_depth(disparity: f32, min_depth: f32, max_depth: f32) -> f32 {
    let (min_disp, max_disp) = (1.0 / max_depth, 1.0 / min_depth);
    1.0 / (min_disp + (max_disp - min_disp) * disparity)
}

/// Relative camera motion predicted by a pose network, as Monodepth2 parameterises it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RelativePose {
    /// Rotation as axis × angle (radians).
    pub axis_angle: [f32; 3],
    pub translation: [f32; 3],
}

impl RelativePose {
    /// The rigid transform R(axis_angle) then + translation.
    pub fn to_isometry(&self) -> Isometry3<f64> {
        let [ax, ay, az] = self.axis_angle.map(f64::from);
        let [tx, ty, tz] = self.translation.map(f64::from);
        Isometry3::from_parts(
            Translation3::new(tx, ty, tz),
            UnitQuaternion::from_scaled_axis(Vector3::new(ax, ay, az)),
        )
    }
}

/// Monocular depth inference: RGB frames in, disparity at the network resolution out.
pub trait DepthEngine {
    /// Network input (and disparity output) width and height.
    fn input_size(&self) -> (u32, u32);

    /// Largest batch [`Self::predict_disparity_batch`] accepts.
    fn max_batch(&self) -> usize;

    /// Disparity of one frame into `out` (resized to the network size if needed).
    fn predict_disparity_into(
        &mut self,
        image: &RgbImage,
        out: &mut Disparity,
    ) -> Result<(), EngineError>;

    /// Disparities of up to [`Self::max_batch`] frames in one forward pass.
    fn predict_disparity_batch(
        &mut self,
        images: &[&RgbImage],
    ) -> Result<Vec<Disparity>, EngineError>;

    /// Disparity of one frame at the network resolution.
    fn predict_disparity(&mut self, image: &RgbImage) -> Result<Disparity, EngineError> {
        let (w, h) = self.input_size();
        let mut out = Disparity::new(w, h);
        self.predict_disparity_into(image, &mut out)?;
        Ok(out)
    }

    /// The backend's name (`torch`, `onnxruntime`, …), for reports.
    fn backend(&self) -> &'static str;

    /// The `(mean, std)` a planar input for [`Self::forward_planar`] is normalised with:
    /// `(x/255 − mean) / std`.
    fn input_normalisation(&self) -> ([f32; 3], [f32; 3]);

    /// Disparity (H × W values into `out`) of one planar input of 3 × H × W values, already
    /// resized and normalised per [`Self::input_normalisation`] (the live path's preprocess
    /// stage does that on its own thread).
    fn forward_planar(&mut self, input: &[f32], out: &mut [f32]) -> Result<(), EngineError>;

    /// Installs adapted weights waiting in `receiver`, never blocking; true when new weights
    /// went live on this call.
    #[cfg(feature = "torch")]
    fn refresh_weights(
        &mut self,
        receiver: &crate::adapt::WeightsReceiver,
    ) -> Result<bool, EngineError>;

    /// The libtorch device the engine's network lives on (None for other backends): where the
    /// live path may preprocess straight into a device tensor.
    /// How adapted weights reached this engine so far.
    fn weight_swaps(&self) -> &WeightSwapStats;

    #[cfg(feature = "torch")]
    fn torch_device(&self) -> Option<tch::Device> {
        None
    }

    /// Disparity (H × W values into `out`) of a normalised `[1, 3, H, W]` input already on
    /// [`Self::torch_device`].
    #[cfg(feature = "torch")]
    fn forward_device_tensor(
        &mut self,
        _input: &tch::Tensor,
        _out: &mut [f32],
    ) -> Result<(), EngineError> {
        Err(EngineError::Internal(format!("the {} engine takes no device tensors", self.backend())))
    }
}

/// Relative pose inference between two frames.
pub trait PoseEngine {
    /// Network input width and height.
    fn input_size(&self) -> (u32, u32);

    /// Motion predicted for the pair (`first`, `second`) stacked in that channel order.
    fn predict_pose(
        &mut self,
        first: &RgbImage,
        second: &RgbImage,
    ) -> Result<RelativePose, EngineError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn disparity_to_depth_spans_min_and_max() {
        assert!((disparity_to_depth(1.0, 0.1, 100.0) - 0.1).abs() < 1e-6);
        assert!((disparity_to_depth(0.0, 0.1, 100.0) - 100.0).abs() < 1e-3);
    }

    #[test]
    fn bilinear_resize_matches_half_pixel_convention() {
        let d = Disparity::from_data(2, 1, vec![0.0, 1.0]);
        let r = d.resized_bilinear(4, 1);
        // Output centres at input coords -0.25, 0.25, 0.75, 1.25 → clamp, 0.25, 0.75, clamp.
        assert_eq!(r.data, vec![0.0, 0.25, 0.75, 1.0]);
        let same = d.resized_bilinear(2, 1);
        assert_eq!(same.data, d.data);
    }

    #[test]
    fn pose_to_isometry_rotates_about_axis() {
        let p = RelativePose {
            axis_angle: [0.0, 0.0, std::f32::consts::FRAC_PI_2],
            translation: [1.0, 2.0, 3.0],
        };
        let iso = p.to_isometry();
        let v = iso * nalgebra::Point3::new(1.0, 0.0, 0.0);
        assert!((v - nalgebra::Point3::new(1.0, 3.0, 3.0)).norm() < 1e-6);
    }
}
