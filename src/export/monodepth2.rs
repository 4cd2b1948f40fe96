//! The ONNX emitter of the Monodepth2 networks: the ResNet-18 / ResNet-50 encoder of
//! [`crate::model::resnet`] with the depth decoder of [`crate::model::monodepth2`], and the
//! pose network (ResNet-18 over the 6-channel frame pair + pose decoder). It walks the same
//! layer structure as the libtorch forward passes, in the same order, each layer written by
//! [`super::layers::Emitter`] (which gives the layer → ONNX mapping); batch normalisation is
//! in eval mode, with the running statistics.
//!
//! Parameter paths (under the group prefix, e.g. `encoder.` for the depth encoder):
//! - encoder: `encoder.conv1`, `encoder.bn1`, `encoder.layer{1..4}.{b}.{conv,bn}{1,2[,3]}`,
//!   `encoder.layer{k}.{0}.downsample.{0,1}` (torchvision's layout);
//! - depth decoder: `decoder.{2n,2n+1}.conv.conv` (the two 3×3 convs of level `4 − n`),
//!   `decoder.{10+s}.conv` (the disparity conv of scale `s`);
//! - pose decoder: `net.{0..3}`.

use super::ExportError;
use super::disp_output;
use super::layers::Emitter;
use crate::model::layers::Padding;
use crate::model::network::{DEPTH_GROUP, ENCODER_GROUP, POSE_ENCODER_GROUP, POSE_GROUP};
use crate::model::resnet::ResnetDepth;

/// Number of disparity scales of the Monodepth2 depth decoder.
pub const NUM_SCALES: usize = 4;
/// Scale applied to the pose decoder's mean output (`PoseDecoder::forward`).
const POSE_SCALE: f32 = 0.01;

/// Residual blocks per ResNet layer (`ResnetDepth::blocks_per_layer`; a drift shows up as a
/// missing or unused parameter).
fn blocks_per_layer(depth: ResnetDepth) -> [usize; 4] {
    match depth {
        ResnetDepth::R18 => [2, 2, 2, 2],
        ResnetDepth::R50 => [3, 4, 6, 3],
    }
}

/// Per convolution of a block: (kernel, stride) — a basic block's two 3×3 convs, or a
/// bottleneck's 1×1, 3×3 (strided), 1×1 (`resnet::Block::new`).
fn block_convs(depth: ResnetDepth, stride: i64) -> Vec<(i64, i64)> {
    match depth {
        ResnetDepth::R18 => vec![(3, stride), (3, 1)],
        ResnetDepth::R50 => vec![(1, 1), (3, stride), (1, 1)],
    }
}

/// Output channels of a block of `width` (`width`, or `4 × width` for a bottleneck).
fn block_out_channels(depth: ResnetDepth, width: i64) -> i64 {
    match depth {
        ResnetDepth::R18 => width,
        ResnetDepth::R50 => width * 4,
    }
}

/// A residual block under `path` (`resnet::Block::forward_t` in eval mode): conv → BN (→ ReLU
/// but after the last), plus the identity or the downsampled input, then ReLU.
fn block(
    e: &mut Emitter<'_>,
    x: &str,
    path: &str,
    depth: ResnetDepth,
    stride: i64,
    downsample: bool,
) -> Result<String, ExportError> {
    let convs = block_convs(depth, stride);
    let last = convs.len() - 1;
    let mut y = x.to_owned();
    for (j, (kernel, s)) in convs.into_iter().enumerate() {
        let c =
            e.conv(&y, &format!("{path}.conv{}", j + 1), s, Padding::Zero(kernel / 2), false)?;
        y = e.batch_norm(&c, &format!("{path}.bn{}", j + 1))?;
        if j != last {
            y = e.unary("Relu", &y);
        }
    }
    let identity = if downsample {
        let c = e.conv(x, &format!("{path}.downsample.0"), stride, Padding::Zero(0), false)?;
        e.batch_norm(&c, &format!("{path}.downsample.1"))?
    } else {
        x.to_owned()
    };
    let sum = e.add(&y, &identity);
    Ok(e.unary("Relu", &sum))
}

