//! The model zoo: depth and pose networks on libtorch, addressed by the parameter names of the
//! published Monodepth2-format checkpoints, and their weights files.
//!
//! - [`checkpoint`]: PyTorch zip (`.pth`) and safetensors reading/writing, without libtorch.
//! - [`rtmonodepth`]: the RT-MonoDepth-S depth network and its light pose network.
//! - [`resnet`], [`monodepth2`]: the Monodepth2 ResNet-18/50 encoder, depth decoder and pose
//!   decoder.
//! - [`network`]: [`network::DepthNetwork`] and [`network::PoseNetwork`], which own one
//!   `VarStore` each, load/save weights and run forward passes for inference and training.
//!
//! All networks take images normalised per [`Arch::normalise`] (RGB in \[0, 1\] mapped to
//! `(x − 0.45) / 0.225`), batched NCHW, with height and width multiples of 32.

pub mod checkpoint;
#[cfg(feature = "torch")]
pub mod layers;
#[cfg(feature = "torch")]
pub mod monodepth2;
#[cfg(feature = "torch")]
pub mod network;
#[cfg(feature = "torch")]
pub mod resnet;
#[cfg(feature = "torch")]
pub mod rtmonodepth;

use std::path::PathBuf;

/// Errors from building, loading or saving a network.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("{}: {source}", path.display())]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{}: not a PyTorch checkpoint: {reason}", path.display())]
    NotACheckpoint { path: PathBuf, reason: String },
    #[error("{}: corrupt or unsupported checkpoint pickle: {reason}", path.display())]
    Pickle { path: PathBuf, reason: String },
    #[error("{}: {reason}", path.display())]
    Safetensors { path: PathBuf, reason: String },
    #[error(
        "{}: missing tensor `{name}` (the {arch} network expects shape {expected:?}; is this a \
         checkpoint of that architecture?)", path.display()
    )]
    MissingTensor { path: PathBuf, name: String, arch: String, expected: Vec<i64> },
    #[error(
        "{}: tensor `{name}` has shape {found:?} but the {arch} network expects {expected:?}",
        path.display()
    )]
    ShapeMismatch {
        path: PathBuf,
        name: String,
        arch: String,
        expected: Vec<i64>,
        found: Vec<usize>,
    },
    #[error("{}: tensor `{name}` holds NaN or infinite values", path.display())]
    NonFinite { path: PathBuf, name: String },
    #[error("{}: expected a checkpoint folder with {expected}, or a .safetensors file", path.display())]
    NoWeights { path: PathBuf, expected: String },
    #[error(
        "unknown architecture `{0}` (expected one of: rtmonodepth-s, monodepth2-r18, monodepth2-r50)"
    )]
    UnknownArch(String),
    #[error(
        "unknown pose architecture `{0}` (expected one of: monodepth2-r18, rtmonodepth-s-pose)"
    )]
    UnknownPoseArch(String),
    #[error(
        "network input size {width}x{height} is invalid: width and height must be positive multiples of 32"
    )]
    InputSize { width: i64, height: i64 },
    #[error(
        "input tensor has shape {found:?}, expected [batch, {channels}, H, W] with H and W multiples of 32"
    )]
    InputShape { found: Vec<i64>, channels: i64 },
    #[error("libtorch: {0}")]
    Torch(String),
}

#[cfg(feature = "torch")]
impl From<tch::TchError> for ModelError {
    fn from(e: tch::TchError) -> Self {
        ModelError::Torch(e.to_string())
    }
}

/// Depth network architectures (serialised under their config names, see [`Arch::name`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum Arch {
    /// RT-MonoDepth-S (ICIP 2024): small encoder, decoder without skips, 3 output scales.
    #[serde(rename = "rtmonodepth-s")]
    RtMonoDepthS,
    /// Monodepth2 with a ResNet-18 encoder, 4 output scales.
    #[serde(rename = "monodepth2-r18")]
    Monodepth2R18,
    /// Monodepth2 with a ResNet-50 encoder, 4 output scales.
    #[serde(rename = "monodepth2-r50")]
    Monodepth2R50,
}

impl Arch {
    /// The command-line / config name.
    pub fn name(self) -> &'static str {
        match self {
            Arch::RtMonoDepthS => "rtmonodepth-s",
            Arch::Monodepth2R18 => "monodepth2-r18",
            Arch::Monodepth2R50 => "monodepth2-r50",
        }
    }

    /// Number of disparity scales the decoder outputs (scale 0 = input resolution).
    pub fn num_scales(self) -> usize {
        match self {
            Arch::RtMonoDepthS => 3,
            Arch::Monodepth2R18 | Arch::Monodepth2R50 => 4,
        }
    }

    /// Per-channel (mean, std) the network expects its [0, 1] RGB input normalised with.
    pub fn normalisation(self) -> ([f32; 3], [f32; 3]) {
        ([0.45; 3], [0.225; 3])
    }

    /// The pose network that goes with this depth network for on-device training.
    pub fn companion_pose(self) -> PoseArch {
        match self {
            Arch::RtMonoDepthS => PoseArch::RtMonoDepthSPose,
            Arch::Monodepth2R18 | Arch::Monodepth2R50 => PoseArch::Monodepth2R18,
        }
    }
}

