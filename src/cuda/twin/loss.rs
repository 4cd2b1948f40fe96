//! CPU twin of kernels/loss.cu: the fused self-supervised loss (warp, SSIM + L1, identity
//! errors with tie-break noise, per-pixel minimum, automask, edge-aware smoothness) and its
//! backward pass to every disparity scale, every pose and the intrinsics.
//!
//! It runs the kernels' passes in the same order with the same per-pixel f32 arithmetic (the
//! shared-memory tiles of the kernels become whole-image arrays here; block sums in f32 followed
//! by double atomics become f64 sums). See kernels/loss.cu for the formulation.

use super::common::{
    PROJ_EPS, SMOOTH_EPS, photometric_error, sign, ssim_adjoint, upsample_adjoint_at, upsample_at,
    window, window_count, window_stats,
};
use super::pose::{pose_gradient, pose_matrix};
use crate::cuda::CudaError;
use crate::cuda::loss_contract::{disparity_range, validate_for_kernels};
use crate::loss::{LossConfig, LossInputs, LossOutputs, ScaleLoss};

/// Geometry and settings shared by the passes (the kernels' `LdLossParams`).
struct Params<'a> {
    w: i32,
    h: i32,
    fx: f32,
    fy: f32,
    cx: f32,
    cy: f32,
    min_disp: f32,
    max_disp: f32,
    alpha: f32,
    inputs: &'a LossInputs<'a>,
}

/// Per-pixel warp state (`LdWarp`).
#[derive(Clone, Copy, Default)]
struct Warp {
    xn: f32,
    yn: f32,
    p: [f32; 3],
    cam: [f32; 3],
    zinv: f32,
    u: f32,
    v: f32,
}

impl Params<'_> {
    fn depth_at(&self, s: usize, x: i32, y: i32) -> f32 {
        let d =
            upsample_at(self.inputs.disparities[s], self.w >> s, self.h >> s, self.w, self.h, x, y);
        1.0 / (self.min_disp + (self.max_disp - self.min_disp) * d)
    }

    fn project(&self, t: &[f32; 12], x: i32, y: i32, depth: f32) -> Warp {
        let xn = (x as f32 - self.cx) / self.fx;
        let yn = (y as f32 - self.cy) / self.fy;
        let p = [depth * xn, depth * yn, depth];
        let mut cam = [0.0f32; 3];
        for j in 0..3 {
            cam[j] = t[j * 3] * p[0] + t[j * 3 + 1] * p[1] + t[j * 3 + 2] * p[2] + t[9 + j];
        }
        let zinv = 1.0 / (cam[2] + PROJ_EPS);
        let u = (self.fx * cam[0] + self.cx * cam[2]) * zinv;
        let v = (self.fy * cam[1] + self.cy * cam[2]) * zinv;
        Warp { xn, yn, p, cam, zinv, u, v }
    }
}

/// Bilinear sample with border padding and the derivatives w.r.t. u and v (`ld_sample`).
pub fn sample(img: &[f32], w: i32, h: i32, u: f32, v: f32) -> ([f32; 3], [f32; 3], [f32; 3]) {
    let uc = u.max(0.0).min((w - 1) as f32);
    let vc = v.max(0.0).min((h - 1) as f32);
    let x0 = uc.floor() as i32;
    let y0 = vc.floor() as i32;
    let ax = uc - x0 as f32;
    let ay = vc - y0 as f32;
    let x1ok = x0 + 1 < w;
    let y1ok = y0 + 1 < h;
    let gu = if u > 0.0 && u < (w - 1) as f32 { 1.0 } else { 0.0 };
    let gv = if v > 0.0 && v < (h - 1) as f32 { 1.0 } else { 0.0 };
    let plane = (w * h) as usize;
    let (mut out, mut ddu, mut ddv) = ([0.0f32; 3], [0.0f32; 3], [0.0f32; 3]);
    for c in 0..3 {
        let base = c * plane + (y0 * w + x0) as usize;
        let v00 = img[base];
        let v10 = if x1ok { img[base + 1] } else { 0.0 };
        let v01 = if y1ok { img[base + w as usize] } else { 0.0 };
        let v11 = if x1ok && y1ok { img[base + w as usize + 1] } else { 0.0 };
        out[c] = (1.0 - ax) * (1.0 - ay) * v00
            + ax * (1.0 - ay) * v10
            + (1.0 - ax) * ay * v01
            + ax * ay * v11;
        ddu[c] = gu * ((1.0 - ay) * (v10 - v00) + ay * (v11 - v01));
        ddv[c] = gv * ((1.0 - ax) * (v01 - v00) + ax * (v11 - v10));
    }
    (out, ddu, ddv)
}

