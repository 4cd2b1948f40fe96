//! The layers every network emitter shares: [`Weights`] (the network's `VarStore` variables,
//! added as initializers under their own names, with the check that each was used) and
//! [`Emitter`], which writes one ONNX node group per layer of [`crate::model::layers`].
//!
//! Layer → ONNX mapping:
//! - zero-padded convolution: one `Conv` with `pads`; reflection-padded: `Pad` (mode
//!   `reflect`) then `Conv` (as `layers::Conv2d::forward`);
//! - batch normalisation in eval mode: `BatchNormalization` (inputs X, scale = `weight`,
//!   B = `bias`, `running_mean`, `running_var`; epsilon 1e-5, as `layers::BatchNorm2d`);
//! - max-pooling: `MaxPool` (padded cells never win, as in libtorch's `max_pool2d`);
//! - nearest 2× upsampling: `Resize` (mode `nearest`, `asymmetric` coordinates, `floor`
//!   rounding: output pixel `i` reads input pixel `⌊i/2⌋`, as libtorch's
//!   `upsample_nearest2d`);
//! - ReLU, leaky ReLU, ELU (α = 1), sigmoid, sums and channel concatenation: the ONNX
//!   operator of the same name;
//! - the pose heads' mean over the image times a scale: `ReduceMean` over axes 2, 3 then `Mul`.

use super::ExportError;
use super::graph::{GraphBuilder, attr_float, attr_int, attr_ints, attr_string};
use crate::model::layers::Padding;
use std::collections::{BTreeSet, HashMap};
use tch::{Kind, Tensor, nn};

/// Epsilon of every batch normalisation (`layers::BatchNorm2d`, PyTorch's default).
const BATCH_NORM_EPS: f32 = 1e-5;

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
        let var = self.vars.get(name).ok_or_else(|| self.missing(name.to_owned()))?;
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

    fn missing(&self, name: String) -> ExportError {
        ExportError::MissingParameter { network: self.network, name }
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

/// Emits layers into a graph, taking weights from [`Weights`]. Each method takes and returns
/// value names.
pub struct Emitter<'a> {
    pub g: &'a mut GraphBuilder,
    pub w: &'a mut Weights,
}