impl std::fmt::Display for Arch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for Arch {
    type Err = ModelError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "rtmonodepth-s" | "rt-monodepth-s" | "rtmonodepth_s" => Ok(Arch::RtMonoDepthS),
            "monodepth2-r18" | "md2-r18" => Ok(Arch::Monodepth2R18),
            "monodepth2-r50" | "md2-r50" => Ok(Arch::Monodepth2R50),
            _ => Err(ModelError::UnknownArch(s.to_owned())),
        }
    }
}

/// Pose network architectures (two frames stacked on the channel axis in, 6-DoF motion out).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PoseArch {
    /// Monodepth2 separate pose network: ResNet-18 over 6 channels + pose decoder.
    Monodepth2R18,
    /// Light pose network: the RT-MonoDepth-S encoder design over 6 channels + a small head.
    RtMonoDepthSPose,
}

impl PoseArch {
    /// The command-line / config name.
    pub fn name(self) -> &'static str {
        match self {
            PoseArch::Monodepth2R18 => "monodepth2-r18",
            PoseArch::RtMonoDepthSPose => "rtmonodepth-s-pose",
        }
    }
}

impl std::fmt::Display for PoseArch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for PoseArch {
    type Err = ModelError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "monodepth2-r18" | "md2-r18" => Ok(PoseArch::Monodepth2R18),
            "rtmonodepth-s-pose" | "rtmonodepth-s" | "light" => Ok(PoseArch::RtMonoDepthSPose),
            _ => Err(ModelError::UnknownPoseArch(s.to_owned())),
        }
    }
}

/// The sidecar a `livedepth train` output folder holds (architecture, input size and the names
/// of its depth and pose weight files).
pub const TRAINED_SIDECAR: &str = "train.json";

/// The fields `keys` of the `train.json` in `dir`, in order, when `dir` is a `livedepth train`
/// output folder (`Ok(None)` when it is not); the sidecar is read once.
pub fn trained_dir_fields<const N: usize>(
    dir: &std::path::Path,
    keys: [&str; N],
) -> Result<Option<[serde_json::Value; N]>, ModelError> {
    let path = dir.join(TRAINED_SIDECAR);
    if !dir.is_dir() || !path.is_file() {
        return Ok(None);
    }
    let bad = |reason: String| ModelError::NoWeights {
        path: path.clone(),
        expected: format!("a `livedepth train` sidecar with {keys:?} ({reason})"),
    };
    let text = std::fs::read_to_string(&path).map_err(|e| bad(e.to_string()))?;
    let json: serde_json::Value = serde_json::from_str(&text).map_err(|e| bad(e.to_string()))?;
    let mut fields = Vec::with_capacity(N);
    for key in keys {
        fields.push(json.get(key).cloned().ok_or_else(|| bad(format!("`{key}` is missing")))?);
    }
    Ok(fields.try_into().ok())
}

/// The input size (width, height) a checkpoint folder was trained at: from the sidecar of a
/// `livedepth train` folder, or from the `width` / `height` entries of a Monodepth2-format
/// folder's `encoder.pth`; `None` when they are absent.
pub fn trained_input_size(
    checkpoint_dir: &std::path::Path,
) -> Result<Option<(u32, u32)>, ModelError> {
    let positive = |v: Option<u64>| v.and_then(|v| u32::try_from(v).ok()).filter(|&v| v > 0);
    if let Some([w, h]) = trained_dir_fields(checkpoint_dir, ["width", "height"])? {
        return Ok(positive(w.as_u64()).zip(positive(h.as_u64())));
    }
    let ckpt = checkpoint::Checkpoint::read_pth(&checkpoint_dir.join("encoder.pth"))?;
    let dim = |key| ckpt.meta_int(key).and_then(|v| u32::try_from(v).ok()).filter(|&v| v > 0);
    Ok(dim("width").zip(dim("height")))
}

/// Checks that a network input size is usable (positive multiples of 32).
pub fn check_input_size(width: i64, height: i64) -> Result<(), ModelError> {
    if width > 0 && height > 0 && width % 32 == 0 && height % 32 == 0 {
        Ok(())
    } else {
        Err(ModelError::InputSize { width, height })
    }
}
