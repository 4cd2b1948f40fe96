//! ONNX export of the networks (`livedepth export`), for runtimes other than libtorch
//! (onnxruntime, TensorRT): our own emitter writes every network of [`crate::model`] as an
//! opset-17 ONNX model, without Python or a protobuf library.
//!
//! - [`proto`]: the protobuf wire encoder and the `onnx.proto` messages it needs.
//! - [`graph`]: a small graph builder (initializers, constants, nodes, inputs and outputs).
//! - [`layers`]: the weights (with the check that the graph uses each exactly as `src/model`
//!   has them) and the layer emitter shared by the networks (the layer → ONNX mapping).
//! - [`rtmonodepth`]: RT-MonoDepth-S and its light pose network.
//! - [`monodepth2`]: Monodepth2 ResNet-18 / ResNet-50 depth and the Monodepth2 pose network
//!   (ResNet-18 over 6 channels + pose decoder), batch normalisation in eval mode.
//!
//! The graphs take RGB in \[0, 1\] and normalise inside (per [`Arch::normalisation`]), so a
//! runtime feeds plain images:
//! - depth: input `image` `[B,3,H,W]`; outputs `disp_0` … `disp_{n−1}` (n = 3 for
//!   RT-MonoDepth-S, 4 for Monodepth2, [`Arch::num_scales`]), the sigmoid disparity at scale
//!   s, `[B,1,H/2^s,W/2^s]` (scale 0 = input resolution), as [`DepthNetwork::forward_t`]
//!   returns them.
//! - pose (the architecture's [`Arch::companion_pose`]): input `frame_pair` `[B,6,H,W]`: the
//!   two frames stacked on channels (channels 0–2 the first frame's RGB, 3–5 the second's, the
//!   order [`PoseNetwork::forward_t`] takes); outputs `axis_angle` and `translation`, `[B,3]`
//!   each (already scaled by 0.01 as the networks do).
//!
//! Initializers are exactly the network's parameters and buffers, named as in its `VarStore`
//! (the safetensors names, e.g. `encoder.conv1.weight`, `depth.decoder.8.conv3.bias`,
//! `encoder.encoder.layer1.0.bn1.running_var`), so that a runtime can refit weights by name;
//! every other constant of the graph is a `Constant` node. With `dynamic`, batch, height and
//! width are symbolic (`batch`, `height`, `width`); otherwise the input is `1×C×H×W`.

pub mod graph;
pub mod layers;
pub mod monodepth2;
pub mod proto;
pub mod rtmonodepth;

use crate::model::network::{DepthNetwork, PoseNetwork};
use crate::model::resnet::ResnetDepth;
use crate::model::{Arch, ModelError, PoseArch};
use graph::GraphBuilder;
use layers::{Emitter, Weights};
use proto::{Dim, ModelProto};
use std::path::{Path, PathBuf};
use tch::Device;

/// The architectures the exporter covers (all of [`Arch`]).
pub const COVERED_ARCHS: &str = "rtmonodepth-s, monodepth2-r18, monodepth2-r50";

/// Name of the depth graph's input.
pub const DEPTH_INPUT: &str = "image";
/// Name of the pose graph's input.
pub const POSE_INPUT: &str = "frame_pair";
/// Names of the pose graph's outputs.
pub const POSE_OUTPUTS: [&str; 2] = ["axis_angle", "translation"];

/// Errors of the ONNX export; each names the flag or file involved.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error(
        "{flag} {value}: expected a positive multiple of 32 (the network halves the image five \
         times)"
    )]
    InputSize { flag: &'static str, value: u32 },
    #[error("--arch `{value}`: unknown architecture (the ONNX exporter covers: {COVERED_ARCHS})")]
    UnknownArch { value: String },
    #[error("--network `{value}`: expected `depth` or `pose`")]
    UnknownNetwork { value: String },
    #[error(
        "--model {}: no such file or folder (expected a checkpoint folder, a `livedepth train` \
         folder or a .safetensors file)", path.display()
    )]
    ModelMissing { path: PathBuf },
    /// Boxed to keep the error small; `?` converts from the unboxed error.
    #[error(transparent)]
    Model(Box<ModelError>),
    #[error(
        "the {network} network has no parameter `{name}`: the exporter and src/model describe \
         different networks"
    )]
    MissingParameter { network: &'static str, name: String },
    #[error(
        "the ONNX graph of the {network} network leaves parameters unused ({names:?}): the \
         exporter and src/model describe different networks"
    )]
    UnusedParameters { network: &'static str, names: Vec<String> },
    #[error("libtorch: {0}")]
    Torch(String),
    #[error("--out {}: {source}", path.display())]
    Io { path: PathBuf, source: std::io::Error },
}

