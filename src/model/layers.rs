//! Building blocks shared by the networks: 2-D convolution with zero or reflection padding and
//! batch normalisation, each registering its parameters under the checkpoint's names
//! (`weight`, `bias`, `running_mean`, `running_var`).

use tch::{Tensor, nn};

/// How a convolution pads its input.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Padding {
    /// Zero padding of this many pixels on every side.
    Zero(i64),
    /// Reflection padding of this many pixels on every side.
    Reflect(i64),
}

/// A square 2-D convolution.
#[derive(Debug)]
pub struct Conv2d {
    pub weight: Tensor,
    pub bias: Option<Tensor>,
    stride: i64,
    padding: Padding,
}

impl Conv2d {
    /// Registers `weight` (out x in x k x k) and, when `bias`, `bias` under `path`.
    /// Initialised like PyTorch's default (Kaiming-uniform weights, uniform bias).
    pub fn new(
        path: &nn::Path,
        in_channels: i64,
        out_channels: i64,
        kernel: i64,
        stride: i64,
        padding: Padding,
        bias: bool,
    ) -> Self {
        let fan_in = (in_channels * kernel * kernel) as f64;
        let bound = 1.0 / fan_in.sqrt();
        let weight = path.var(
            "weight",
            &[out_channels, in_channels, kernel, kernel],
            nn::Init::Uniform { lo: -bound, up: bound },
        );
        let bias = bias.then(|| {
            path.var("bias", &[out_channels], nn::Init::Uniform { lo: -bound, up: bound })
        });
        Self { weight, bias, stride, padding }
    }

    /// Applies the convolution.
    pub fn forward(&self, x: &Tensor) -> Tensor {
        let s = [self.stride, self.stride];
        match self.padding {
            Padding::Zero(p) => x.conv2d(&self.weight, self.bias.as_ref(), s, [p, p], [1, 1], 1),
            Padding::Reflect(p) => x.reflection_pad2d([p, p, p, p]).conv2d(
                &self.weight,
                self.bias.as_ref(),
                s,
                [0, 0],
                [1, 1],
                1,
            ),
        }
    }
}

/// Batch normalisation over channels (eps 1e-5, momentum 0.1, as PyTorch's default).
#[derive(Debug)]
pub struct BatchNorm2d {
    pub weight: Tensor,
    pub bias: Tensor,
    pub running_mean: Tensor,
    pub running_var: Tensor,
}

impl BatchNorm2d {
    /// Registers weight, bias (trainable) and running statistics (not trainable) under `path`.
    pub fn new(path: &nn::Path, channels: i64) -> Self {
        Self {
            weight: path.var("weight", &[channels], nn::Init::Const(1.0)),
            bias: path.var("bias", &[channels], nn::Init::Const(0.0)),
            running_mean: path.zeros_no_train("running_mean", &[channels]),
            running_var: path.ones_no_train("running_var", &[channels]),
        }
    }

    /// Normalises with batch statistics (updating the running ones) when `train`, else with the
    /// running statistics.
    pub fn forward_t(&self, x: &Tensor, train: bool) -> Tensor {
        x.batch_norm(
            Some(&self.weight),
            Some(&self.bias),
            Some(&self.running_mean),
            Some(&self.running_var),
            train,
            0.1,
            1e-5,
            true,
        )
    }
}

/// Leaky ReLU whose negative slope is the one-element tensor `slope` (PReLU with a constant
/// weight: a single fused kernel, unlike `maximum(x, slope·x)`; tch exposes no slope argument
/// for `leaky_relu`).
pub fn leaky_relu(x: &Tensor, slope: &Tensor) -> Tensor {
    x.prelu(slope)
}

/// A constant one-element slope tensor for [`leaky_relu`] on `device`.
pub fn leaky_slope(value: f32, device: tch::Device) -> Tensor {
    Tensor::from_slice(&[value]).to_device(device)
}

/// Converts every 4-D variable of `vs` to channels-last (NHWC) strides in place, keeping its
/// logical NCHW shape, so oneDNN/cuDNN convolutions avoid per-call layout reorders. Loading,
/// copying and saving weights work unchanged (they go through strided copies).
pub fn vars_to_channels_last(vs: &nn::VarStore) {
    tch::no_grad(|| {
        for (_, mut var) in vs.variables() {
            if var.dim() == 4 {
                let nhwc = to_channels_last(&var);
                var.set_data(&nhwc);
            }
        }
    });
}

/// `x` (NCHW) with channels-last strides.
pub fn to_channels_last(x: &Tensor) -> Tensor {
    x.permute([0, 2, 3, 1]).contiguous().permute([0, 3, 1, 2])
}

/// Nearest-neighbour 2x upsampling.
pub fn upsample_nearest_2x(x: &Tensor) -> Tensor {
    let size = x.size();
    x.upsample_nearest2d([size[2] * 2, size[3] * 2], 2.0, 2.0)
}