impl Emitter<'_> {
    /// A square convolution (`{path}.weight`, and `{path}.bias` when `bias`), as
    /// `layers::Conv2d::forward`; the kernel size comes from the weight's shape.
    pub fn conv(
        &mut self,
        x: &str,
        path: &str,
        stride: i64,
        padding: Padding,
        bias: bool,
    ) -> Result<String, ExportError> {
        let (weight, dims) = self.w.add(self.g, &format!("{path}.weight"))?;
        let kernel = dims
            .get(2..4)
            .map(<[i64]>::to_vec)
            .ok_or_else(|| self.w.missing(format!("{weight} (4-D)")))?;
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

    /// Eval-mode batch normalisation with the running statistics of `{path}`
    /// (`layers::BatchNorm2d::forward_t` with `train` false).
    pub fn batch_norm(&mut self, x: &str, path: &str) -> Result<String, ExportError> {
        // BatchNormalization-15 inputs, in order: X, scale, B, input_mean, input_var.
        let mut inputs = vec![x.to_owned()];
        for param in ["weight", "bias", "running_mean", "running_var"] {
            inputs.push(self.w.add(self.g, &format!("{path}.{param}"))?.0);
        }
        let inputs: Vec<&str> = inputs.iter().map(String::as_str).collect();
        let attrs = vec![attr_float("epsilon", BATCH_NORM_EPS), attr_int("training_mode", 0)];
        Ok(self.g.node("BatchNormalization", &inputs, attrs))
    }

    /// Max-pooling over `kernel`×`kernel` windows, `stride`, `pad` pixels each side, floor
    /// rounding of the output size (`Tensor::max_pool2d` with `ceil_mode` false).
    pub fn max_pool(&mut self, x: &str, kernel: i64, stride: i64, pad: i64) -> String {
        let attrs = vec![
            attr_ints("kernel_shape", &[kernel, kernel]),
            attr_ints("strides", &[stride, stride]),
            attr_ints("pads", &[pad, pad, pad, pad]),
            attr_ints("dilations", &[1, 1]),
            attr_int("ceil_mode", 0),
        ];
        self.g.node("MaxPool", &[x], attrs)
    }

    /// A one-input operator without attributes (`Relu`, `Sigmoid`, …).
    pub fn unary(&mut self, op: &str, x: &str) -> String {
        self.g.node(op, &[x], vec![])
    }

    /// `a + b` (same shapes).
    pub fn add(&mut self, a: &str, b: &str) -> String {
        self.g.node("Add", &[a, b], vec![])
    }

    /// The values concatenated along the channel axis, in order.
    pub fn concat_channels(&mut self, values: &[&str]) -> String {
        self.g.node("Concat", values, vec![attr_int("axis", 1)])
    }

    /// Leaky ReLU of negative slope `slope`.
    pub fn leaky_relu(&mut self, x: &str, slope: f32) -> String {
        self.g.node("LeakyRelu", &[x], vec![attr_float("alpha", slope)])
    }

    /// ELU with α = 1 (`Tensor::elu`).
    pub fn elu(&mut self, x: &str) -> String {
        self.g.node("Elu", &[x], vec![attr_float("alpha", 1.0)])
    }

    /// `layers::upsample_nearest_2x`.
    pub fn upsample_nearest_2x(&mut self, x: &str) -> String {
        let scales = self.g.constant_f32(&[4], &[1.0, 1.0, 2.0, 2.0]);
        let attrs = vec![
            attr_string("mode", "nearest"),
            attr_string("coordinate_transformation_mode", "asymmetric"),
            attr_string("nearest_mode", "floor"),
        ];
        // Inputs X, roi (omitted), scales.
        self.g.node("Resize", &[x, "", &scales], attrs)
    }

    /// One up-sampling stage of both depth decoders: the reflection-padded 3×3 convolution
    /// `first` → ELU → nearest 2× → (with `skip`, concatenated after it on channels) → the
    /// reflection-padded 3×3 convolution `second` → ELU.
    pub fn up_stage(
        &mut self,
        x: &str,
        first: &str,
        second: &str,
        skip: Option<&str>,
    ) -> Result<String, ExportError> {
        let c = self.conv(x, first, 1, Padding::Reflect(1), true)?;
        let c = self.elu(&c);
        let mut up = self.upsample_nearest_2x(&c);
        if let Some(skip) = skip {
            up = self.concat_channels(&[&up, skip]);
        }
        let c = self.conv(&up, second, 1, Padding::Reflect(1), true)?;
        Ok(self.elu(&c))
    }

    /// A disparity head: the 3×3 convolution `path` (with `padding`) → sigmoid, written to the
    /// value named `output`.
    pub fn disparity_head(
        &mut self,
        x: &str,
        path: &str,
        padding: Padding,
        output: &str,
    ) -> Result<(), ExportError> {
        let d = self.conv(x, path, 1, padding, true)?;
        self.g.node_to("Sigmoid", &[&d], vec![], &[output]);
        Ok(())
    }

    /// `(x − mean) / std` per channel, as the callers of the networks normalise their input.
    pub fn normalise(&mut self, x: &str, mean: &[f32], std: &[f32]) -> String {
        let c = mean.len() as i64;
        let mean = self.g.constant_f32(&[1, c, 1, 1], mean);
        let std = self.g.constant_f32(&[1, c, 1, 1], std);
        let centred = self.g.node("Sub", &[x, &mean], vec![]);
        self.g.node("Div", &[&centred, &std], vec![])
    }

    /// `mean over H, W of x × scale`: `[B,C,H,W]` → `[B,C]`.
    pub fn spatial_mean_scaled(&mut self, x: &str, scale: f32) -> String {
        let mean = self.g.node(
            "ReduceMean",
            &[x],
            vec![attr_ints("axes", &[2, 3]), attr_int("keepdims", 0)],
        );
        let scale = self.g.constant_f32(&[], &[scale]);
        self.g.node("Mul", &[&mean, &scale], vec![])
    }

    /// Channels `start..end` of a `[B,C]` value, written to the value named `output`
    /// (`Tensor::narrow` on axis 1).
    pub fn channels_to(&mut self, x: &str, start: i64, end: i64, output: &str) {
        let starts = self.g.constant_i64(&[1], &[start]);
        let ends = self.g.constant_i64(&[1], &[end]);
        let axes = self.g.constant_i64(&[1], &[1]);
        // Slice-13 inputs: data, starts, ends, axes (steps omitted: 1).
        self.g.node_to("Slice", &[x, &starts, &ends, &axes], vec![], &[output]);
    }
}
