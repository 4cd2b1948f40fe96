//! The CPU twins of the CUDA kernels against the straightforward definitions of what they
//! compute: resampling formulas, adjoint identities, finite differences of the fused loss, ties
//! and the automask, out-of-image warps and input validation. No GPU needed.

use livedepth::cuda::CudaError;
use livedepth::cuda::twin;
use livedepth::cuda::{Normalization, PackedFrame, PixelFormat, Resize};
use livedepth::loss::{LossConfig, LossInputs, LossOutputs, Pose6};

/// Small deterministic generator (xorshift64*), uniform in [0, 1).
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> f32 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        ((self.0.wrapping_mul(0x2545F4914F6CDD1D) >> 40) as f32) / (1u64 << 24) as f32
    }
    fn vec(&mut self, n: usize, lo: f32, hi: f32) -> Vec<f32> {
        (0..n).map(|_| lo + (hi - lo) * self.next()).collect()
    }
}

/// PyTorch's bilinear (align_corners=false) definition in f64.
fn reference_upsample(lo: &[f32], lw: usize, lh: usize, hw: usize, hh: usize) -> Vec<f64> {
    let coord = |o: usize, inn: usize, out: usize| {
        let src = ((o as f64 + 0.5) * inn as f64 / out as f64 - 0.5).max(0.0);
        let i0 = (src.floor() as usize).min(inn - 1);
        let i1 = (i0 + 1).min(inn - 1);
        (i0, i1, src - i0 as f64)
    };
    let mut out = vec![0.0; hw * hh];
    for y in 0..hh {
        let (y0, y1, ly) = coord(y, lh, hh);
        for x in 0..hw {
            let (x0, x1, lx) = coord(x, lw, hw);
            let v = |yy: usize, xx: usize| lo[yy * lw + xx] as f64;
            out[y * hw + x] = (1.0 - ly) * ((1.0 - lx) * v(y0, x0) + lx * v(y0, x1))
                + ly * ((1.0 - lx) * v(y1, x0) + lx * v(y1, x1));
        }
    }
    out
}

#[test]
fn upsample_matches_the_bilinear_definition() {
    let mut rng = Rng(7);
    for &(lw, lh, hw, hh) in &[(8, 4, 32, 16), (7, 5, 28, 20), (5, 3, 13, 7), (16, 8, 16, 8)] {
        let lo = rng.vec(lw * lh * 2, -1.0, 1.0);
        let mut hi = vec![0.0; hw * hh * 2];
        twin::upsample_bilinear(&lo, (lw, lh), &mut hi, (hw, hh), 2).expect("upsample");
        for p in 0..2 {
            let reference = reference_upsample(&lo[p * lw * lh..(p + 1) * lw * lh], lw, lh, hw, hh);
            for (a, b) in hi[p * hw * hh..(p + 1) * hw * hh].iter().zip(&reference) {
                assert!((*a as f64 - b).abs() < 1e-5, "{lw}x{lh}->{hw}x{hh}: {a} vs {b}");
            }
        }
    }
}

#[test]
fn upsample_adjoint_is_the_transpose() {
    let mut rng = Rng(11);
    for &(lw, lh, hw, hh) in &[(8, 4, 64, 32), (7, 5, 28, 20), (5, 3, 13, 7), (10, 6, 10, 6)] {
        let x = rng.vec(lw * lh, -1.0, 1.0);
        let y = rng.vec(hw * hh, -1.0, 1.0);
        let mut ux = vec![0.0; hw * hh];
        twin::upsample_bilinear(&x, (lw, lh), &mut ux, (hw, hh), 1).expect("upsample");
        let mut uty = vec![0.0; lw * lh];
        twin::upsample_bilinear_adjoint(&y, (hw, hh), &mut uty, (lw, lh), 1, false)
            .expect("adjoint");
        let lhs: f64 = ux.iter().zip(&y).map(|(a, b)| *a as f64 * *b as f64).sum();
        let rhs: f64 = x.iter().zip(&uty).map(|(a, b)| *a as f64 * *b as f64).sum();
        assert!(
            (lhs - rhs).abs() < 1e-4 * lhs.abs().max(1.0),
            "{lw}x{lh}->{hw}x{hh}: {lhs} vs {rhs}"
        );
        // accumulate adds on top.
        let mut acc = vec![1.0; lw * lh];
        twin::upsample_bilinear_adjoint(&y, (hw, hh), &mut acc, (lw, lh), 1, true)
            .expect("adjoint");
        assert!(acc.iter().zip(&uty).all(|(a, b)| (a - 1.0 - b).abs() < 1e-6));
    }
    let err = twin::upsample_bilinear(&[0.0; 5], (2, 2), &mut [0.0; 16], (4, 4), 1).unwrap_err();
    assert!(err.to_string().contains("upsample input"), "{err}");
}

