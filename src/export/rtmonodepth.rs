//! The ONNX emitter of RT-MonoDepth-S and its light pose network: walks the same layer
//! structure as [`crate::model::rtmonodepth`] (encoder `conv1` + `convs.{i}.{0,2}`, decoder
//! `decoder.{0..7}.conv` + `decoder.{8+s}.conv3`, pose head `net.{0,1,2}`), each layer written
//! by [`super::layers::Emitter`] (which also gives the layer → ONNX mapping).

use super::ExportError;
use super::disp_output;
use super::graph::attr_int;
use super::layers::Emitter;
use crate::model::layers::Padding;
use crate::model::network::{DEPTH_GROUP, ENCODER_GROUP, POSE_ENCODER_GROUP, POSE_GROUP};
use crate::model::rtmonodepth::ENCODER_CHANNELS;

/// Slope of the encoder's leaky ReLUs (`RtEncoder`).
const LEAKY_SLOPE: f32 = 0.1;
/// Scale applied to the pose head's mean output (`LightPoseDecoder`).
const POSE_SCALE: f32 = 0.01;
/// Number of disparity scales of the RT-MonoDepth-S decoder.
pub const NUM_SCALES: usize = 3;

/// `RtEncoder::forward` under `prefix`: features f0..f3.
fn encoder(e: &mut Emitter<'_>, x: &str, prefix: &str) -> Result<Vec<String>, ExportError> {
    let conv1 = e.conv(x, &format!("{prefix}.conv1"), 2, Padding::Zero(3), false)?;
    let mut features = vec![e.unary("Relu", &conv1)];
    for i in 0..ENCODER_CHANNELS.len() - 1 {
        let prev = features[features.len() - 1].clone();
        let down = e.conv(&prev, &format!("{prefix}.convs.{i}.0"), 2, Padding::Zero(1), true)?;
        let down = e.leaky_relu(&down, LEAKY_SLOPE);
        let same = e.conv(&down, &format!("{prefix}.convs.{i}.2"), 1, Padding::Zero(1), true)?;
        features.push(e.leaky_relu(&same, LEAKY_SLOPE));
    }
    Ok(features)
}

/// `RtDecoder::forward` under `prefix`; returns the disparity outputs, scale 0 first, named
/// by [`disp_output`].
fn depth_decoder(
    e: &mut Emitter<'_>,
    features: &[String],
    prefix: &str,
) -> Result<Vec<String>, ExportError> {
    let outputs: Vec<String> = (0..NUM_SCALES).map(disp_output).collect();
    let mut x = features[3].clone();
    for (k, i) in [3usize, 2, 1, 0].into_iter().enumerate() {
        let first = format!("{prefix}.decoder.{}.conv", 2 * k);
        let second = format!("{prefix}.decoder.{}.conv", 2 * k + 1);
        x = e.up_stage(&x, &first, &second, None)?;
        if i < NUM_SCALES {
            let path = format!("{prefix}.decoder.{}.conv3", 8 + i);
            e.disparity_head(&x, &path, Padding::Zero(1), &outputs[i])?;
        }
    }
    Ok(outputs)
}

/// `LightPoseDecoder::forward` under `prefix`, writing `[B,3]` axis-angle and translation.
fn pose_head(
    e: &mut Emitter<'_>,
    last_feature: &str,
    prefix: &str,
    axis_angle: &str,
    translation: &str,
) -> Result<(), ExportError> {
    let x = e.conv(last_feature, &format!("{prefix}.net.0"), 1, Padding::Zero(0), true)?;
    let x = e.unary("Relu", &x);
    let x = e.conv(&x, &format!("{prefix}.net.1"), 1, Padding::Zero(1), true)?;
    let x = e.unary("Relu", &x);
    let x = e.conv(&x, &format!("{prefix}.net.2"), 1, Padding::Zero(0), true)?;
    let scaled = e.spatial_mean_scaled(&x, POSE_SCALE);
    let split = e.g.constant_i64(&[2], &[3, 3]);
    e.g.node_to("Split", &[&scaled, &split], vec![attr_int("axis", 1)], &[axis_angle, translation]);
    Ok(())
}

/// The depth network: encoder under `encoder.`, decoder under `depth.`; returns the
/// disparity outputs, scale 0 first.
pub fn emit_depth(e: &mut Emitter<'_>, normalised: &str) -> Result<Vec<String>, ExportError> {
    let features = encoder(e, normalised, ENCODER_GROUP)?;
    depth_decoder(e, &features, DEPTH_GROUP)
}

/// The light pose network: encoder (6 channels) under `pose_encoder.`, head under `pose.`.
pub fn emit_pose(
    e: &mut Emitter<'_>,
    normalised: &str,
    axis_angle: &str,
    translation: &str,
) -> Result<(), ExportError> {
    let features = encoder(e, normalised, POSE_ENCODER_GROUP)?;
    pose_head(e, &features[3], POSE_GROUP, axis_angle, translation)
}
