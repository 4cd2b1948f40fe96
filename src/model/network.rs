//! [`DepthNetwork`] and [`PoseNetwork`]: one `VarStore` per network whose variable names are
//! the checkpoint names under a group prefix (`encoder.` + encoder.pth names, `depth.` +
//! depth.pth names; `pose_encoder.` + pose_encoder.pth, `pose.` + pose.pth), so loading a
//! published checkpoint is copying tensors by name, safetensors files hold the prefixed names,
//! and the same modules train with autograd and copy their weights into a live engine.

use super::checkpoint::{Checkpoint, MetaValue, StorageDtype, StoredTensor};
use super::monodepth2::{DepthDecoder, PoseDecoder};
use super::resnet::{ResnetDepth, ResnetEncoder};
use super::rtmonodepth::{LightPoseDecoder, RtDecoder, RtEncoder};
use super::{Arch, ModelError, PoseArch};
use std::path::Path;
use tch::{Device, Kind, Tensor, nn};

/// Group prefix of depth-encoder variables (weights from `encoder.pth`).
pub const ENCODER_GROUP: &str = "encoder";
/// Group prefix of depth-decoder variables (weights from `depth.pth`).
pub const DEPTH_GROUP: &str = "depth";
/// Group prefix of pose-encoder variables (weights from `pose_encoder.pth`).
pub const POSE_ENCODER_GROUP: &str = "pose_encoder";
/// Group prefix of pose-decoder variables (weights from `pose.pth`).
pub const POSE_GROUP: &str = "pose";

enum DepthModules {
    Rt(RtEncoder, RtDecoder),
    Monodepth2(ResnetEncoder, DepthDecoder),
}

/// A depth network: normalised NCHW images in, sigmoid disparities out.
pub struct DepthNetwork {
    arch: Arch,
    vs: nn::VarStore,
    modules: DepthModules,
}

impl std::fmt::Debug for DepthNetwork {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DepthNetwork")
            .field("arch", &self.arch)
            .field("device", &self.vs.device())
            .finish()
    }
}

impl DepthNetwork {
    /// A network of `arch` with freshly initialised weights on `device`.
    pub fn new(arch: Arch, device: Device) -> Self {
        let vs = nn::VarStore::new(device);
        let root = vs.root();
        let enc = &root / ENCODER_GROUP;
        let dec = &root / DEPTH_GROUP;
        let modules = match arch {
            Arch::RtMonoDepthS => DepthModules::Rt(RtEncoder::new(&enc, 3), RtDecoder::new(&dec)),
            Arch::Monodepth2R18 | Arch::Monodepth2R50 => {
                let depth =
                    if arch == Arch::Monodepth2R18 { ResnetDepth::R18 } else { ResnetDepth::R50 };
                let encoder = ResnetEncoder::new(&(&enc / "encoder"), depth, 3);
                let decoder = DepthDecoder::new(&dec, encoder.channels());
                DepthModules::Monodepth2(encoder, decoder)
            }
        };
        Self { arch, vs, modules }
    }

    /// Loads weights from a Monodepth2-format checkpoint folder (`encoder.pth` + `depth.pth`), a
    /// `livedepth train` folder or a safetensors file written by
    /// [`DepthNetwork::save_safetensors`].
    pub fn load(path: &Path, arch: Arch, device: Device) -> Result<Self, ModelError> {
        let mut net = Self::new(arch, device);
        load_weights(
            &mut net.vs,
            path,
            [("encoder.pth", ENCODER_GROUP), ("depth.pth", DEPTH_GROUP)],
            arch.name(),
            "depth_file",
        )?;
        Ok(net)
    }

    /// Saves all weights (prefixed names) plus `arch` metadata as safetensors, atomically.
    pub fn save_safetensors(&self, path: &Path) -> Result<(), ModelError> {
        self.save_safetensors_with(path, &[])
    }

    /// [`Self::save_safetensors`] with `extra` string metadata.
    pub fn save_safetensors_with(
        &self,
        path: &Path,
        extra: &[(&str, &str)],
    ) -> Result<(), ModelError> {
        save_with_arch(&self.vs, path, self.arch.name(), extra)
    }

    pub fn arch(&self) -> Arch {
        self.arch
    }