impl From<ModelError> for ExportError {
    fn from(e: ModelError) -> Self {
        ExportError::Model(Box::new(e))
    }
}

impl From<tch::TchError> for ExportError {
    fn from(e: tch::TchError) -> Self {
        ExportError::Torch(e.to_string())
    }
}

/// Which network of an architecture to export.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Network {
    /// The depth network (image → disparities).
    Depth,
    /// Its companion pose network (frame pair → axis-angle, translation).
    Pose,
}

impl std::str::FromStr for Network {
    type Err = ExportError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "depth" => Ok(Network::Depth),
            "pose" => Ok(Network::Pose),
            _ => Err(ExportError::UnknownNetwork { value: s.to_owned() }),
        }
    }
}

impl std::fmt::Display for Network {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Network::Depth => "depth",
            Network::Pose => "pose",
        })
    }
}

/// The `--arch` value as an architecture.
pub fn parse_arch(value: &str) -> Result<Arch, ExportError> {
    value.parse().map_err(|_| ExportError::UnknownArch { value: value.to_owned() })
}

/// Name of the depth graph's output at scale `s`: `disp_{s}`.
pub fn disp_output(s: usize) -> String {
    format!("disp_{s}")
}

/// The graph's input size: fixed `1×C×H×W`, or symbolic batch, height and width.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InputShape {
    pub width: u32,
    pub height: u32,
    pub dynamic: bool,
}

impl InputShape {
    /// Checks that width and height are positive multiples of 32.
    pub fn check(&self) -> Result<(), ExportError> {
        for (flag, value) in [("--width", self.width), ("--height", self.height)] {
            if value == 0 || value % 32 != 0 {
                return Err(ExportError::InputSize { flag, value });
            }
        }
        Ok(())
    }

    fn batch(&self) -> Dim {
        if self.dynamic { Dim::Param("batch".into()) } else { Dim::Value(1) }
    }

    /// `[B, channels, H/2^scale, W/2^scale]`.
    fn image(&self, channels: i64, scale: usize) -> Vec<Dim> {
        let side = |name: &str, size: u32| {
            if !self.dynamic {
                Dim::Value(i64::from(size >> scale))
            } else if scale == 0 {
                Dim::Param(name.to_owned())
            } else {
                Dim::Param(format!("{name}_div{}", 1u32 << scale))
            }
        };
        vec![
            self.batch(),
            Dim::Value(channels),
            side("height", self.height),
            side("width", self.width),
        ]
    }
}

/// What [`export`] does.
#[derive(Clone, Debug)]
pub struct ExportOptions {
    /// Checkpoint folder or safetensors file.
    pub model: PathBuf,
    pub arch: Arch,
    pub network: Network,
    pub shape: InputShape,
    /// The `.onnx` file to write.
    pub out: PathBuf,
}

/// What [`export`] wrote.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExportSummary {
    pub nodes: usize,
    pub initializers: usize,
    pub bytes: usize,
    pub inputs: Vec<String>,
    pub outputs: Vec<String>,
}