fn warped_winner(code: u8, n: usize, automask: bool) -> i32 {
    if !automask {
        return code as i32;
    }
    if code as usize >= n { code as i32 - n as i32 } else { -1 }
}

fn edge_weight(img: &[f32], plane: usize, a: usize, b: usize) -> f32 {
    let mut g = 0.0f32;
    for c in 0..3 {
        g += (img[c * plane + a] - img[c * plane + b]).abs();
    }
    (-g * (1.0 / 3.0)).exp()
}

/// Evaluates the fused loss on the CPU exactly as the kernels do; gradients when `with_grad`.
///
/// The types are the CPU loss's ([`crate::loss`]). As in the kernels, the tie-break noise is
/// only what `inputs.tie_break_noise` holds (`None`: no noise): `config.tie_break_std` and
/// `config.seed` are not used. [`LossOutputs::automask`] is derived from the winners as the CPU
/// loss derives it.
pub fn fused_loss(
    config: &LossConfig,
    inputs: &LossInputs,
    with_grad: bool,
) -> Result<LossOutputs, CudaError> {
    validate_for_kernels(inputs)?;
    let (min_disp, max_disp) = disparity_range(config)?;
    let [fx, fy, cx, cy] = inputs.intrinsics;
    let p = Params {
        w: inputs.width as i32,
        h: inputs.height as i32,
        fx,
        fy,
        cx,
        cy,
        min_disp,
        max_disp,
        alpha: config.ssim_weight,
        inputs,
    };
    let (w, h) = (p.w, p.h);
    let hw = (w * h) as usize;
    let n = inputs.sources.len();
    let scales = inputs.disparities.len();
    let transforms: Vec<[f32; 12]> =
        inputs.poses.iter().map(|pose| pose_matrix(&pose.row(), pose.invert)).collect();

    // ld_identity_error
    let mut id_min = vec![0.0f32; hw];
    let mut id_arg = vec![0u8; hw];
    if config.automask {
        for y in 0..h {
            for x in 0..w {
                let q = (y * w + x) as usize;
                let yw = window(inputs.target, w, h, x, y);
                let mut best = 0.0f32;
                let mut best_i = 0usize;
                for (i, src) in inputs.sources.iter().enumerate() {
                    let mut e = photometric_error(&window(src, w, h, x, y), &yw, p.alpha);
                    if let Some(noise) = inputs.tie_break_noise {
                        e += noise[i * hw + q];
                    }
                    if i == 0 || e < best {
                        best = e;
                        best_i = i;
                    }
                }
                id_min[q] = best;
                id_arg[q] = best_i as u8;
            }
        }
    }

    // ld_loss_forward: the warped images (the kernels' shared tiles), winners, minimum.
    let warp_image = |s: usize, i: usize| -> Vec<f32> {
        let mut out = vec![0.0f32; 3 * hw];
        for y in 0..h {
            for x in 0..w {
                let wp = p.project(&transforms[i], x, y, p.depth_at(s, x, y));
                let (val, _, _) = sample(inputs.sources[i], w, h, wp.u, wp.v);
                for c in 0..3 {
                    out[c * hw + (y * w + x) as usize] = val[c];
                }
            }
        }
        out
    };
    let mut warped: Vec<Vec<Vec<f32>>> = Vec::with_capacity(scales);
    let mut winners = vec![vec![0u8; hw]; scales];
    let mut photo_sum = vec![0.0f64; scales];
    let mut id_wins = 0.0f64;
    let mut min_error = vec![0.0f32; hw];
    for s in 0..scales {
        let imgs: Vec<Vec<f32>> = (0..n).map(|i| warp_image(s, i)).collect();
        for y in 0..h {
            for x in 0..w {
                let q = (y * w + x) as usize;
                let yw = window(inputs.target, w, h, x, y);
                let mut best = 0.0f32;
                let mut best_i = 0usize;
                for (i, img) in imgs.iter().enumerate() {
                    let e = photometric_error(&window(img, w, h, x, y), &yw, p.alpha);
                    if i == 0 || e < best {
                        best = e;
                        best_i = i;
                    }
                }
                let mut code = best_i;
                let mut m = best;
                if config.automask {
                    if best < id_min[q] {
                        code = n + best_i;
                    } else {
                        code = id_arg[q] as usize;
                        m = id_min[q];
                        if s == 0 {
                            id_wins += 1.0;
                        }
                    }
                }
                winners[s][q] = code as u8;
                if s == 0 {
                    min_error[q] = m;
                }
                photo_sum[s] += m as f64;
            }
        }
        warped.push(imgs);
    }

    // ld_smooth_sum, ld_smooth_forward
    let mut means = vec![0.0f32; scales];
    let mut smooth_x = vec![0.0f64; scales];
    let mut smooth_y = vec![0.0f64; scales];
    for s in 0..scales {
        let (lw, lh) = ((w >> s) as usize, (h >> s) as usize);
        let plane = lw * lh;
        let d = inputs.disparities[s];
        let img = inputs.target_pyramid[s];
        let sum: f64 = d.iter().map(|&v| v as f64).sum();
        let m = (sum / plane as f64) as f32 + SMOOTH_EPS;
        means[s] = m;
        for q in 0..plane {
            let (x, y) = (q % lw, q / lw);
            let nd = d[q] / m;
            if x + 1 < lw {
                smooth_x[s] +=
                    (edge_weight(img, plane, q, q + 1) * (nd - d[q + 1] / m).abs()) as f64;
            }
            if y + 1 < lh {
                smooth_y[s] +=
                    (edge_weight(img, plane, q, q + lw) * (nd - d[q + lw] / m).abs()) as f64;
            }
        }
    }
    let smooth_raw = |s: usize| -> f32 {
        let (lw, lh) = ((w >> s) as f64, (h >> s) as f64);
        (smooth_x[s] / ((lw - 1.0) * lh) + smooth_y[s] / (lw * (lh - 1.0))) as f32
    };

    // ld_finalize (scalars)
    let mut out = LossOutputs::default();
    for s in 0..scales {
        out.per_scale.push(ScaleLoss {
            photometric: (photo_sum[s] / hw as f64) as f32,
            smoothness: config.smoothness_weight / (1u32 << s) as f32 * smooth_raw(s),
        });
    }
    out.photometric = out.per_scale.iter().map(|s| s.photometric).sum::<f32>() / scales as f32;
    out.smoothness = out.per_scale.iter().map(|s| s.smoothness).sum::<f32>() / scales as f32;
    out.total = out.photometric + out.smoothness;
    out.masked_fraction = if config.automask { (id_wins / hw as f64) as f32 } else { 0.0 };
    out.min_error = min_error;
    out.winner = winners[0].clone();
    let identity_codes = if config.automask { n as u8 } else { 0 };
    out.automask = out.winner.iter().map(|&c| u8::from(c >= identity_codes)).collect();
    if !with_grad {
        return Ok(out);
    }

    // ld_loss_backward
    let g_pix = 1.0f32 / (scales as f32 * hw as f32);
    let mut grad_full = vec![vec![0.0f32; hw]; scales];
    let mut g_transform = vec![[0.0f64; 12]; n];
    let mut g_intr = [0.0f64; 4];
    for s in 0..scales {
        for i in 0..n {
            let img = &warped[s][i];
            // SSIM adjoint coefficients of every pixel whose winner is warped source i.
            let mut k = vec![[[0.0f32; 3]; 3]; hw]; // [pixel][coef][channel]
            for y in 0..h {
                for x in 0..w {
                    let q = (y * w + x) as usize;
                    if warped_winner(winners[s][q], n, config.automask) != i as i32 {
                        continue;
                    }
                    let xw = window(img, w, h, x, y);
                    let yw = window(inputs.target, w, h, x, y);
                    for c in 0..3 {
                        let (k_mu, k_xx, k_xy) =
                            ssim_adjoint(window_stats(&xw, &yw, c), g_pix * p.alpha * (1.0 / 3.0));
                        k[q][0][c] = k_mu;
                        k[q][1][c] = k_xx;
                        k[q][2][c] = k_xy;
                    }
                }
            }
            let t = &transforms[i];
            for y in 0..h {
                for x in 0..w {
                    let q = (y * w + x) as usize;
                    let gate_q = warped_winner(winners[s][q], n, config.automask);
                    let mut gw = [0.0f32; 3];
                    let mut wq = [0.0f32; 3];
                    let mut tq = [0.0f32; 3];
                    for c in 0..3 {
                        wq[c] = img[c * hw + q];
                        tq[c] = inputs.target[c * hw + q];
                        gw[c] = if gate_q == i as i32 {
                            g_pix * (1.0 - p.alpha) * (1.0 / 3.0) * sign(wq[c] - tq[c])
                        } else {
                            0.0
                        };
                    }
                    for dy in -1..=1 {
                        let py = y + dy;
                        if py < 0 || py >= h {
                            continue;
                        }
                        let cyc = window_count(py, y, h);
                        if cyc == 0 {
                            continue;
                        }
                        for dx in -1..=1 {
                            let px = x + dx;
                            if px < 0 || px >= w {
                                continue;
                            }
                            let cxc = window_count(px, x, w);
                            if cxc == 0 {
                                continue;
                            }
                            let cnt = (cxc * cyc) as f32;
                            let kk = &k[(py * w + px) as usize];
                            for c in 0..3 {
                                gw[c] += cnt * (kk[0][c] + kk[1][c] * wq[c] + kk[2][c] * tq[c]);
                            }
                        }
                    }
                    if gw == [0.0; 3] {
                        continue;
                    }
                    let depth = p.depth_at(s, x, y);
                    let wp = p.project(t, x, y, depth);
                    let (_, ddu, ddv) = sample(inputs.sources[i], w, h, wp.u, wp.v);
                    let gu = gw[0] * ddu[0] + gw[1] * ddu[1] + gw[2] * ddu[2];
                    let gv = gw[0] * ddv[0] + gw[1] * ddv[1] + gw[2] * ddv[2];
                    let g_cam = [
                        gu * p.fx * wp.zinv,
                        gv * p.fy * wp.zinv,
                        (gu * (p.cx - wp.u) + gv * (p.cy - wp.v)) * wp.zinv,
                    ];
                    let gpx = t[0] * g_cam[0] + t[3] * g_cam[1] + t[6] * g_cam[2];
                    let gpy = t[1] * g_cam[0] + t[4] * g_cam[1] + t[7] * g_cam[2];
                    let gpz = t[2] * g_cam[0] + t[5] * g_cam[1] + t[8] * g_cam[2];
                    let g_depth = gpx * wp.xn + gpy * wp.yn + gpz;
                    grad_full[s][q] += g_depth * (-(p.max_disp - p.min_disp) * depth * depth);
                    g_intr[0] += (gu * wp.cam[0] * wp.zinv - gpx * wp.p[0] / p.fx) as f64;
                    g_intr[1] += (gv * wp.cam[1] * wp.zinv - gpy * wp.p[1] / p.fy) as f64;
                    g_intr[2] += (gu * wp.cam[2] * wp.zinv - gpx * depth / p.fx) as f64;
                    g_intr[3] += (gv * wp.cam[2] * wp.zinv - gpy * depth / p.fy) as f64;
                    for j in 0..3 {
                        for kk in 0..3 {
                            g_transform[i][j * 3 + kk] += (g_cam[j] * wp.p[kk]) as f64;
                        }
                        g_transform[i][9 + j] += g_cam[j] as f64;
                    }
                }
            }
        }
    }

    // ld_disparity_backward: upsampling adjoint fused with the smoothness backward.
    for s in 0..scales {
        let (lw, lh) = (w >> s, h >> s);
        let plane = (lw * lh) as usize;
        let d = inputs.disparities[s];
        let img = inputs.target_pyramid[s];
        let m = means[s];
        let inv_nx = 1.0 / ((lw - 1) * lh) as f32;
        let inv_ny = 1.0 / (lw * (lh - 1)) as f32;
        let kw = config.smoothness_weight / (1u32 << s) as f32 / scales as f32;
        let raw = smooth_raw(s);
        let lwu = lw as usize;
        let mut grad = vec![0.0f32; plane];
        for y in 0..lh {
            for x in 0..lw {
                let q = (y * lw + x) as usize;
                let mut g = upsample_adjoint_at(&grad_full[s], w, h, lw, lh, x, y);
                let nd = d[q] / m;
                let mut gq = 0.0f32;
                if x + 1 < lw {
                    gq += edge_weight(img, plane, q, q + 1) * sign(nd - d[q + 1] / m) * inv_nx;
                }
                if x > 0 {
                    gq += edge_weight(img, plane, q - 1, q) * sign(nd - d[q - 1] / m) * inv_nx;
                }
                if y + 1 < lh {
                    gq += edge_weight(img, plane, q, q + lwu) * sign(nd - d[q + lwu] / m) * inv_ny;
                }
                if y > 0 {
                    gq += edge_weight(img, plane, q - lwu, q) * sign(nd - d[q - lwu] / m) * inv_ny;
                }
                g += kw * (gq - raw / plane as f32) / m;
                grad[q] = g;
            }
        }
        out.grad_disparities.push(grad);
    }

    // ld_finalize (gradients)
    out.grad_poses = (0..n)
        .map(|i| pose_gradient(&inputs.poses[i].row(), inputs.poses[i].invert, &g_transform[i]))
        .collect();
    out.grad_intrinsics = g_intr.map(|v| v as f32);
    Ok(out)
}
