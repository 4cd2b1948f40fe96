//! The Monodepth2 depth decoder (U-Net with skips: reflection-padded 3x3 convs + ELU, nearest
//! upsampling, sigmoid disparity at 4 scales; parameters `decoder.{0..9}.conv.conv`,
//! `decoder.{10+s}.conv`) and pose decoder (`net.{0..3}`: squeeze, two 3x3 convs, 1x1 to 12
//! numbers; mean over the image × 0.01, first 6 used: axis-angle then translation).

use super::layers::{Conv2d, Padding, upsample_nearest_2x};
use tch::{Tensor, nn};

/// Decoder channels per level.
const DECODER_CHANNELS: [i64; 5] = [16, 32, 64, 128, 256];

/// The Monodepth2 depth decoder for encoder channels `enc`.
#[derive(Debug)]
pub struct DepthDecoder {
    /// (upconv(i,0), upconv(i,1)) for i = 4..0.
    upconvs: Vec<(Conv2d, Conv2d)>,
    disp_convs: Vec<Conv2d>,
}

impl DepthDecoder {
    pub fn new(path: &nn::Path, enc: [i64; 5]) -> Self {
        let dec = path / "decoder";
        let upconvs = (0..5)
            .rev()
            .enumerate()
            .map(|(n, i)| {
                let cin0 = if i == 4 { enc[4] } else { DECODER_CHANNELS[i + 1] };
                let cout = DECODER_CHANNELS[i];
                let cin1 = cout + if i > 0 { enc[i - 1] } else { 0 };
                let c0 = Conv2d::new(
                    &(&dec / (2 * n) / "conv" / "conv"),
                    cin0,
                    cout,
                    3,
                    1,
                    Padding::Reflect(1),
                    true,
                );
                let c1 = Conv2d::new(
                    &(&dec / (2 * n + 1) / "conv" / "conv"),
                    cin1,
                    cout,
                    3,
                    1,
                    Padding::Reflect(1),
                    true,
                );
                (c0, c1)
            })
            .collect();
        let disp_convs = (0..4)
            .map(|s| {
                Conv2d::new(
                    &(&dec / (10 + s) / "conv"),
                    DECODER_CHANNELS[s],
                    1,
                    3,
                    1,
                    Padding::Reflect(1),
                    true,
                )
            })
            .collect();
        Self { upconvs, disp_convs }
    }

    /// Sigmoid disparities, scale 0 (input resolution) first.
    pub fn forward(&self, features: &[Tensor]) -> Vec<Tensor> {
        let mut x = features[4].shallow_clone();
        let mut disps = Vec::with_capacity(4);
        for (n, i) in (0..5usize).rev().enumerate() {
            let (c0, c1) = &self.upconvs[n];
            x = upsample_nearest_2x(&c0.forward(&x).elu_());
            if i > 0 {
                x = Tensor::cat(&[&x, &features[i - 1]], 1);
            }
            x = c1.forward(&x).elu_();
            if i <= 3 {
                disps.push(self.disp_convs[i].forward(&x).sigmoid_());
            }
        }
        disps.reverse();
        disps
    }
}

/// The Monodepth2 pose decoder over the last feature of a 6-channel ResNet-18.
#[derive(Debug)]
pub struct PoseDecoder {
    convs: Vec<Conv2d>,
}

impl PoseDecoder {
    pub fn new(path: &nn::Path, enc_last: i64) -> Self {
        let net = path / "net";
        Self {
            convs: vec![
                Conv2d::new(&(&net / 0), enc_last, 256, 1, 1, Padding::Zero(0), true),
                Conv2d::new(&(&net / 1), 256, 256, 3, 1, Padding::Zero(1), true),
                Conv2d::new(&(&net / 2), 256, 256, 3, 1, Padding::Zero(1), true),
                Conv2d::new(&(&net / 3), 256, 12, 1, 1, Padding::Zero(0), true),
            ],
        }
    }

    /// `(axis_angle [B,3], translation [B,3])` of the first frame pair.
    pub fn forward(&self, last_feature: &Tensor) -> (Tensor, Tensor) {
        let mut x = self.convs[0].forward(last_feature).relu_();
        x = self.convs[1].forward(&x).relu_();
        x = self.convs[2].forward(&x).relu_();
        let x = self.convs[3].forward(&x).mean_dim([2i64, 3].as_slice(), false, None) * 0.01;
        (x.narrow(1, 0, 3), x.narrow(1, 3, 3))
    }
}
