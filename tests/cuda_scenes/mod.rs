//! Loss scenes shared by the CUDA tests: random smooth scenes with hard cases (ties, out-of-image
//! warps) and real 7-Scenes kitchen frames with ground-truth depth and relative poses, plus
//! converters to the CPU reference's (`livedepth::loss`) and the twins' input types.
#![allow(dead_code)]

use livedepth::cuda::twin;
use livedepth::cuda::{Normalization, PackedFrame, PixelFormat, Resize};
use livedepth::loss::{LossConfig, LossInputs, Pose6};
use nalgebra::{Matrix3, Matrix4, Rotation3};
use std::path::Path;

/// Small deterministic generator (xorshift64*), uniform in [0, 1).
pub struct Rng(pub u64);
impl Rng {
    pub fn next(&mut self) -> f32 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        ((self.0.wrapping_mul(0x2545F4914F6CDD1D) >> 40) as f32) / (1u64 << 24) as f32
    }
    pub fn vec(&mut self, n: usize, lo: f32, hi: f32) -> Vec<f32> {
        (0..n).map(|_| lo + (hi - lo) * self.next()).collect()
    }
}

/// Everything one loss evaluation takes, owned.
#[derive(Clone)]
pub struct Scene {
    pub name: String,
    pub w: usize,
    pub h: usize,
    pub target: Vec<f32>,
    pub sources: Vec<Vec<f32>>,
    pub disparities: Vec<Vec<f32>>,
    pub pyramid: Vec<Vec<f32>>,
    pub poses: Vec<[f32; 6]>,
    pub invert: Vec<bool>,
    pub intrinsics: [f32; 4],
    pub noise: Vec<f32>,
}

impl Scene {
    pub fn sources(&self) -> Vec<&[f32]> {
        self.sources.iter().map(|v| v.as_slice()).collect()
    }
    pub fn disparities(&self) -> Vec<&[f32]> {
        self.disparities.iter().map(|v| v.as_slice()).collect()
    }
    pub fn pyramid(&self) -> Vec<&[f32]> {
        self.pyramid.iter().map(|v| v.as_slice()).collect()
    }
    pub fn reference_poses(&self) -> Vec<Pose6> {
        self.poses
            .iter()
            .zip(&self.invert)
            .map(|(p, &invert)| Pose6 {
                axis_angle: [p[0], p[1], p[2]],
                translation: [p[3], p[4], p[5]],
                invert,
            })
            .collect()
    }
}

/// Runs `f` with the loss inputs of `sc` (the CPU reference's and the twins' type).
pub fn with_loss_inputs<R>(sc: &Scene, f: impl FnOnce(&LossInputs) -> R) -> R {
    let (s, d, p, poses) = (sc.sources(), sc.disparities(), sc.pyramid(), sc.reference_poses());
    f(&LossInputs {
        width: sc.w,
        height: sc.h,
        target: &sc.target,
        sources: &s,
        disparities: &d,
        target_pyramid: &p,
        poses: &poses,
        intrinsics: sc.intrinsics,
        tie_break_noise: Some(&sc.noise),
    })
}

fn smooth_image(w: usize, h: usize, rng: &mut Rng) -> Vec<f32> {
    let k = rng.vec(12, 0.0, 1.0);
    let mut out = vec![0.0; 3 * w * h];
    for c in 0..3 {
        for y in 0..h {
            for x in 0..w {
                let (xf, yf) = (x as f32 / w as f32, y as f32 / h as f32);
                let k = &k[c * 4..c * 4 + 4];
                out[c * w * h + y * w + x] = 0.5
                    + 0.25 * (9.0 * xf + 5.0 * k[0] + 4.0 * yf * k[1]).sin()
                    + 0.2 * (7.0 * yf + 6.0 * k[2] + 3.0 * xf * k[3]).cos();
            }
        }
    }
    out
}

/// The target pyramid by 2x2 area averaging (what `livedepth::loss::target_pyramid` does).
pub fn pyramid(target: &[f32], w: usize, h: usize, scales: usize) -> Vec<Vec<f32>> {
    livedepth::loss::target_pyramid(target, w, h, scales)
}

/// A random smooth scene; `translation` scales the pose translations (large values warp many
/// pixels out of the image).
pub fn random_scene(
    w: usize,
    h: usize,
    scales: usize,
    n: usize,
    seed: u64,
    translation: f32,
) -> Scene {
    let mut rng = Rng(seed);
    let target = smooth_image(w, h, &mut rng);
    let sources = (0..n).map(|_| smooth_image(w, h, &mut rng)).collect();
    let disparities = (0..scales).map(|s| rng.vec((w >> s) * (h >> s), 0.02, 0.4)).collect();
    let poses = (0..n)
        .map(|_| {
            let r = rng.vec(6, -1.0, 1.0);
            [
                0.03 * r[0],
                0.03 * r[1],
                0.03 * r[2],
                translation * r[3],
                translation * r[4],
                0.5 * translation * r[5],
            ]
        })
        .collect();
    Scene {
        name: format!("random {w}x{h} seed {seed}"),
        w,
        h,
        pyramid: pyramid(&target, w, h, scales),
        target,
        sources,
        disparities,
        poses,
        invert: (0..n).map(|i| i % 2 == 0).collect(),
        intrinsics: [0.58 * w as f32, 1.92 * h as f32, 0.5 * w as f32, 0.5 * h as f32],
        noise: rng.vec(n * w * h, -1e-5, 1e-5),
    }
}

