//! ResNet-18 / ResNet-50 encoders in the torchvision parameter layout (`conv1`, `bn1`,
//! `layer{1..4}.{b}.{conv,bn}{1,2[,3]}`, `layer{k}.0.downsample.{0,1}`), returning the five
//! feature maps Monodepth2 uses: relu(bn1(conv1)), then layer1..layer4 after the max-pool.

use super::layers::{BatchNorm2d, Conv2d, Padding};
use tch::{Tensor, nn};

/// Which ResNet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ResnetDepth {
    R18,
    R50,
}

impl ResnetDepth {
    /// Channels of the five feature maps.
    pub fn channels(self) -> [i64; 5] {
        match self {
            ResnetDepth::R18 => [64, 64, 128, 256, 512],
            ResnetDepth::R50 => [64, 256, 512, 1024, 2048],
        }
    }

    fn blocks_per_layer(self) -> [usize; 4] {
        match self {
            ResnetDepth::R18 => [2, 2, 2, 2],
            ResnetDepth::R50 => [3, 4, 6, 3],
        }
    }
}

#[derive(Debug)]
struct Downsample {
    conv: Conv2d,
    bn: BatchNorm2d,
}

/// A basic (two 3x3 convs) or bottleneck (1x1, 3x3, 1x1) residual block.
#[derive(Debug)]
struct Block {
    convs: Vec<(Conv2d, BatchNorm2d)>,
    downsample: Option<Downsample>,
}

impl Block {
    fn new(path: &nn::Path, depth: ResnetDepth, cin: i64, width: i64, stride: i64) -> (Self, i64) {
        let (specs, cout): (Vec<(i64, i64, i64, i64)>, i64) = match depth {
            ResnetDepth::R18 => (vec![(cin, width, 3, stride), (width, width, 3, 1)], width),
            ResnetDepth::R50 => (
                vec![(cin, width, 1, 1), (width, width, 3, stride), (width, width * 4, 1, 1)],
                width * 4,
            ),
        };
        let convs = specs
            .into_iter()
            .enumerate()
            .map(|(j, (i, o, k, s))| {
                let conv = Conv2d::new(
                    &(path / format!("conv{}", j + 1)),
                    i,
                    o,
                    k,
                    s,
                    Padding::Zero(k / 2),
                    false,
                );
                (conv, BatchNorm2d::new(&(path / format!("bn{}", j + 1)), o))
            })
            .collect();
        let downsample = (stride != 1 || cin != cout).then(|| {
            let p = path / "downsample";
            Downsample {
                conv: Conv2d::new(&(&p / 0), cin, cout, 1, stride, Padding::Zero(0), false),
                bn: BatchNorm2d::new(&(&p / 1), cout),
            }
        });
        (Self { convs, downsample }, cout)
    }

    fn forward_t(&self, x: &Tensor, train: bool) -> Tensor {
        let last = self.convs.len() - 1;
        let mut y = x.shallow_clone();
        for (j, (conv, bn)) in self.convs.iter().enumerate() {
            y = bn.forward_t(&conv.forward(&y), train);
            if j != last {
                y = y.relu_();
            }
        }
        let identity = match &self.downsample {
            Some(d) => d.bn.forward_t(&d.conv.forward(x), train),
            None => x.shallow_clone(),
        };
        (y + identity).relu_()
    }
}

/// A ResNet encoder; `in_channels` is 3 for depth and 6 for pose (two stacked frames).
#[derive(Debug)]
pub struct ResnetEncoder {
    conv1: Conv2d,
    bn1: BatchNorm2d,
    layers: Vec<Vec<Block>>,
    depth: ResnetDepth,
}

impl ResnetEncoder {
    /// Registers the parameters under `path` (Monodepth2 checkpoints use `path` = `encoder`).
    pub fn new(path: &nn::Path, depth: ResnetDepth, in_channels: i64) -> Self {
        let conv1 = Conv2d::new(&(path / "conv1"), in_channels, 64, 7, 2, Padding::Zero(3), false);
        let bn1 = BatchNorm2d::new(&(path / "bn1"), 64);
        let mut cin = 64;
        let layers = depth
            .blocks_per_layer()
            .into_iter()
            .enumerate()
            .map(|(l, n)| {
                let lp = path / format!("layer{}", l + 1);
                let width = 64 << l;
                (0..n)
                    .map(|b| {
                        let stride = if b == 0 && l > 0 { 2 } else { 1 };
                        let (block, cout) = Block::new(&(&lp / b), depth, cin, width, stride);
                        cin = cout;
                        block
                    })
                    .collect()
            })
            .collect();
        Self { conv1, bn1, layers, depth }
    }

    /// Channels of the five features.
    pub fn channels(&self) -> [i64; 5] {
        self.depth.channels()
    }

    /// Features f0..f4 of a normalised input.
    pub fn forward_t(&self, x: &Tensor, train: bool) -> Vec<Tensor> {
        let mut features = Vec::with_capacity(5);
        let f0 = self.bn1.forward_t(&self.conv1.forward(x), train).relu_();
        let mut y = f0.max_pool2d([3, 3], [2, 2], [1, 1], [1, 1], false);
        features.push(f0);
        for layer in &self.layers {
            for block in layer {
                y = block.forward_t(&y, train);
            }
            features.push(y.shallow_clone());
        }
        features
    }
}