/// Loads the network of `options` (on the CPU), emits it and writes the ONNX file atomically.
pub fn export(options: &ExportOptions) -> Result<ExportSummary, ExportError> {
    options.shape.check()?;
    if !options.model.exists() {
        return Err(ExportError::ModelMissing { path: options.model.clone() });
    }
    let model = match options.network {
        Network::Depth => {
            let net = DepthNetwork::load(&options.model, options.arch, Device::Cpu)?;
            depth_model(&net, options.shape)?
        }
        Network::Pose => {
            let pose_arch = options.arch.companion_pose();
            let net = PoseNetwork::load(&options.model, pose_arch, Device::Cpu)?;
            pose_model(&net, options.shape)?
        }
    };
    let summary = ExportSummary {
        nodes: model.graph.nodes.len(),
        initializers: model.graph.initializers.len(),
        bytes: 0,
        inputs: model.graph.inputs.iter().map(|v| v.name.clone()).collect(),
        outputs: model.graph.outputs.iter().map(|v| v.name.clone()).collect(),
    };
    let bytes = model.encode();
    write(&options.out, &bytes)?;
    Ok(ExportSummary { bytes: bytes.len(), ..summary })
}

fn write(path: &Path, bytes: &[u8]) -> Result<(), ExportError> {
    let io = |source| ExportError::Io { path: path.to_path_buf(), source };
    crate::tempfiles::write_atomic(path, |temp| std::fs::write(temp, bytes).map_err(io), io)
}

fn metadata(arch: Arch, network: Network, shape: InputShape) -> Vec<(String, String)> {
    let (mean, std) = arch.normalisation();
    let mut pairs = vec![
        ("livedepth.arch", arch.name().to_owned()),
        ("livedepth.network", network.to_string()),
        ("livedepth.width", shape.width.to_string()),
        ("livedepth.height", shape.height.to_string()),
        ("livedepth.dynamic", shape.dynamic.to_string()),
        ("livedepth.normalisation", format!("(rgb - {mean:?}) / {std:?}, rgb in [0, 1]")),
    ];
    if network == Network::Pose {
        pairs.push(("livedepth.pose_arch", arch.companion_pose().name().to_owned()));
    }
    pairs.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()
}

/// The ONNX model of a depth network (see the module documentation for its interface).
pub fn depth_model(net: &DepthNetwork, shape: InputShape) -> Result<ModelProto, ExportError> {
    let arch = net.arch();
    shape.check()?;
    let mut g = GraphBuilder::new(&format!("{arch}-depth"));
    let mut weights = Weights::new(net.var_store(), "depth");
    let input = g.input(DEPTH_INPUT, shape.image(3, 0));
    let outputs = {
        let (mean, std) = arch.normalisation();
        let mut e = Emitter { g: &mut g, w: &mut weights };
        let x = e.normalise(&input, &mean, &std);
        match arch {
            Arch::RtMonoDepthS => rtmonodepth::emit_depth(&mut e, &x)?,
            Arch::Monodepth2R18 => monodepth2::emit_depth(&mut e, &x, ResnetDepth::R18)?,
            Arch::Monodepth2R50 => monodepth2::emit_depth(&mut e, &x, ResnetDepth::R50)?,
        }
    };
    weights.check_all_used()?;
    for (s, name) in outputs.iter().enumerate() {
        g.output(name, shape.image(1, s));
    }
    Ok(g.into_model(metadata(arch, Network::Depth, shape)))
}