fn rgb_frame(w: usize, h: usize, rng: &mut Rng) -> Vec<u8> {
    (0..w * h * 3).map(|_| (rng.next() * 255.0) as u8).collect()
}

#[test]
fn preprocess_rgb_and_rgba_with_pitch() {
    let mut rng = Rng(3);
    let (w, h) = (20, 12);
    let rgb = rgb_frame(w, h, &mut rng);
    let norm = Normalization::default();
    // Same size: exactly value / 255, planar.
    let mut out = vec![0.0; 3 * w * h];
    let frame =
        PackedFrame { data: &rgb, width: w, height: h, pitch: w * 3, format: PixelFormat::Rgb };
    twin::preprocess(&frame, w, h, Resize::Bilinear, &norm, &mut out).expect("preprocess");
    for y in 0..h {
        for x in 0..w {
            for c in 0..3 {
                let expected = rgb[(y * w + x) * 3 + c] as f32 / 255.0;
                assert!((out[c * w * h + y * w + x] - expected).abs() < 1e-6);
            }
        }
    }
    // RGBA with padded rows (padding and alpha filled with 255 must be ignored).
    let pitch = w * 4 + 12;
    let mut rgba = vec![255u8; pitch * h];
    for y in 0..h {
        for x in 0..w {
            rgba[y * pitch + x * 4..y * pitch + x * 4 + 3]
                .copy_from_slice(&rgb[(y * w + x) * 3..(y * w + x) * 3 + 3]);
        }
    }
    let frame_rgba =
        PackedFrame { data: &rgba, width: w, height: h, pitch, format: PixelFormat::Rgba };
    for resize in [Resize::Bilinear, Resize::Area] {
        let mut a = vec![0.0; 3 * 8 * 6];
        let mut b = vec![0.0; 3 * 8 * 6];
        twin::preprocess(&frame, 8, 6, resize, &norm, &mut a).expect("rgb");
        twin::preprocess(&frame_rgba, 8, 6, resize, &norm, &mut b).expect("rgba");
        assert_eq!(a, b, "{resize:?}");
    }
    // Area at an exact 2x reduction is the 2x2 mean; normalisation applies after.
    let norm2 = Normalization { mean: [0.5, 0.25, 0.0], std: [0.5, 2.0, 1.0] };
    let mut area = vec![0.0; 3 * 10 * 6];
    twin::preprocess(&frame, 10, 6, Resize::Area, &norm2, &mut area).expect("area");
    for y in 0..6 {
        for x in 0..10 {
            for c in 0..3 {
                let s: f32 = [(0, 0), (0, 1), (1, 0), (1, 1)]
                    .iter()
                    .map(|(dy, dx)| rgb[((2 * y + dy) * w + 2 * x + dx) * 3 + c] as f32)
                    .sum();
                let expected = (s / 4.0 / 255.0 - norm2.mean[c]) / norm2.std[c];
                assert!((area[c * 60 + y * 10 + x] - expected).abs() < 1e-5);
            }
        }
    }
    // Bilinear downscale by 2 (align_corners=false) samples between the 2x2 pixels: also the mean.
    let mut bil = vec![0.0; 3 * 10 * 6];
    twin::preprocess(&frame, 10, 6, Resize::Bilinear, &norm2, &mut bil).expect("bilinear");
    assert!(bil.iter().zip(&area).all(|(a, b)| (a - b).abs() < 1e-5));
}

