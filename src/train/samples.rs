//! Training samples: frames loaded from a dataset at the network size with whatever ground
//! truth they carry (depth reduced by nearest valid sample, camera poses), and their seeded
//! preparation for one step (horizontal flip, colour jitter, relative motion from the poses).

use super::{Augmentation, DatasetUsage, TrainError};
use crate::adapt::NetFrame;
use crate::engine::Preprocessor;
use crate::source::dataset::open_dataset;
use nalgebra::Isometry3;
use rand::RngExt;
use rand_pcg::Pcg64Mcg;

/// A frame at the network size with what ground truth it has.
pub(super) struct Sample {
    pub(super) frame: NetFrame,
    /// Depth in metres at the network size (0 invalid).
    pub(super) depth: Option<Vec<f32>>,
    pub(super) pose: Option<Isometry3<f64>>,
}

/// (clip, previous, target, next) indices.
pub(super) type TripletIndex = (usize, usize, usize, usize);

/// Depth `src` reduced to `w` x `h` by keeping, per output pixel, the nearest valid sample
/// falling inside it (the minimum depth), so sparse LiDAR points and occlusion edges survive.
pub(super) fn scatter_min_depth(src: &crate::frame::DepthMap, w: usize, h: usize) -> Vec<f32> {
    let mut out = vec![0f32; w * h];
    let (sw, sh) = (src.width as usize, src.height as usize);
    if sw == 0 || sh == 0 || src.data.len() != sw * sh {
        return out;
    }
    for y in 0..sh {
        let ty = (y * h / sh).min(h - 1);
        for x in 0..sw {
            let d = src.data[y * sw + x];
            if !(d.is_finite() && d > 0.0) {
                continue;
            }
            let o = &mut out[ty * w + (x * w / sw).min(w - 1)];
            if *o == 0.0 || d < *o {
                *o = d;
            }
        }
    }
    out
}

pub(super) fn load_clip(
    spec: &str,
    width: u32,
    height: u32,
    gap: usize,
) -> Result<(Vec<Sample>, DatasetUsage), TrainError> {
    let wrap = |source| TrainError::Dataset { spec: spec.to_string(), source };
    let dataset = open_dataset(spec).map_err(wrap)?;
    let mut pre = Preprocessor::unit_rgb(width, height)
        .map_err(|e| TrainError::Data { spec: spec.to_string(), reason: e.to_string() })?;
    let mut samples = Vec::with_capacity(dataset.len());
    for i in 0..dataset.len() {
        let frame = dataset.frame(i).map_err(wrap)?;
        let camera = frame.intrinsics.ok_or_else(|| TrainError::Data {
            spec: spec.to_string(),
            reason: format!("frame {i} has no intrinsics; training needs the camera matrix"),
        })?;
        let resized = pre.resize(&frame.rgb).map_err(|e| TrainError::Data {
            spec: spec.to_string(),
            reason: format!("frame {i}: {e}"),
        })?;
        let net = NetFrame::from_resized(i as u64, resized, &camera);
        let depth =
            frame.gt_depth.as_ref().map(|d| scatter_min_depth(d, width as usize, height as usize));
        let pose = frame.gt_pose.filter(|p| {
            p.translation.vector.iter().all(|v| v.is_finite())
                && p.rotation.coords.iter().all(|v| v.is_finite())
        });
        samples.push(Sample { frame: net, depth, pose });
    }
    let triplets = samples.len().saturating_sub(2 * gap);
    if triplets == 0 {
        return Err(TrainError::Data {
            spec: spec.to_string(),
            reason: format!(
                "{} frames make no triplet with frame gap {gap} (need at least {})",
                samples.len(),
                2 * gap + 1
            ),
        });
    }
    let usage = DatasetUsage {
        spec: spec.to_string(),
        frames: samples.len(),
        triplets,
        with_depth: samples.iter().all(|s| s.depth.is_some()),
        with_pose: samples.iter().all(|s| s.pose.is_some()),
    };
    Ok((samples, usage))
}

/// A triplet after augmentation, planar RGB in [0, 1].
pub(super) struct Prepared {
    /// Un-jittered (possibly flipped) prev, target, next: what the photometric loss compares.
    pub(super) clean: [Vec<f32>; 3],
    /// Jittered: what the networks see.
    pub(super) jittered: [Vec<f32>; 3],
    pub(super) depth: Option<Vec<f32>>,
    /// Ground-truth (axis-angle, translation) of the pairs (prev→target) and (target→next).
    pub(super) poses: Option<[([f32; 3], [f32; 3]); 2]>,
    pub(super) intrinsics: [f32; 4],
}

pub(super) fn flip_planar(src: &[f32], w: usize, out: &mut Vec<f32>) {
    out.clear();
    out.extend(src.chunks_exact(w).flat_map(|row| row.iter().rev().copied()));
}

#[derive(Clone, Copy)]
pub(super) struct Jitter {
    pub(super) brightness: f32,
    pub(super) contrast: f32,
    pub(super) saturation: f32,
    pub(super) gains: [f32; 3],
}