    pub fn device(&self) -> Device {
        self.vs.device()
    }

    /// The variables (for optimisers: `var_store().trainable_variables()`).
    pub fn var_store(&self) -> &nn::VarStore {
        &self.vs
    }

    pub fn var_store_mut(&mut self) -> &mut nn::VarStore {
        &mut self.vs
    }

    /// Copies every weight and running statistic from `other` (same architecture) in place,
    /// without gradient tracking: the way adapted weights reach a live engine.
    pub fn copy_weights_from(&mut self, other: &DepthNetwork) -> Result<(), ModelError> {
        if other.arch != self.arch {
            return Err(ModelError::Torch(format!(
                "cannot copy {} weights into a {} network",
                other.arch, self.arch
            )));
        }
        self.vs.copy(&other.vs)?;
        Ok(())
    }

    /// Switches all convolution weights to channels-last strides (faster oneDNN/cuDNN
    /// convolutions; feed channels-last inputs too, see [`super::layers::to_channels_last`]).
    /// Numerically the same network.
    pub fn use_channels_last(&mut self) {
        super::layers::vars_to_channels_last(&self.vs);
    }

    /// Encoder features of a normalised `[B,3,H,W]` input (BatchNorm in training mode when
    /// `train`).
    pub fn encode(&self, x: &Tensor, train: bool) -> Vec<Tensor> {
        match &self.modules {
            DepthModules::Rt(enc, _) => enc.forward(x),
            DepthModules::Monodepth2(enc, _) => enc.forward_t(x, train),
        }
    }

    /// Disparities (sigmoid, `[B,1,H/2^s,W/2^s]`, scale 0 first) from encoder features.
    pub fn decode(&self, features: &[Tensor]) -> Vec<Tensor> {
        match &self.modules {
            DepthModules::Rt(_, dec) => dec.forward(features),
            DepthModules::Monodepth2(_, dec) => dec.forward(features),
        }
    }

    /// Disparities at all scales (scale 0 = input resolution first) of a normalised input.
    pub fn forward_t(&self, x: &Tensor, train: bool) -> Vec<Tensor> {
        self.decode(&self.encode(x, train))
    }

    /// Checks that `x` is `[B,3,H,W]` with H, W multiples of 32, then runs [`Self::forward_t`].
    pub fn try_forward_t(&self, x: &Tensor, train: bool) -> Result<Vec<Tensor>, ModelError> {
        check_input(x, 3)?;
        Ok(self.forward_t(x, train))
    }
}

enum PoseModules {
    Monodepth2(ResnetEncoder, PoseDecoder),
    Light(RtEncoder, LightPoseDecoder),
}

/// A pose network: two normalised frames stacked on channels (`[B,6,H,W]`, source frame first
/// as the caller orders them) in, axis-angle and translation (`[B,3]` each) out.
pub struct PoseNetwork {
    arch: PoseArch,
    vs: nn::VarStore,
    modules: PoseModules,
}

impl std::fmt::Debug for PoseNetwork {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PoseNetwork")
            .field("arch", &self.arch)
            .field("device", &self.vs.device())
            .finish()
    }
}

impl PoseNetwork {
    /// A pose network with freshly initialised weights.
    pub fn new(arch: PoseArch, device: Device) -> Self {
        let vs = nn::VarStore::new(device);
        let root = vs.root();
        let enc = &root / POSE_ENCODER_GROUP;
        let dec = &root / POSE_GROUP;
        let modules = match arch {
            PoseArch::Monodepth2R18 => {
                let encoder = ResnetEncoder::new(&(&enc / "encoder"), ResnetDepth::R18, 6);
                let decoder = PoseDecoder::new(&dec, encoder.channels()[4]);
                PoseModules::Monodepth2(encoder, decoder)
            }
            PoseArch::RtMonoDepthSPose => {
                PoseModules::Light(RtEncoder::new(&enc, 6), LightPoseDecoder::new(&dec))
            }
        };
        Self { arch, vs, modules }
    }

