//! RT-MonoDepth-S (ICIP 2024) as described by the published checkpoint: a small strided-conv
//! encoder (four feature maps at 1/2 … 1/16), a decoder without skip connections that upsamples
//! back to the input size and outputs sigmoid disparities at 3 scales, and a light pose network
//! built from the same encoder design over two stacked frames.

use super::layers::{Conv2d, Padding, leaky_relu, leaky_slope, upsample_nearest_2x};
use tch::{Tensor, nn};

/// Encoder channels of f0..f3.
pub const ENCODER_CHANNELS: [i64; 4] = [64, 64, 128, 192];
/// Decoder block channels for i = 0..3.
const DECODER_CHANNELS: [i64; 4] = [16, 32, 64, 96];

/// The RT-MonoDepth-S encoder (`conv1`, `convs.{i}.{0,2}`), for 3 (depth) or 6 (pose) input
/// channels.
#[derive(Debug)]
pub struct RtEncoder {
    conv1: Conv2d,
    convs: Vec<(Conv2d, Conv2d)>,
    slope: Tensor,
}

impl RtEncoder {
    pub fn new(path: &nn::Path, in_channels: i64) -> Self {
        let conv1 = Conv2d::new(&(path / "conv1"), in_channels, 64, 7, 2, Padding::Zero(3), false);
        let convs_path = path / "convs";
        let convs = (0..3)
            .map(|i| {
                let p = &convs_path / i;
                let (cin, cout) = (ENCODER_CHANNELS[i], ENCODER_CHANNELS[i + 1]);
                (
                    Conv2d::new(&(&p / 0), cin, cout, 3, 2, Padding::Zero(1), true),
                    Conv2d::new(&(&p / 2), cout, cout, 3, 1, Padding::Zero(1), true),
                )
            })
            .collect();
        Self { conv1, convs, slope: leaky_slope(0.1, path.device()) }
    }

    /// Features f0..f3 of a normalised input.
    pub fn forward(&self, x: &Tensor) -> Vec<Tensor> {
        let mut features = Vec::with_capacity(4);
        features.push(self.conv1.forward(x).relu_());
        for (down, same) in &self.convs {
            let prev = &features[features.len() - 1];
            let y = leaky_relu(
                &same.forward(&leaky_relu(&down.forward(prev), &self.slope)),
                &self.slope,
            );
            features.push(y);
        }
        features
    }
}

/// The RT-MonoDepth-S depth decoder (`decoder.{0..7}.conv`, `decoder.{8+s}.conv3`).
#[derive(Debug)]
pub struct RtDecoder {
    blocks: Vec<Conv2d>,
    disp_convs: Vec<Conv2d>,
}

impl RtDecoder {
    pub fn new(path: &nn::Path) -> Self {
        let dec = path / "decoder";
        let mut blocks = Vec::with_capacity(8);
        let mut cin = ENCODER_CHANNELS[3];
        for (k, i) in [3usize, 2, 1, 0].into_iter().enumerate() {
            let cout = DECODER_CHANNELS[i];
            blocks.push(Conv2d::new(
                &(&dec / (2 * k) / "conv"),
                cin,
                cout,
                3,
                1,
                Padding::Reflect(1),
                true,
            ));
            blocks.push(Conv2d::new(
                &(&dec / (2 * k + 1) / "conv"),
                cout,
                cout,
                3,
                1,
                Padding::Reflect(1),
                true,
            ));
            cin = cout;
        }
        let disp_convs = (0..3)
            .map(|s| {
                Conv2d::new(
                    &(&dec / (8 + s) / "conv3"),
                    DECODER_CHANNELS[s],
                    1,
                    3,
                    1,
                    Padding::Zero(1),
                    true,
                )
            })
            .collect();
        Self { blocks, disp_convs }
    }

    /// Sigmoid disparities, scale 0 (input resolution) first, from the encoder features.
    pub fn forward(&self, features: &[Tensor]) -> Vec<Tensor> {
        let mut x = features[3].shallow_clone();
        let mut disps = Vec::with_capacity(3);
        for (k, i) in [3usize, 2, 1, 0].into_iter().enumerate() {
            x = upsample_nearest_2x(&self.blocks[2 * k].forward(&x).elu_());
            x = self.blocks[2 * k + 1].forward(&x).elu_();
            if i <= 2 {
                disps.push(self.disp_convs[i].forward(&x).sigmoid_());
            }
        }
        disps.reverse();
        disps
    }
}

/// Head of the light pose network (`net.0` 1x1 192→128, `net.1` 3x3 128→128, `net.2` 1x1
/// 128→6): mean over the image, scaled by 0.01, axis-angle then translation.
#[derive(Debug)]
pub struct LightPoseDecoder {
    squeeze: Conv2d,
    conv: Conv2d,
    out: Conv2d,
}

impl LightPoseDecoder {
    pub fn new(path: &nn::Path) -> Self {
        let net = path / "net";
        let c = ENCODER_CHANNELS[3];
        Self {
            squeeze: Conv2d::new(&(&net / 0), c, 128, 1, 1, Padding::Zero(0), true),
            conv: Conv2d::new(&(&net / 1), 128, 128, 3, 1, Padding::Zero(1), true),
            out: Conv2d::new(&(&net / 2), 128, 6, 1, 1, Padding::Zero(0), true),
        }
    }

    /// `(axis_angle [B,3], translation [B,3])` from the last encoder feature.
    pub fn forward(&self, last_feature: &Tensor) -> (Tensor, Tensor) {
        let x = self.squeeze.forward(last_feature).relu_();
        let x = self.conv.forward(&x).relu_();
        let x = self.out.forward(&x).mean_dim([2i64, 3].as_slice(), false, None) * 0.01;
        (x.narrow(1, 0, 3), x.narrow(1, 3, 3))
    }
}