#[test]
fn preprocess_nv12_converts_bt601() {
    let (w, h) = (8, 4);
    let pitch = 10;
    let uv_pitch = 10;
    let mut data = vec![0u8; pitch * h + uv_pitch * h / 2];
    for y in 0..h {
        for x in 0..w {
            data[y * pitch + x] = if x < 4 { 16 } else { 235 };
        }
    }
    for y in 0..h / 2 {
        for x in 0..w / 2 {
            data[pitch * h + y * uv_pitch + 2 * x] = 128;
            data[pitch * h + y * uv_pitch + 2 * x + 1] = if x == 3 { 240 } else { 128 };
        }
    }
    let frame = PackedFrame {
        data: &data,
        width: w,
        height: h,
        pitch,
        format: PixelFormat::Nv12 { uv_pitch },
    };
    let mut out = vec![0.0; 3 * w * h];
    twin::preprocess(&frame, w, h, Resize::Bilinear, &Normalization::default(), &mut out)
        .expect("nv12");
    let at = |c: usize, x: usize| out[c * w * h + x];
    // Y=16 grey is black, Y=235 grey is white (to 1164/1000 rounding).
    for c in 0..3 {
        assert!(at(c, 0).abs() < 1e-6);
        assert!((at(c, 4) - 1.0).abs() < 2e-3, "{}", at(c, 4));
    }
    // V=240 on the last chroma pair: red saturates, green drops.
    assert!((at(0, 6) - 1.0).abs() < 1e-6);
    let expected_g = (1.164f32 * 219.0 - 0.813 * 112.0) / 255.0;
    assert!((at(1, 6) - expected_g).abs() < 1e-4);
    // Odd sizes and short buffers are typed errors naming the problem.
    let odd = PackedFrame { width: 7, ..frame };
    assert!(
        twin::preprocess(&odd, 4, 4, Resize::Area, &Normalization::default(), &mut [0.0; 48])
            .unwrap_err()
            .to_string()
            .contains("even")
    );
    let short = PackedFrame { data: &data[..50], ..frame };
    let err =
        twin::preprocess(&short, 4, 4, Resize::Area, &Normalization::default(), &mut [0.0; 48])
            .unwrap_err();
    assert!(err.to_string().contains("frame buffer"), "{err}");
    let bad_pitch =
        PackedFrame { data: &data, width: w, height: h, pitch: 10, format: PixelFormat::Rgb };
    let err =
        twin::preprocess(&bad_pitch, 4, 4, Resize::Area, &Normalization::default(), &mut [0.0; 48])
            .unwrap_err();
    assert!(err.to_string().contains("pitch"), "{err}");
    let bad_norm = Normalization { mean: [0.0; 3], std: [1.0, 0.0, 1.0] };
    assert!(matches!(
        twin::preprocess(&frame, 4, 4, Resize::Area, &bad_norm, &mut [0.0; 48]),
        Err(CudaError::InvalidInput { .. })
    ));
}

#[test]
fn pose_matrix_is_a_rigid_transform_and_its_gradient_matches_differences() {
    let pose = [0.1f32, -0.2, 0.15, 0.3, -0.1, 0.5];
    let t = twin::pose_matrix(&pose, false);
    let ti = twin::pose_matrix(&pose, true);
    // R R^T = I and the inverse composes to the identity.
    for j in 0..3 {
        for k in 0..3 {
            let rrt: f32 = (0..3).map(|m| t[j * 3 + m] * t[k * 3 + m]).sum();
            assert!((rrt - if j == k { 1.0 } else { 0.0 }).abs() < 1e-6);
        }
    }
    let p = [0.7f32, -0.4, 2.0];
    let q: Vec<f32> =
        (0..3).map(|j| (0..3).map(|k| t[j * 3 + k] * p[k]).sum::<f32>() + t[9 + j]).collect();
    let back: Vec<f32> =
        (0..3).map(|j| (0..3).map(|k| ti[j * 3 + k] * q[k]).sum::<f32>() + ti[9 + j]).collect();
    for j in 0..3 {
        assert!((back[j] - p[j]).abs() < 1e-5);
    }
    // Exact forward-mode gradient vs central differences of <G, T(pose)>.
    let g: [f64; 12] = [0.3, -0.2, 0.5, 0.1, 0.7, -0.4, 0.2, 0.05, -0.3, 0.9, -0.6, 0.4];
    // Both branches of Rodrigues' coefficients: a normal rotation and one near zero (Taylor).
    let tiny = [1e-4f32, -2e-4, 5e-5, 0.3, -0.1, 0.5];
    for (pose, invert) in [(pose, false), (pose, true), (tiny, false), (tiny, true)] {
        let grad = twin::pose_gradient(&pose, invert, &g);
        for k in 0..6 {
            let eps = 1e-3f32;
            let f = |d: f32| {
                let mut pp = pose;
                pp[k] += d;
                let m = twin::pose_matrix(&pp, invert);
                (0..12).map(|j| g[j] * m[j] as f64).sum::<f64>()
            };
            let fd = (f(eps) - f(-eps)) / (2.0 * eps as f64);
            assert!(
                (grad[k] as f64 - fd).abs() < 2e-3 * fd.abs().max(0.1),
                "invert {invert} k {k}: {} vs {fd}",
                grad[k]
            );
        }
    }
}

