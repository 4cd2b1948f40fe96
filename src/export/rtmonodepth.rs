//! The ONNX emitter of RT-MonoDepth-S and its light pose network: walks the same layer
//! structure as [`crate::model::rtmonodepth`] (encoder `conv1` + `convs.{i}.{0,2}`, decoder
//! `decoder.{0..7}.conv` + `decoder.{8+s}.conv3`, pose head `net.{0,1,2}`) and adds each weight
//! as an initializer under its `VarStore` name.
//!
//! Layer → ONNX mapping: a zero-padded convolution is one `Conv` with `pads`; a
//! reflection-padded one is `Pad` (mode `reflect`) then `Conv`; leaky ReLU (slope 0.1) is
//! `LeakyRelu`; the nearest 2× upsampling is `Resize` (mode `nearest`, `asymmetric`
//! coordinates, `floor` rounding: output pixel `i` reads input pixel `⌊i/2⌋`, as libtorch's
//! `upsample_nearest2d`); the pose head's mean over the image is `ReduceMean` over axes 2, 3.

use super::ExportError;
use super::graph::{GraphBuilder, attr_float, attr_int, attr_ints, attr_string};
use crate::model::layers::Padding;
use crate::model::network::{DEPTH_GROUP, ENCODER_GROUP, POSE_ENCODER_GROUP, POSE_GROUP};
use crate::model::rtmonodepth::ENCODER_CHANNELS;
use std::collections::{BTreeSet, HashMap};
use tch::{Kind, Tensor, nn};

/// Slope of the encoder's leaky ReLUs (`RtEncoder`).
const LEAKY_SLOPE: f32 = 0.1;
/// Scale applied to the pose head's mean output (`LightPoseDecoder`).
const POSE_SCALE: f32 = 0.01;
/// Number of disparity scales of the RT-MonoDepth-S decoder.
pub const NUM_SCALES: usize = 3;

/// The weights of one network, by `VarStore` name, and which of them the graph uses.
pub struct Weights {
    network: &'static str,
    vars: HashMap<String, Tensor>,
    used: BTreeSet<String>,
}

impl Weights {
    /// The variables of `vs`; `network` names the network in errors.
    pub fn new(vs: &nn::VarStore, network: &'static str) -> Self {
        Self { network, vars: vs.variables(), used: BTreeSet::new() }
    }

    /// Adds the variable `name` as an initializer (once) and returns its name and shape.
    fn add(&mut self, g: &mut GraphBuilder, name: &str) -> Result<(String, Vec<i64>), ExportError> {
        let var = self.vars.get(name).ok_or_else(|| ExportError::MissingParameter {
            network: self.network,
            name: name.to_owned(),
        })?;
        let dims = var.size();
        if !g.has_initializer(name) {
            let host = var
                .f_detach()?
                .f_to_device(tch::Device::Cpu)?
                .f_to_kind(Kind::Float)?
                .f_contiguous()?;
            let numel = host.numel();
            let mut values = vec![0f32; numel];
            host.f_copy_data(&mut values, numel)?;
            g.initializer(name, &dims, &values);
            self.used.insert(name.to_owned());
        }
        Ok((name.to_owned(), dims))
    }

    /// Fails when a variable of the network was never used: the emitter and `src/model` would
    /// then describe different networks.
    pub fn check_all_used(&self) -> Result<(), ExportError> {
        let mut unused: Vec<String> =
            self.vars.keys().filter(|k| !self.used.contains(*k)).cloned().collect();
        if unused.is_empty() {
            return Ok(());
        }
        unused.sort();
        Err(ExportError::UnusedParameters { network: self.network, names: unused })
    }
}

/// Emits layers into a graph, taking weights from [`Weights`].
pub struct Emitter<'a> {
    pub g: &'a mut GraphBuilder,
    pub w: &'a mut Weights,
}

