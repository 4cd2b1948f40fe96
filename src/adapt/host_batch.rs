//! The host side of a batched self-supervised step, shared by the online [`super::Adapter`] and
//! offline training (`crate::train`): the depth and pose outputs of a batch of B triplets copied
//! to the host and sliced per sample for the CPU loss, the per-sample loss gradients gathered back
//! into batch-shaped buffers, and the surrogate whose libtorch gradient is that loss gradient.
//!
//! Layout conventions (both callers build their batches this way): disparity scale s is
//! `[B, 1, H >> s, W >> s]`; the pose network runs on `[prev, target]` pairs (rows `0..B`, inverted
//! as Monodepth2 does for the earlier frame) then `[target, next]` pairs (rows `B..2B`), each row
//! an axis-angle `[3]` and a translation `[3]`.

use crate::loss::{LossOutputs, Pose6};
use tch::{Device, Kind, TchError, Tensor};

/// A tensor copied to the host as contiguous float32.
pub fn tensor_to_host(t: &Tensor) -> Result<Vec<f32>, TchError> {
    let t = t.f_detach()?.f_to_device(Device::Cpu)?.f_to_kind(Kind::Float)?.f_contiguous()?;
    let n = t.numel();
    let mut out = vec![0f32; n];
    t.f_copy_data(&mut out, n)?;
    Ok(out)
}

/// Equal-sized planar images (`channels` x `h` x `w` each) stacked into one `[B, C, H, W]`
/// tensor on `device`.
pub fn stack_planar(
    images: &[&[f32]],
    channels: i64,
    w: usize,
    h: usize,
    device: Device,
) -> Result<Tensor, TchError> {
    let mut host = Vec::with_capacity(images.iter().map(|i| i.len()).sum());
    for image in images {
        host.extend_from_slice(image);
    }
    Tensor::f_from_slice(&host)?
        .f_reshape([images.len() as i64, channels, h as i64, w as i64])?
        .f_to_device(device)
}

/// The network outputs of one batch, on the host.
pub struct HostOutputs {
    /// Per scale, the whole batch (`B · (H >> s) · (W >> s)` values).
    pub disparities: Vec<Vec<f32>>,
    /// `[2B, 3]` axis-angles.
    pub rotations: Vec<f32>,
    /// `[2B, 3]` translations.
    pub translations: Vec<f32>,
    batch: usize,
    width: usize,
    height: usize,
}

impl HostOutputs {
    /// Copies the disparities of every scale and the pose outputs of a `batch`-triplet step at
    /// the full resolution `width` x `height`.
    pub fn copy(
        disparities: &[Tensor],
        rotations: &Tensor,
        translations: &Tensor,
        batch: usize,
        width: usize,
        height: usize,
    ) -> Result<Self, TchError> {
        Ok(Self {
            disparities: disparities.iter().map(tensor_to_host).collect::<Result<_, _>>()?,
            rotations: tensor_to_host(rotations)?,
            translations: tensor_to_host(translations)?,
            batch,
            width,
            height,
        })
    }

    /// Sample `i`'s disparity at every scale.
    pub fn sample_disparities(&self, i: usize) -> Vec<&[f32]> {
        self.disparities
            .iter()
            .enumerate()
            .map(|(s, d)| {
                let n = (self.width >> s) * (self.height >> s);
                &d[i * n..(i + 1) * n]
            })
            .collect()
    }

    /// Sample `i`'s two poses: to the previous frame (inverted) and to the next frame.
    pub fn sample_poses(&self, i: usize) -> [Pose6; 2] {
        triplet_pose_rows(&self.rotations, &self.translations, i, self.batch + i)
    }
}