/// The ONNX model of a pose network (see the module documentation for its interface).
pub fn pose_model(net: &PoseNetwork, shape: InputShape) -> Result<ModelProto, ExportError> {
    // The depth architecture the pose network goes with (its input normalisation).
    let arch = match net.arch() {
        PoseArch::RtMonoDepthSPose => Arch::RtMonoDepthS,
        PoseArch::Monodepth2R18 => Arch::Monodepth2R18,
    };
    shape.check()?;
    let mut g = GraphBuilder::new(net.arch().name());
    let mut weights = Weights::new(net.var_store(), "pose");
    let input = g.input(POSE_INPUT, shape.image(6, 0));
    {
        // Both frames are normalised alike, as the callers of `PoseNetwork` do.
        let (mean, std) = arch.normalisation();
        let mean6: Vec<f32> = mean.iter().chain(&mean).copied().collect();
        let std6: Vec<f32> = std.iter().chain(&std).copied().collect();
        let mut e = Emitter { g: &mut g, w: &mut weights };
        let x = e.normalise(&input, &mean6, &std6);
        let [axis_angle, translation] = POSE_OUTPUTS;
        match net.arch() {
            PoseArch::RtMonoDepthSPose => {
                rtmonodepth::emit_pose(&mut e, &x, axis_angle, translation)?
            }
            PoseArch::Monodepth2R18 => monodepth2::emit_pose(&mut e, &x, axis_angle, translation)?,
        }
    }
    weights.check_all_used()?;
    for name in POSE_OUTPUTS {
        g.output(name, vec![shape.batch(), Dim::Value(3)]);
    }
    Ok(g.into_model(metadata(arch, Network::Pose, shape)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proto::ModelProto;

    fn options(arch: Arch, width: u32, height: u32, model: &str) -> ExportOptions {
        ExportOptions {
            model: model.into(),
            arch,
            network: Network::Depth,
            shape: InputShape { width, height, dynamic: false },
            out: std::env::temp_dir().join("livedepth-export-never-written.onnx"),
        }
    }

    fn initializer_names(model: &ModelProto) -> Vec<String> {
        let mut names: Vec<String> =
            model.graph.initializers.iter().map(|t| t.name.clone()).collect();
        names.sort_unstable();
        names
    }

    fn varstore_names(vs: &tch::nn::VarStore) -> Vec<String> {
        let mut names: Vec<String> = vs.variables().into_keys().collect();
        names.sort_unstable();
        names
    }

    fn output_names(model: &ModelProto) -> Vec<&str> {
        model.graph.outputs.iter().map(|v| v.name.as_str()).collect()
    }

    fn count_ops(model: &ModelProto, op: &str) -> usize {
        model.graph.nodes.iter().filter(|n| n.op_type == op).count()
    }

    #[test]
    fn sizes_not_a_multiple_of_32_name_the_flag() {
        let e = export(&options(Arch::RtMonoDepthS, 100, 192, "/nonexistent")).unwrap_err();
        assert!(matches!(e, ExportError::InputSize { flag: "--width", value: 100 }), "{e}");
        assert!(e.to_string().contains("--width 100"), "{e}");
        let e = export(&options(Arch::Monodepth2R50, 640, 0, "/nonexistent")).unwrap_err();
        assert!(e.to_string().starts_with("--height 0: expected a positive multiple of 32"), "{e}");
    }

    #[test]
    fn every_arch_parses_and_unknown_ones_list_the_covered() {
        assert_eq!(parse_arch("RT-MonoDepth-S").unwrap(), Arch::RtMonoDepthS);
        assert_eq!(parse_arch("monodepth2-r18").unwrap(), Arch::Monodepth2R18);
        assert_eq!(parse_arch("md2-r50").unwrap(), Arch::Monodepth2R50);
        let e = parse_arch("resnet9000").unwrap_err();
        assert!(e.to_string().contains("--arch `resnet9000`"), "{e}");
        assert!(e.to_string().contains("rtmonodepth-s, monodepth2-r18, monodepth2-r50"), "{e}");
    }

    #[test]
    fn a_missing_model_names_the_flag_and_path() {
        for arch in [Arch::RtMonoDepthS, Arch::Monodepth2R18] {
            let e = export(&options(arch, 64, 32, "/nonexistent/model")).unwrap_err();
            assert!(matches!(e, ExportError::ModelMissing { .. }), "{e}");
            assert!(e.to_string().starts_with("--model /nonexistent/model: no such file"), "{e}");
        }
    }

    #[test]
    fn networks_parse_by_name() {
        assert_eq!("pose".parse::<Network>().unwrap(), Network::Pose);
        assert_eq!("Depth".parse::<Network>().unwrap(), Network::Depth);
        let e = "disparity".parse::<Network>().unwrap_err();
        assert_eq!(e.to_string(), "--network `disparity`: expected `depth` or `pose`");
    }

    #[test]
    fn fresh_networks_emit_every_parameter_under_its_varstore_name() {
        let shape = InputShape { width: 64, height: 32, dynamic: true };
        let depth = DepthNetwork::new(Arch::RtMonoDepthS, Device::Cpu);
        let model = depth_model(&depth, shape).unwrap();
        let names = initializer_names(&model);
        assert_eq!(names, varstore_names(depth.var_store()));
        assert!(names.iter().any(|n| n == "encoder.conv1.weight"));
        assert!(names.iter().any(|n| n == "depth.decoder.10.conv3.bias"));
        assert_eq!(output_names(&model), ["disp_0", "disp_1", "disp_2"]);
        assert_eq!(model.graph.inputs[0].shape[2], Dim::Param("height".into()));

        let pose = PoseNetwork::new(Arch::RtMonoDepthS.companion_pose(), Device::Cpu);
        let shape = InputShape { dynamic: false, ..shape };
        let model = pose_model(&pose, shape).unwrap();
        assert_eq!(model.graph.initializers.len(), pose.var_store().variables().len());
        assert_eq!(
            model.graph.inputs[0].shape,
            [Dim::Value(1), Dim::Value(6), Dim::Value(32), Dim::Value(64)]
        );
        assert_eq!(output_names(&model), POSE_OUTPUTS);
    }

    #[test]
    fn monodepth2_networks_emit_every_parameter_and_buffer() {
        let shape = InputShape { width: 64, height: 32, dynamic: true };
        let depth = DepthNetwork::new(Arch::Monodepth2R18, Device::Cpu);
        let model = depth_model(&depth, shape).unwrap();
        let names = initializer_names(&model);
        assert_eq!(names, varstore_names(depth.var_store()));
        for name in [
            "encoder.encoder.bn1.running_mean",
            "encoder.encoder.layer2.0.downsample.1.running_var",
            "depth.decoder.9.conv.conv.weight",
            "depth.decoder.13.conv.bias",
        ] {
            assert!(names.iter().any(|n| n == name), "{name} missing");
        }
        assert_eq!(output_names(&model), ["disp_0", "disp_1", "disp_2", "disp_3"]);
        assert_eq!(model.graph.outputs[3].shape[3], Dim::Param("width_div8".into()));
        // conv1 + 8 blocks × 2 + 3 downsamples; one max-pool; skips at levels 4..1.
        assert_eq!(count_ops(&model, "BatchNormalization"), 20);
        assert_eq!(count_ops(&model, "MaxPool"), 1);
        assert_eq!(count_ops(&model, "Concat"), 4);
        assert_eq!(count_ops(&model, "Sigmoid"), 4);

        let pose = PoseNetwork::new(Arch::Monodepth2R50.companion_pose(), Device::Cpu);
        let model = pose_model(&pose, InputShape { dynamic: false, ..shape }).unwrap();
        assert_eq!(initializer_names(&model), varstore_names(pose.var_store()));
        assert_eq!(output_names(&model), POSE_OUTPUTS);
        assert_eq!(model.graph.inputs[0].shape[1], Dim::Value(6));
        let meta: std::collections::HashMap<_, _> = model.metadata.iter().cloned().collect();
        assert_eq!(meta["livedepth.pose_arch"], "monodepth2-r18");
    }

    #[test]
    fn a_network_the_emitter_does_not_describe_is_an_error() {
        let shape = InputShape { width: 64, height: 32, dynamic: false };
        // A variable the emitter never reads.
        let depth = DepthNetwork::new(Arch::Monodepth2R18, Device::Cpu);
        let _stray = depth.var_store().root().zeros("stray", &[1]);
        let e = depth_model(&depth, shape).unwrap_err();
        assert!(
            matches!(&e, ExportError::UnusedParameters { network: "depth", names } if names == &["stray"]),
            "{e}"
        );
        // Weights of another architecture: the first parameter asked for is missing.
        let rt = DepthNetwork::new(Arch::RtMonoDepthS, Device::Cpu);
        let mut g = GraphBuilder::new("g");
        let mut w = Weights::new(rt.var_store(), "depth");
        let x = g.input(DEPTH_INPUT, shape.image(3, 0));
        let mut e = Emitter { g: &mut g, w: &mut w };
        let err = monodepth2::emit_depth(&mut e, &x, ResnetDepth::R18).unwrap_err();
        assert!(err.to_string().contains("no parameter `encoder.encoder.conv1.weight`"), "{err}");
    }
}