/// A smooth random scene: images are sums of low-frequency sinusoids so that bilinear warps
/// are differentiable almost everywhere.
struct Scene {
    w: usize,
    h: usize,
    target: Vec<f32>,
    sources: Vec<Vec<f32>>,
    disparities: Vec<Vec<f32>>,
    pyramid: Vec<Vec<f32>>,
    poses: Vec<[f32; 6]>,
    invert: Vec<bool>,
    intrinsics: [f32; 4],
    noise: Vec<f32>,
}

fn smooth_image(w: usize, h: usize, rng: &mut Rng) -> Vec<f32> {
    let coefs = rng.vec(12, 0.0, 1.0);
    let mut out = vec![0.0; 3 * w * h];
    for c in 0..3 {
        for y in 0..h {
            for x in 0..w {
                let (xf, yf) = (x as f32 / w as f32, y as f32 / h as f32);
                let k = &coefs[c * 4..c * 4 + 4];
                out[c * w * h + y * w + x] = 0.5
                    + 0.25 * (6.0 * xf + 5.0 * k[0] + 3.0 * yf * k[1]).sin()
                    + 0.2 * (4.0 * yf + 6.0 * k[2] + 2.0 * xf * k[3]).cos();
            }
        }
    }
    out
}

fn scene(w: usize, h: usize, scales: usize, n: usize, seed: u64) -> Scene {
    let mut rng = Rng(seed);
    let target = smooth_image(w, h, &mut rng);
    let sources = (0..n).map(|_| smooth_image(w, h, &mut rng)).collect();
    let disparities = (0..scales).map(|s| rng.vec((w >> s) * (h >> s), 0.05, 0.3)).collect();
    let pyramid = (0..scales)
        .map(|s| {
            let (lw, lh) = (w >> s, h >> s);
            let mut lvl = vec![0.0; 3 * lw * lh];
            twin::upsample_bilinear(&target, (w, h), &mut lvl, (lw, lh), 3).expect("downsample");
            lvl
        })
        .collect();
    let poses = (0..n)
        .map(|i| {
            let r = rng.vec(6, -1.0, 1.0);
            [
                0.02 * r[0],
                0.02 * r[1],
                0.02 * r[2],
                0.1 * r[3] + 0.05 * i as f32,
                0.05 * r[4],
                0.1 * r[5],
            ]
        })
        .collect();
    let invert = (0..n).map(|i| i % 2 == 0).collect();
    let intrinsics = [0.58 * w as f32 * 1.5, 1.92 * h as f32 * 0.8, 0.5 * w as f32, 0.5 * h as f32];
    let noise = rng.vec(n * w * h, -1e-5, 1e-5);
    Scene { w, h, target, sources, disparities, pyramid, poses, invert, intrinsics, noise }
}

/// Pose rows (axis-angle, translation) with their invert flags, as the loss takes them.
fn pose6(rows: &[[f32; 6]], invert: &[bool]) -> Vec<Pose6> {
    rows.iter().zip(invert).map(|(row, &inv)| Pose6::from_row(row, inv)).collect()
}

fn evaluate(sc: &Scene, config: &LossConfig, with_grad: bool) -> Result<LossOutputs, CudaError> {
    let sources: Vec<&[f32]> = sc.sources.iter().map(|v| v.as_slice()).collect();
    let disparities: Vec<&[f32]> = sc.disparities.iter().map(|v| v.as_slice()).collect();
    let pyramid: Vec<&[f32]> = sc.pyramid.iter().map(|v| v.as_slice()).collect();
    let poses = pose6(&sc.poses, &sc.invert);
    let inputs = LossInputs {
        width: sc.w,
        height: sc.h,
        target: &sc.target,
        sources: &sources,
        disparities: &disparities,
        target_pyramid: &pyramid,
        poses: &poses,
        intrinsics: sc.intrinsics,
        tie_break_noise: Some(&sc.noise),
    };
    twin::fused_loss(config, &inputs, with_grad)
}