/// `ResnetEncoder::forward_t` (eval mode) under `prefix`: features f0..f4 (f0 =
/// relu(bn1(conv1 x)), then layer1..layer4 after the 3×3 stride-2 max-pool).
fn encoder(
    e: &mut Emitter<'_>,
    x: &str,
    prefix: &str,
    depth: ResnetDepth,
) -> Result<Vec<String>, ExportError> {
    let conv1 = e.conv(x, &format!("{prefix}.conv1"), 2, Padding::Zero(3), false)?;
    let bn1 = e.batch_norm(&conv1, &format!("{prefix}.bn1"))?;
    let f0 = e.unary("Relu", &bn1);
    let mut y = e.max_pool(&f0, 3, 2, 1);
    let mut features = vec![f0];
    let mut cin = 64;
    for (l, blocks) in blocks_per_layer(depth).into_iter().enumerate() {
        let width = 64i64 << l;
        let cout = block_out_channels(depth, width);
        for b in 0..blocks {
            let stride = if b == 0 && l > 0 { 2 } else { 1 };
            let downsample = stride != 1 || cin != cout;
            let path = format!("{prefix}.layer{}.{b}", l + 1);
            y = block(e, &y, &path, depth, stride, downsample)?;
            cin = cout;
        }
        features.push(y.clone());
    }
    Ok(features)
}

/// `monodepth2::DepthDecoder::forward` under `prefix`; returns the disparity outputs, scale 0
/// first, named by [`disp_output`].
fn depth_decoder(
    e: &mut Emitter<'_>,
    features: &[String],
    prefix: &str,
) -> Result<Vec<String>, ExportError> {
    let outputs: Vec<String> = (0..NUM_SCALES).map(disp_output).collect();
    let mut x = features[4].clone();
    for (n, i) in (0..5usize).rev().enumerate() {
        let first = format!("{prefix}.decoder.{}.conv.conv", 2 * n);
        let second = format!("{prefix}.decoder.{}.conv.conv", 2 * n + 1);
        let skip = i.checked_sub(1).map(|j| features[j].as_str());
        x = e.up_stage(&x, &first, &second, skip)?;
        if i < NUM_SCALES {
            let path = format!("{prefix}.decoder.{}.conv", 10 + i);
            e.disparity_head(&x, &path, Padding::Reflect(1), &outputs[i])?;
        }
    }
    Ok(outputs)
}

/// `monodepth2::PoseDecoder::forward` under `prefix`: squeeze 1×1, two 3×3, 1×1 to 12
/// numbers (each with ReLU but the last), mean over the image × 0.01; numbers 0–2 are written
/// to `axis_angle`, 3–5 to `translation` (the rest, the second frame pair's, are unused).
fn pose_decoder(
    e: &mut Emitter<'_>,
    last_feature: &str,
    prefix: &str,
    axis_angle: &str,
    translation: &str,
) -> Result<(), ExportError> {
    let mut x = last_feature.to_owned();
    for (k, (pad, relu)) in [(0, true), (1, true), (1, true), (0, false)].into_iter().enumerate() {
        x = e.conv(&x, &format!("{prefix}.net.{k}"), 1, Padding::Zero(pad), true)?;
        if relu {
            x = e.unary("Relu", &x);
        }
    }
    let scaled = e.spatial_mean_scaled(&x, POSE_SCALE);
    e.channels_to(&scaled, 0, 3, axis_angle);
    e.channels_to(&scaled, 3, 6, translation);
    Ok(())
}

/// The Monodepth2 depth network of `depth`: encoder under `encoder.encoder.`, decoder under
/// `depth.`; returns the disparity outputs, scale 0 first.
pub fn emit_depth(
    e: &mut Emitter<'_>,
    normalised: &str,
    depth: ResnetDepth,
) -> Result<Vec<String>, ExportError> {
    let features = encoder(e, normalised, &format!("{ENCODER_GROUP}.encoder"), depth)?;
    depth_decoder(e, &features, DEPTH_GROUP)
}

/// The Monodepth2 pose network: ResNet-18 (6 channels) under `pose_encoder.encoder.`, pose
/// decoder under `pose.`.
pub fn emit_pose(
    e: &mut Emitter<'_>,
    normalised: &str,
    axis_angle: &str,
    translation: &str,
) -> Result<(), ExportError> {
    let prefix = format!("{POSE_ENCODER_GROUP}.encoder");
    let features = encoder(e, normalised, &prefix, ResnetDepth::R18)?;
    pose_decoder(e, &features[4], POSE_GROUP, axis_angle, translation)
}