/// A static scene: every source is the target, so identity errors tie with exact warps and the
/// explicit noise decides.
pub fn static_scene(w: usize, h: usize, scales: usize, seed: u64) -> Scene {
    let mut sc = random_scene(w, h, scales, 2, seed, 0.0);
    sc.sources = vec![sc.target.clone(), sc.target.clone()];
    sc.poses = vec![[0.0; 6]; 2];
    sc.name = format!("static {w}x{h}");
    sc
}

fn load_rgb(path: &Path, w: usize, h: usize) -> Option<Vec<f32>> {
    let img = image::open(path).ok()?.to_rgb8();
    let (iw, ih) = (img.width() as usize, img.height() as usize);
    let frame = PackedFrame {
        data: img.as_raw(),
        width: iw,
        height: ih,
        pitch: iw * 3,
        format: PixelFormat::Rgb,
    };
    let mut out = vec![0.0; 3 * w * h];
    twin::preprocess(&frame, w, h, Resize::Area, &Normalization::default(), &mut out).ok()?;
    Some(out)
}

fn load_pose(path: &Path) -> Option<Matrix4<f64>> {
    let text = std::fs::read_to_string(path).ok()?;
    let v: Vec<f64> = text.split_whitespace().filter_map(|t| t.parse().ok()).collect();
    (v.len() == 16).then(|| Matrix4::from_row_slice(&v))
}

/// Disparity (inverse of the loss's depth mapping) at (w >> s) x (h >> s) from the 16-bit depth
/// PNG in millimetres (0 = invalid, filled with the mean valid depth).
fn load_disparity(path: &Path, w: usize, h: usize, config: &LossConfig) -> Option<Vec<f32>> {
    let img = image::open(path).ok()?.to_luma16();
    let (iw, ih) = (img.width() as usize, img.height() as usize);
    let valid: Vec<f64> =
        img.as_raw().iter().filter(|&&d| d > 0).map(|&d| d as f64 / 1000.0).collect();
    let fill = valid.iter().sum::<f64>() / valid.len().max(1) as f64;
    let (min_disp, max_disp) = (1.0 / config.max_depth as f64, 1.0 / config.min_depth as f64);
    let mut out = vec![0.0; w * h];
    for y in 0..h {
        for x in 0..w {
            let sx = ((x as f64 + 0.5) * iw as f64 / w as f64) as usize;
            let sy = ((y as f64 + 0.5) * ih as f64 / h as f64) as usize;
            let d = img.get_pixel(sx.min(iw - 1) as u32, sy.min(ih - 1) as u32)[0];
            let depth = if d > 0 { d as f64 / 1000.0 } else { fill };
            out[y * w + x] = ((1.0 / depth - min_disp) / (max_disp - min_disp)) as f32;
        }
    }
    Some(out)
}

/// Kitchen frame `target` with sources `target - step` (inverted, as Monodepth2's frame -1) and
/// `target + step`, at w x h, disparities from ground-truth depth, poses from ground truth.
pub fn kitchen_scene(
    dir: &Path,
    target: usize,
    step: usize,
    w: usize,
    h: usize,
    scales: usize,
    config: &LossConfig,
) -> Option<Scene> {
    let frame = |i: usize, kind: &str| dir.join(format!("frame-{i:06}.{kind}"));
    let tgt = load_rgb(&frame(target, "color.jpg"), w, h)?;
    let pose_t = load_pose(&frame(target, "pose.txt"))?;
    let mut sources = Vec::new();
    let mut poses = Vec::new();
    let mut invert = Vec::new();
    for (src, inv) in [(target - step, true), (target + step, false)] {
        sources.push(load_rgb(&frame(src, "color.jpg"), w, h)?);
        let pose_s = load_pose(&frame(src, "pose.txt"))?;
        // Target camera -> source camera; with `invert` the pose is given the other way round.
        let rel = pose_s.try_inverse()? * pose_t;
        let rel = if inv { rel.try_inverse()? } else { rel };
        let r: Matrix3<f64> = rel.fixed_view::<3, 3>(0, 0).into_owned();
        let aa = Rotation3::from_matrix(&r).scaled_axis();
        poses.push([
            aa[0] as f32,
            aa[1] as f32,
            aa[2] as f32,
            rel[(0, 3)] as f32,
            rel[(1, 3)] as f32,
            rel[(2, 3)] as f32,
        ]);
        invert.push(inv);
    }
    let full = load_disparity(&frame(target, "depth.png"), w, h, config)?;
    let mut disparities = vec![full];
    for s in 1..scales {
        disparities.push(load_disparity(&frame(target, "depth.png"), w >> s, h >> s, config)?);
    }
    let (sx, sy) = (w as f32 / 640.0, h as f32 / 480.0);
    let mut rng = Rng(target as u64 + 1);
    Some(Scene {
        name: format!("kitchen frame {target} at {w}x{h}"),
        w,
        h,
        pyramid: pyramid(&tgt, w, h, scales),
        target: tgt,
        sources,
        disparities,
        poses,
        invert,
        intrinsics: [585.0 * sx, 585.0 * sy, (320.0 + 0.5) * sx - 0.5, (240.0 + 0.5) * sy - 0.5],
        noise: rng.vec(2 * w * h, -1e-5, 1e-5),
    })
}

/// Largest |a - b| relative to the largest |b| (0 for empty slices).
pub fn max_rel_diff(a: &[f32], b: &[f32]) -> f64 {
    // Zipping would pass an empty or a short output; a missing element is a failure.
    assert_eq!(a.len(), b.len(), "compared outputs differ in length");
    assert!(!a.is_empty(), "compared outputs are empty");
    let scale = b.iter().fold(0.0f64, |m, v| m.max(v.abs() as f64)).max(1e-30);
    a.iter().zip(b).fold(0.0f64, |m, (x, y)| m.max((*x as f64 - *y as f64).abs())) / scale
}