/// |analytic - numeric| <= max(rel * max(|analytic|, |numeric|), floor).
fn assert_close(what: &str, analytic: f64, numeric: f64, rel: f64, floor: f64) {
    let tol = (rel * numeric.abs().max(analytic.abs())).max(floor);
    assert!(
        (analytic - numeric).abs() <= tol,
        "{what}: analytic {analytic:e} vs finite difference {numeric:e}"
    );
}

#[test]
fn fused_loss_gradients_match_finite_differences() {
    // Finite differences in f32 across the kinks of min, |.| and the clamps are only accurate to
    // a few per cent; tolerances are relative to each family's gradient scale.
    for (automask, smoothness_weight) in [(true, 0.05), (false, 1.0)] {
        let config = LossConfig { automask, smoothness_weight, ..Default::default() };
        let sc = scene(24, 16, 2, 2, 5 + automask as u64);
        let out = evaluate(&sc, &config, true).expect("loss");
        assert!(out.total.is_finite() && out.total > 0.0);
        assert!((out.total - out.photometric - out.smoothness).abs() < 1e-6);
        // Disparities: directional derivative along a random direction per scale.
        let mut rng = Rng(99);
        for s in 0..2 {
            // Mostly along the gradient's signs (a well-conditioned difference), plus a random
            // part so that entries with a wrongly zero gradient still move.
            let dir: Vec<f32> = out.grad_disparities[s]
                .iter()
                .map(|g| g.signum() * (0.5 + 0.5 * rng.next()) + 0.3 * (2.0 * rng.next() - 1.0))
                .collect();
            let analytic: f64 =
                out.grad_disparities[s].iter().zip(&dir).map(|(g, d)| *g as f64 * *d as f64).sum();
            let eps = 1e-3f32;
            let at = |sign: f32| {
                let mut sc2 = scene(24, 16, 2, 2, 5 + automask as u64);
                for (v, d) in sc2.disparities[s].iter_mut().zip(&dir) {
                    *v += sign * eps * d;
                }
                evaluate(&sc2, &config, false).expect("loss").total as f64
            };
            let numeric = (at(1.0) - at(-1.0)) / (2.0 * eps as f64);
            assert_close(
                &format!("automask {automask} disparity scale {s}"),
                analytic,
                numeric,
                0.05,
                0.0,
            );
        }
        // Poses: bilinear sampling is only piecewise smooth (its slope jumps at integer
        // coordinates), so single parameters are checked loosely against the largest pose
        // gradient, and all parameters together along the gradient's signs tightly.
        let pose_at = |dir: &[[f32; 6]], eps: f32| {
            let mut sc2 = scene(24, 16, 2, 2, 5 + automask as u64);
            for (p, d) in sc2.poses.iter_mut().zip(dir) {
                for k in 0..6 {
                    p[k] += eps * d[k];
                }
            }
            evaluate(&sc2, &config, false).expect("loss").total as f64
        };
        let largest = out.grad_poses.iter().flatten().fold(0.0f32, |m, g| m.max(g.abs())) as f64;
        for i in 0..2 {
            for k in 0..6 {
                let mut dir = [[0.0f32; 6]; 2];
                dir[i][k] = 1.0;
                let eps = 1e-3f32;
                let numeric = (pose_at(&dir, eps) - pose_at(&dir, -eps)) / (2.0 * eps as f64);
                let what = format!("automask {automask} pose {i} param {k}");
                assert_close(&what, out.grad_poses[i][k] as f64, numeric, 0.05, 0.3 * largest);
            }
        }
        let dir: Vec<[f32; 6]> = out.grad_poses.iter().map(|g| g.map(f32::signum)).collect();
        let analytic: f64 = out.grad_poses.iter().flatten().map(|g| g.abs() as f64).sum();
        let eps = 1e-3f32;
        let numeric = (pose_at(&dir, eps) - pose_at(&dir, -eps)) / (2.0 * eps as f64);
        assert_close(
            &format!("automask {automask} all pose parameters"),
            analytic,
            numeric,
            0.05,
            0.0,
        );
        // Intrinsics (same piecewise smoothness as the poses).
        let largest = out.grad_intrinsics.iter().fold(0.0f32, |m, g| m.max(g.abs())) as f64;
        for k in 0..4 {
            let eps = 2e-2f32;
            let at = |sign: f32| {
                let mut sc2 = scene(24, 16, 2, 2, 5 + automask as u64);
                sc2.intrinsics[k] += sign * eps;
                evaluate(&sc2, &config, false).expect("loss").total as f64
            };
            let numeric = (at(1.0) - at(-1.0)) / (2.0 * eps as f64);
            assert_close(
                &format!("automask {automask} intrinsic {k}"),
                out.grad_intrinsics[k] as f64,
                numeric,
                0.05,
                0.3 * largest,
            );
        }
    }
}