    /// Loads weights from a folder with `pose_encoder.pth` + `pose.pth`, or a safetensors file.
    pub fn load(path: &Path, arch: PoseArch, device: Device) -> Result<Self, ModelError> {
        let mut net = Self::new(arch, device);
        load_weights(
            &mut net.vs,
            path,
            [("pose_encoder.pth", POSE_ENCODER_GROUP), ("pose.pth", POSE_GROUP)],
            arch.name(),
            "pose_file",
        )?;
        Ok(net)
    }

    /// Saves all weights plus `arch` metadata as safetensors, atomically.
    pub fn save_safetensors(&self, path: &Path) -> Result<(), ModelError> {
        self.save_safetensors_with(path, &[])
    }

    /// [`Self::save_safetensors`] with `extra` string metadata.
    pub fn save_safetensors_with(
        &self,
        path: &Path,
        extra: &[(&str, &str)],
    ) -> Result<(), ModelError> {
        save_with_arch(&self.vs, path, self.arch.name(), extra)
    }

    pub fn arch(&self) -> PoseArch {
        self.arch
    }

    pub fn device(&self) -> Device {
        self.vs.device()
    }

    pub fn var_store(&self) -> &nn::VarStore {
        &self.vs
    }

    pub fn var_store_mut(&mut self) -> &mut nn::VarStore {
        &mut self.vs
    }

    /// Copies all weights from `other` (same architecture) in place, without gradients.
    pub fn copy_weights_from(&mut self, other: &PoseNetwork) -> Result<(), ModelError> {
        if other.arch != self.arch {
            return Err(ModelError::Torch(format!(
                "cannot copy {} weights into a {}",
                other.arch, self.arch
            )));
        }
        self.vs.copy(&other.vs)?;
        Ok(())
    }

    /// Switches all convolution weights to channels-last strides (see
    /// [`DepthNetwork::use_channels_last`]).
    pub fn use_channels_last(&mut self) {
        super::layers::vars_to_channels_last(&self.vs);
    }

    /// `(axis_angle [B,3], translation [B,3])` for a `[B,6,H,W]` normalised frame pair.
    pub fn forward_t(&self, pair: &Tensor, train: bool) -> (Tensor, Tensor) {
        match &self.modules {
            PoseModules::Monodepth2(enc, dec) => dec.forward(&enc.forward_t(pair, train)[4]),
            PoseModules::Light(enc, dec) => dec.forward(&enc.forward(pair)[3]),
        }
    }

    /// Checks that `pair` is `[B,6,H,W]` with H, W multiples of 32, then runs the network.
    pub fn try_forward_t(
        &self,
        pair: &Tensor,
        train: bool,
    ) -> Result<(Tensor, Tensor), ModelError> {
        check_input(pair, 6)?;
        Ok(self.forward_t(pair, train))
    }
}

fn check_input(x: &Tensor, channels: i64) -> Result<(), ModelError> {
    let s = x.size();
    let ok = s.len() == 4
        && s[0] > 0
        && s[1] == channels
        && s[2] > 0
        && s[3] > 0
        && s[2] % 32 == 0
        && s[3] % 32 == 0;
    if ok { Ok(()) } else { Err(ModelError::InputShape { found: s, channels }) }
}

/// Loads a network's weights into `vs`: from a Monodepth2-style folder holding one `.pth` per
/// variable group (`groups`: file name and the group's name prefix), from a `livedepth train`
/// folder (the file its sidecar names under `trained_file_key`), or from a single safetensors
/// (or `.pth`) file holding every group.
fn load_weights(
    vs: &mut nn::VarStore,
    path: &Path,
    groups: [(&str, &str); 2],
    arch: &str,
    trained_file_key: &str,
) -> Result<(), ModelError> {
    if !path.is_dir() {
        return load_group(vs, "", &Checkpoint::read(path)?, arch);
    }
    // A `livedepth train` folder: its sidecar names the safetensors file.
    if let Some([file]) = super::trained_dir_fields(path, [trained_file_key])? {
        let file = file.as_str().map(|f| path.join(f)).ok_or_else(|| ModelError::NoWeights {
            path: path.join(super::TRAINED_SIDECAR),
            expected: format!("`{trained_file_key}` naming a weights file"),
        })?;
        return load_group(vs, "", &Checkpoint::read(&file)?, arch);
    }
    let files = groups.map(|(file, _)| path.join(file));
    if files.iter().any(|f| !f.exists()) {
        return Err(ModelError::NoWeights {
            path: path.to_path_buf(),
            expected: format!("{} and {}", groups[0].0, groups[1].0),
        });
    }
    for (file, (_, group)) in files.iter().zip(groups) {
        load_group(vs, group, &Checkpoint::read_pth(file)?, arch)?;
    }
    Ok(())
}