impl Jitter {
    pub(super) fn draw(rng: &mut Pcg64Mcg, j: f32) -> Self {
        let mut f = |s: f32| 1.0 + s * (2.0 * rng.random::<f32>() - 1.0);
        Self {
            brightness: f(j),
            contrast: f(j),
            saturation: f(j),
            gains: [f(j / 4.0), f(j / 4.0), f(j / 4.0)],
        }
    }

    pub(super) fn apply(&self, planar: &mut [f32]) {
        let hw = planar.len() / 3;
        let (r, rest) = planar.split_at_mut(hw);
        let (g, b) = rest.split_at_mut(hw);
        let mean =
            r.iter().zip(g.iter()).zip(b.iter()).map(|((r, g), b)| grey(*r, *g, *b)).sum::<f32>()
                / hw.max(1) as f32;
        let mean = mean * self.brightness;
        for ((r, g), b) in r.iter_mut().zip(g.iter_mut()).zip(b.iter_mut()) {
            let mut px = [*r, *g, *b];
            for (v, gain) in px.iter_mut().zip(self.gains) {
                *v *= self.brightness * gain;
            }
            let l = grey(px[0], px[1], px[2]);
            for v in &mut px {
                *v = l + (*v - l) * self.saturation;
                *v = mean + (*v - mean) * self.contrast;
            }
            *r = px[0].clamp(0.0, 1.0);
            *g = px[1].clamp(0.0, 1.0);
            *b = px[2].clamp(0.0, 1.0);
        }
    }
}

pub(super) fn grey(r: f32, g: f32, b: f32) -> f32 {
    0.299 * r + 0.587 * g + 0.114 * b
}

/// Ground-truth motion T_{a→b} (points in camera a to camera b) as (axis-angle, translation).
pub(super) fn relative_motion(a: &Isometry3<f64>, b: &Isometry3<f64>) -> ([f32; 3], [f32; 3]) {
    let rel = b.inverse() * a;
    let w = rel.rotation.scaled_axis();
    let t = rel.translation.vector;
    ([w.x as f32, w.y as f32, w.z as f32], [t.x as f32, t.y as f32, t.z as f32])
}

pub(super) fn prepare(
    clips: &[Vec<Sample>],
    index: TripletIndex,
    augmentation: &Augmentation,
    rng: &mut Pcg64Mcg,
) -> Prepared {
    let (c, p, t, n) = index;
    let clip = &clips[c];
    let target = &clip[t];
    let w = target.frame.width;
    let flip = rng.random::<f64>() < augmentation.flip_probability;
    let jitter = Jitter::draw(rng, augmentation.jitter);
    let frames = [&clip[p], target, &clip[n]];
    let clean: [Vec<f32>; 3] = frames.map(|s| {
        if flip {
            let mut out = Vec::with_capacity(s.frame.planar.len());
            flip_planar(&s.frame.planar, w, &mut out);
            out
        } else {
            s.frame.planar.to_vec()
        }
    });
    let jittered = clean.clone().map(|mut v| {
        if augmentation.jitter > 0.0 {
            jitter.apply(&mut v);
        }
        v
    });
    let depth = target.depth.as_ref().map(|d| {
        if flip {
            let mut out = Vec::with_capacity(d.len());
            flip_planar(d, w, &mut out);
            out
        } else {
            d.clone()
        }
    });
    let poses = match (frames[0].pose, frames[1].pose, frames[2].pose) {
        (Some(a), Some(b), Some(c)) => {
            let mirror = |(r, t): ([f32; 3], [f32; 3])| {
                if flip { ([r[0], -r[1], -r[2]], [-t[0], t[1], t[2]]) } else { (r, t) }
            };
            Some([mirror(relative_motion(&a, &b)), mirror(relative_motion(&b, &c))])
        }
        _ => None,
    };
    let mut intrinsics = target.frame.intrinsics;
    if flip {
        intrinsics[2] = (w as f32 - 1.0) - intrinsics[2];
    }
    Prepared { clean, jittered, depth, poses, intrinsics }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scatter_min_keeps_nearest_valid_sample() {
        let src = crate::frame::DepthMap::from_data(
            4,
            2,
            vec![5.0, 3.0, 0.0, 0.0, 4.0, 0.0, 0.0, f32::NAN],
        );
        assert_eq!(scatter_min_depth(&src, 2, 1), vec![3.0, 0.0]);
    }

    #[test]
    fn relative_motion_of_a_forward_step() {
        let a = Isometry3::translation(0.0, 0.0, 0.0);
        let b = Isometry3::translation(0.0, 0.0, 1.0);
        // A point 5 m ahead of camera a is 4 m ahead of camera b.
        let (r, t) = relative_motion(&a, &b);
        assert!(r.iter().all(|v| v.abs() < 1e-6));
        assert_eq!(t, [0.0, 0.0, -1.0]);
    }

    #[test]
    fn flip_reverses_rows() {
        let mut out = Vec::new();
        flip_planar(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0], 3, &mut out);
        assert_eq!(out, vec![3.0, 2.0, 1.0, 6.0, 5.0, 4.0]);
    }
}