#[test]
fn static_scene_ties_resolve_through_the_noise_and_mask_everything() {
    let mut sc = scene(20, 12, 2, 2, 17);
    sc.sources = vec![sc.target.clone(), sc.target.clone()];
    let hw = sc.w * sc.h;
    // Source 1's identity error gets the lower noise everywhere.
    sc.noise = (0..2 * hw).map(|i| if i < hw { 1e-5 } else { -1e-5 }).collect();
    let config = LossConfig::default();
    let out = evaluate(&sc, &config, true).expect("loss");
    assert!(out.winner.iter().all(|&c| c == 1), "identity 1 must win every pixel");
    assert_eq!(out.masked_fraction, 1.0);
    assert!(out.min_error.iter().all(|&m| m == -1e-5));
    assert!((out.per_scale[0].photometric + 1e-5).abs() < 1e-9);
    // Nothing flows to the poses when no warped error wins.
    assert!(out.grad_poses.iter().flatten().all(|&g| g == 0.0));
    // Without the automask the warped error of the better source wins instead.
    let out = evaluate(&sc, &LossConfig { automask: false, ..config }, false).expect("loss");
    assert!(out.winner.iter().all(|&c| c < 2));
    assert_eq!(out.masked_fraction, 0.0);
}

#[test]
fn identity_pose_reproduces_the_source_and_far_warps_clamp_to_the_border() {
    let mut sc = scene(20, 12, 1, 1, 23);
    sc.sources = vec![sc.target.clone()];
    sc.poses = vec![[0.0; 6]];
    sc.invert = vec![false];
    let config = LossConfig { automask: false, smoothness_weight: 0.0, ..Default::default() };
    let out = evaluate(&sc, &config, true).expect("loss");
    assert!(
        out.photometric < 1e-5,
        "warp by the identity must reproduce the target: {}",
        out.photometric
    );
    // A translation far beyond the image: every pixel samples the border; the loss stays finite
    // and the pose gradient is zero because every coordinate is clamped.
    sc.poses = vec![[0.0, 0.0, 0.0, 1.0e3, 1.0e3, 0.0]];
    let out = evaluate(&sc, &config, true).expect("loss");
    assert!(out.total.is_finite() && out.total > 0.0);
    assert!(out.grad_poses[0].iter().all(|g| g.abs() < 1e-12), "{:?}", out.grad_poses[0]);
    assert!(out.grad_disparities[0].iter().all(|g| g.is_finite()));
}

#[test]
fn bad_inputs_are_typed_errors_naming_the_field() {
    let sc = scene(16, 8, 2, 1, 1);
    let config = LossConfig::default();
    let mut bad = scene(16, 8, 2, 1, 1);
    bad.disparities[1].pop();
    let err = evaluate(&bad, &config, false).unwrap_err().to_string();
    assert!(err.contains("disparities[1]"), "{err}");
    let mut bad = scene(16, 8, 2, 1, 1);
    bad.intrinsics[0] = f32::NAN;
    let err = evaluate(&bad, &config, false).unwrap_err().to_string();
    assert!(err.contains("intrinsics"), "{err}");
    let mut bad = scene(16, 8, 2, 1, 1);
    bad.poses[0][3] = f32::INFINITY;
    let err = evaluate(&bad, &config, false).unwrap_err().to_string();
    assert!(err.contains("poses[0]"), "{err}");
    let err =
        evaluate(&sc, &LossConfig { min_depth: 0.0, ..config }, false).unwrap_err().to_string();
    assert!(err.contains("min_depth"), "{err}");
    let tiny = scene(4, 4, 3, 1, 1);
    let err = evaluate(&tiny, &config, false).unwrap_err().to_string();
    assert!(err.contains("coarsest scale"), "{err}");
}