/// Copies every variable of `vs` whose name starts with `group.` (or every variable when
/// `group` is empty) from the checkpoint tensor of the same name without that prefix.
/// Extra checkpoint entries (e.g. `encoder.fc.*`, `num_batches_tracked`) are ignored.
pub fn load_group(
    vs: &mut nn::VarStore,
    group: &str,
    ckpt: &Checkpoint,
    arch: &str,
) -> Result<(), ModelError> {
    let variables = vs.variables();
    let prefix = if group.is_empty() { String::new() } else { format!("{group}.") };
    let mut names: Vec<&String> = variables.keys().filter(|n| n.starts_with(&prefix)).collect();
    names.sort();
    // Validate everything before touching any weight, so a failed load leaves the net intact.
    let mut pairs = Vec::with_capacity(names.len());
    for name in names {
        let key = &name[prefix.len()..];
        let var = &variables[name];
        let expected = var.size();
        let Some(stored) = ckpt.tensors.get(key) else {
            return Err(ModelError::MissingTensor {
                path: ckpt.path.clone(),
                name: key.to_owned(),
                arch: arch.to_owned(),
                expected,
            });
        };
        let found_matches = stored.shape.len() == expected.len()
            && stored.shape.iter().zip(&expected).all(|(&a, &b)| a as i64 == b);
        if !found_matches {
            return Err(ModelError::ShapeMismatch {
                path: ckpt.path.clone(),
                name: key.to_owned(),
                arch: arch.to_owned(),
                expected,
                found: stored.shape.clone(),
            });
        }
        if stored.values.iter().any(|v| !v.is_finite()) {
            return Err(ModelError::NonFinite { path: ckpt.path.clone(), name: key.to_owned() });
        }
        pairs.push((var, stored));
    }
    tch::no_grad(|| -> Result<(), ModelError> {
        for (var, stored) in pairs {
            let src = Tensor::f_from_slice(&stored.values)?.f_reshape(var.size())?;
            let mut dst = var.shallow_clone();
            dst.f_copy_(&src)?;
        }
        Ok(())
    })
}

/// Saves `vs` with its `arch` name and `extra` string metadata (see [`save_var_store`]).
fn save_with_arch(
    vs: &nn::VarStore,
    path: &Path,
    arch: &str,
    extra: &[(&str, &str)],
) -> Result<(), ModelError> {
    let mut metadata = vec![("arch", arch)];
    metadata.extend_from_slice(extra);
    save_var_store(vs, path, &metadata)
}

/// Writes every variable of `vs` (f32, full names) plus `metadata` to a safetensors file.
pub fn save_var_store(
    vs: &nn::VarStore,
    path: &Path,
    metadata: &[(&str, &str)],
) -> Result<(), ModelError> {
    var_store_checkpoint(vs, path, metadata)?.write_safetensors(path)
}

/// Every variable of `vs` (f32 on the host, full names) plus `metadata`, as a checkpoint that
/// `path` names in errors.
pub fn var_store_checkpoint(
    vs: &nn::VarStore,
    path: &Path,
    metadata: &[(&str, &str)],
) -> Result<Checkpoint, ModelError> {
    let mut ckpt = Checkpoint { path: path.to_path_buf(), ..Default::default() };
    for (name, var) in vs.variables() {
        let t = var.detach().to_device(Device::Cpu).to_kind(Kind::Float).contiguous();
        let numel = t.numel();
        let mut values = vec![0f32; numel];
        t.f_copy_data(&mut values, numel)?;
        let shape = t.size().iter().map(|&d| d as usize).collect();
        ckpt.tensors.insert(name, StoredTensor { dtype: StorageDtype::F32, shape, values });
    }
    for (k, v) in metadata {
        ckpt.metadata.insert((*k).to_owned(), MetaValue::Str((*v).to_owned()));
    }
    Ok(ckpt)
}