/// The two poses of one triplet from the pose network's rows (axis-angle and translation, 3
/// values per row): `prev_row` is the (prev, target) pair, inverted to map target → prev, and
/// `next_row` the (target, next) pair.
pub fn triplet_pose_rows(
    rotations: &[f32],
    translations: &[f32],
    prev_row: usize,
    next_row: usize,
) -> [Pose6; 2] {
    let pose_of = |row: usize, invert: bool| Pose6 {
        axis_angle: std::array::from_fn(|c| rotations[3 * row + c]),
        translation: std::array::from_fn(|c| translations[3 * row + c]),
        invert,
    };
    [pose_of(prev_row, true), pose_of(next_row, false)]
}

/// d loss / d output for a whole batch, in the layout of [`HostOutputs`].
pub struct HostGradients {
    pub disparities: Vec<Vec<f32>>,
    pub rotations: Vec<f32>,
    pub translations: Vec<f32>,
    batch: usize,
}

impl HostGradients {
    /// Zero gradients shaped like `outputs`.
    pub fn zeros_like(outputs: &HostOutputs) -> Self {
        Self {
            disparities: outputs.disparities.iter().map(|d| vec![0f32; d.len()]).collect(),
            rotations: vec![0f32; outputs.rotations.len()],
            translations: vec![0f32; outputs.translations.len()],
            batch: outputs.batch,
        }
    }

    /// Stores sample `i`'s loss gradients scaled by `weight` (1 / B for a batch mean).
    pub fn set_sample(&mut self, i: usize, out: &LossOutputs, weight: f32) {
        for (s, g) in out.grad_disparities.iter().enumerate() {
            let n = g.len();
            for (dst, src) in self.disparities[s][i * n..(i + 1) * n].iter_mut().zip(g) {
                *dst = src * weight;
            }
        }
        for (k, row) in [i, self.batch + i].into_iter().enumerate() {
            let g = out.grad_poses[k];
            for c in 0..3 {
                self.rotations[3 * row + c] = g[c] * weight;
                self.translations[3 * row + c] = g[3 + c] * weight;
            }
        }
    }

    /// Replaces sample `i`'s pose gradients by those of an L2 pull of the network's poses
    /// toward `targets` (the refined poses), translations measured in units of `depth_scale`,
    /// scaled by `weight`.
    pub fn set_pose_targets(
        &mut self,
        i: usize,
        network: &[Pose6; 2],
        targets: &[Pose6; 2],
        depth_scale: f32,
        weight: f32,
    ) {
        let inv_depth = if depth_scale > 0.0 { 1.0 / depth_scale } else { 1.0 };
        for (k, row) in [i, self.batch + i].into_iter().enumerate() {
            for c in 0..3 {
                self.rotations[3 * row + c] =
                    (network[k].axis_angle[c] - targets[k].axis_angle[c]) * weight;
                self.translations[3 * row + c] = (network[k].translation[c]
                    - targets[k].translation[c])
                    * inv_depth
                    * inv_depth
                    * weight;
            }
        }
    }

    /// Whether every gradient is finite.
    pub fn all_finite(&self) -> bool {
        self.disparities
            .iter()
            .flatten()
            .chain(&self.rotations)
            .chain(&self.translations)
            .all(|v| v.is_finite())
    }

    /// `Σ output · gradient` (gradients constant): backpropagating it deposits exactly these
    /// gradients into the networks that produced the outputs.
    pub fn surrogate(
        &self,
        disparities: &[Tensor],
        rotations: &Tensor,
        translations: &Tensor,
    ) -> Result<Tensor, TchError> {
        let device = rotations.device();
        let mut surrogate = Tensor::f_zeros([], (Kind::Float, device))?;
        let pairs = disparities
            .iter()
            .zip(&self.disparities)
            .chain([(rotations, &self.rotations), (translations, &self.translations)]);
        for (output, g) in pairs {
            let g = Tensor::f_from_slice(g)?.f_reshape(output.size())?.f_to_device(device)?;
            surrogate += (output * g).f_sum(Kind::Float)?;
        }
        Ok(surrogate)
    }
}