#[path = "common/mod.rs"]
mod common;

/// Reads a flat float32 array from an npz archive.
fn npz_array(
    archive: &mut npyz::npz::NpzArchive<std::io::BufReader<std::fs::File>>,
    name: &str,
) -> Vec<f32> {
    let array =
        archive.by_name(name).expect("npz read").unwrap_or_else(|| panic!("npz lacks {name}"));
    array.into_vec::<f32>().expect("float32 array")
}

#[test]
fn torch_baseline_of_the_benchmark_composes_the_same_loss() {
    let python = common::python();
    let dir = tempfile::tempdir().expect("tempdir");
    let npz = dir.path().join("check.npz");
    let script = common::repo_root().join("scripts/bench/loss_cuda_peer.py");
    let (w, h, n, scales) = (48usize, 32usize, 2usize, 3usize);
    let status = std::process::Command::new(&python)
        .arg(&script)
        .args([w, h, n, scales, 1, 0].map(|v| v.to_string()))
        .arg("check")
        .arg(&npz)
        .output()
        .expect("run python");
    assert!(status.status.success(), "{}", String::from_utf8_lossy(&status.stderr));
    let mut archive = npyz::npz::NpzArchive::open(&npz).expect("open npz");
    let mut get = |name: &str| npz_array(&mut archive, name);
    let target = get("target");
    let sources: Vec<Vec<f32>> = (0..n).map(|i| get(&format!("source{i}"))).collect();
    let disparities: Vec<Vec<f32>> = (0..scales).map(|s| get(&format!("disp{s}"))).collect();
    let pyramid: Vec<Vec<f32>> = (0..scales).map(|s| get(&format!("pyramid{s}"))).collect();
    let poses: Vec<[f32; 6]> =
        (0..n).map(|i| get(&format!("pose{i}")).try_into().expect("6 pose values")).collect();
    let noise: Vec<f32> = (0..n).flat_map(|i| get(&format!("noise{i}"))).collect();
    let k = get("k");
    let invert: Vec<bool> = get("invert").iter().map(|&v| v != 0.0).collect();
    let total = get("total")[0];
    let (s_ref, d_ref, p_ref) = (
        sources.iter().map(|v| v.as_slice()).collect::<Vec<_>>(),
        disparities.iter().map(|v| v.as_slice()).collect::<Vec<_>>(),
        pyramid.iter().map(|v| v.as_slice()).collect::<Vec<_>>(),
    );
    let poses = pose6(&poses, &invert);
    let inputs = LossInputs {
        width: w,
        height: h,
        target: &target,
        sources: &s_ref,
        disparities: &d_ref,
        target_pyramid: &p_ref,
        poses: &poses,
        intrinsics: [k[0], k[1], k[2], k[3]],
        tie_break_noise: Some(&noise),
    };
    let out = twin::fused_loss(&LossConfig::default(), &inputs, true).expect("twin");
    eprintln!("twin total {} vs PyTorch (f64) {total}", out.total);
    assert!((out.total - total).abs() <= 1e-5 * total.abs(), "{} vs {total}", out.total);
    let norm_diff = |a: &[f32], b: &[f32]| {
        let scale = b.iter().fold(0.0f32, |m, v| m.max(v.abs())).max(1e-30);
        a.iter().zip(b).fold(0.0f32, |m, (x, y)| m.max((x - y).abs())) / scale
    };
    for s in 0..scales {
        let d = norm_diff(&out.grad_disparities[s], &get(&format!("grad_disp{s}")));
        eprintln!("grad disparity scale {s}: {d:.2e}");
        assert!(d < 1e-4, "scale {s}: {d}");
    }
    for i in 0..n {
        let d = norm_diff(&out.grad_poses[i], &get(&format!("grad_pose{i}")));
        eprintln!("grad pose {i}: {d:.2e}");
        assert!(d < 1e-4, "pose {i}: {d}");
    }
}