impl Emitter<'_> {
    /// A square convolution (`{path}.weight`, and `{path}.bias` when `bias`), as
    /// `layers::Conv2d::forward`.
    fn conv(
        &mut self,
        x: &str,
        path: &str,
        stride: i64,
        padding: Padding,
        bias: bool,
    ) -> Result<String, ExportError> {
        let (weight, dims) = self.w.add(self.g, &format!("{path}.weight"))?;
        let kernel =
            dims.get(2..4).map(<[i64]>::to_vec).ok_or_else(|| ExportError::MissingParameter {
                network: self.w.network,
                name: format!("{weight} (4-D)"),
            })?;
        let mut inputs = vec![weight];
        if bias {
            inputs.push(self.w.add(self.g, &format!("{path}.bias"))?.0);
        }
        let (x, pad) = match padding {
            Padding::Zero(p) => (x.to_owned(), p),
            Padding::Reflect(p) => {
                // `pads` lists all begins then all ends, per axis: N, C, H, W.
                let pads = self.g.constant_i64(&[8], &[0, 0, p, p, 0, 0, p, p]);
                (self.g.node("Pad", &[x, &pads], vec![attr_string("mode", "reflect")]), 0)
            }
        };
        let mut all = vec![x.as_str()];
        all.extend(inputs.iter().map(String::as_str));
        let attrs = vec![
            attr_ints("kernel_shape", &kernel),
            attr_ints("strides", &[stride, stride]),
            attr_ints("pads", &[pad, pad, pad, pad]),
            attr_ints("dilations", &[1, 1]),
            attr_int("group", 1),
        ];
        Ok(self.g.node("Conv", &all, attrs))
    }

    fn unary(&mut self, op: &str, x: &str) -> String {
        self.g.node(op, &[x], vec![])
    }

    fn leaky_relu(&mut self, x: &str) -> String {
        self.g.node("LeakyRelu", &[x], vec![attr_float("alpha", LEAKY_SLOPE)])
    }

    fn elu(&mut self, x: &str) -> String {
        self.g.node("Elu", &[x], vec![attr_float("alpha", 1.0)])
    }

    fn upsample_nearest_2x(&mut self, x: &str) -> String {
        let scales = self.g.constant_f32(&[4], &[1.0, 1.0, 2.0, 2.0]);
        let attrs = vec![
            attr_string("mode", "nearest"),
            attr_string("coordinate_transformation_mode", "asymmetric"),
            attr_string("nearest_mode", "floor"),
        ];
        // Inputs X, roi (omitted), scales.
        self.g.node("Resize", &[x, "", &scales], attrs)
    }

    /// `(x − mean) / std` per channel, as the callers of the networks normalise their input.
    pub fn normalise(&mut self, x: &str, mean: &[f32], std: &[f32]) -> String {
        let c = mean.len() as i64;
        let mean = self.g.constant_f32(&[1, c, 1, 1], mean);
        let std = self.g.constant_f32(&[1, c, 1, 1], std);
        let centred = self.g.node("Sub", &[x, &mean], vec![]);
        self.g.node("Div", &[&centred, &std], vec![])
    }

    /// `RtEncoder::forward` under `prefix`: features f0..f3.
    pub fn encoder(&mut self, x: &str, prefix: &str) -> Result<Vec<String>, ExportError> {
        let conv1 = self.conv(x, &format!("{prefix}.conv1"), 2, Padding::Zero(3), false)?;
        let mut features = vec![self.unary("Relu", &conv1)];
        for i in 0..ENCODER_CHANNELS.len() - 1 {
            let prev = features[features.len() - 1].clone();
            let down =
                self.conv(&prev, &format!("{prefix}.convs.{i}.0"), 2, Padding::Zero(1), true)?;
            let down = self.leaky_relu(&down);
            let same =
                self.conv(&down, &format!("{prefix}.convs.{i}.2"), 1, Padding::Zero(1), true)?;
            features.push(self.leaky_relu(&same));
        }
        Ok(features)
    }

    /// `RtDecoder::forward` under `prefix`, writing the disparity of scale `s` to `outputs[s]`.
    pub fn depth_decoder(
        &mut self,
        features: &[String],
        prefix: &str,
        outputs: &[String; NUM_SCALES],
    ) -> Result<(), ExportError> {
        let mut x = features[3].clone();
        for (k, i) in [3usize, 2, 1, 0].into_iter().enumerate() {
            let c = self.conv(
                &x,
                &format!("{prefix}.decoder.{}.conv", 2 * k),
                1,
                Padding::Reflect(1),
                true,
            )?;
            let c = self.elu(&c);
            x = self.upsample_nearest_2x(&c);
            let c = self.conv(
                &x,
                &format!("{prefix}.decoder.{}.conv", 2 * k + 1),
                1,
                Padding::Reflect(1),
                true,
            )?;
            x = self.elu(&c);
            if i < NUM_SCALES {
                let path = format!("{prefix}.decoder.{}.conv3", 8 + i);
                let d = self.conv(&x, &path, 1, Padding::Zero(1), true)?;
                self.g.node_to("Sigmoid", &[&d], vec![], &[&outputs[i]]);
            }
        }
        Ok(())
    }

    /// `LightPoseDecoder::forward` under `prefix`, writing `[B,3]` axis-angle and translation.
    pub fn pose_head(
        &mut self,
        last_feature: &str,
        prefix: &str,
        axis_angle: &str,
        translation: &str,
    ) -> Result<(), ExportError> {
        let x = self.conv(last_feature, &format!("{prefix}.net.0"), 1, Padding::Zero(0), true)?;
        let x = self.unary("Relu", &x);
        let x = self.conv(&x, &format!("{prefix}.net.1"), 1, Padding::Zero(1), true)?;
        let x = self.unary("Relu", &x);
        let x = self.conv(&x, &format!("{prefix}.net.2"), 1, Padding::Zero(0), true)?;
        let mean = self.g.node(
            "ReduceMean",
            &[&x],
            vec![attr_ints("axes", &[2, 3]), attr_int("keepdims", 0)],
        );
        let scale = self.g.constant_f32(&[], &[POSE_SCALE]);
        let scaled = self.g.node("Mul", &[&mean, &scale], vec![]);
        let split = self.g.constant_i64(&[2], &[3, 3]);
        self.g.node_to(
            "Split",
            &[&scaled, &split],
            vec![attr_int("axis", 1)],
            &[axis_angle, translation],
        );
        Ok(())
    }
}

/// The depth network: encoder under `encoder.`, decoder under `depth.`.
pub fn emit_depth(
    e: &mut Emitter<'_>,
    normalised: &str,
    outputs: &[String; NUM_SCALES],
) -> Result<(), ExportError> {
    let features = e.encoder(normalised, ENCODER_GROUP)?;
    e.depth_decoder(&features, DEPTH_GROUP, outputs)
}

/// The light pose network: encoder (6 channels) under `pose_encoder.`, head under `pose.`.
pub fn emit_pose(
    e: &mut Emitter<'_>,
    normalised: &str,
    axis_angle: &str,
    translation: &str,
) -> Result<(), ExportError> {
    let features = e.encoder(normalised, POSE_ENCODER_GROUP)?;
    e.pose_head(&features[3], POSE_GROUP, axis_angle, translation)
}
