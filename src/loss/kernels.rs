//! The fused per-pixel kernels of the loss, each a rayon pass over bands of image rows:
//! reflection-padded 3x3 SSIM + L1 photometric error (with its per-pixel adjoint coefficients),
//! the depth-based warp with border-clamped bilinear sampling, the adjoint of both (scattered
//! back to depth, pose and intrinsics), and the edge-aware smoothness term with its gradient.
//! Bilinear upsampling of the disparity scales and its transpose are in [`super::upsample`].
//!
//! Images inside the kernels are interleaved RGB (`[pixel * 3 + channel]`).

// The kernels walk several parallel arrays with one index; iterator chains would hide that.
#![allow(clippy::needless_range_loop)]

use super::real::Real;
use rayon::prelude::*;

/// SSIM stabilising constants C1 = 0.01², C2 = 0.03².
const C1: f64 = 0.01 * 0.01;
const C2: f64 = 0.03 * 0.03;
/// Window statistics are taken of values minus this offset (images lie in [0, 1]): variances
/// E[y²] − μ² then cancel far less in f32, which keeps SSIM accurate next to C2.
const SHIFT: f64 = 0.5;
/// Added to z before the perspective division.
const PROJECTION_EPS: f64 = 1e-7;
/// Values stored per pixel of the SSIM quantities of a window row: Σy, Σy², Σxy per channel.
pub const WINDOW_SUMS: usize = 9;
/// Adjoint coefficients stored per pixel: d e/d μy, d e/d E[y'²], d e/d E[x'y'] (3 channels
/// each, primes: minus [`SHIFT`])
/// then d e/d y of the L1 part (3 channels).
pub const COEFS: usize = 12;
/// Reductions of the warp backward pass: dL/dM (9), dL/dt (3), dL/d(fx, fy, cx, cy) (4).
pub const WARP_SUMS: usize = 16;

/// Reflection without repeating the edge (index −1 → 1, n → n − 2), for n ≥ 2.
fn reflect(i: isize, n: usize) -> usize {
    let n = n as isize;
    let mut i = i;
    if i < 0 {
        i = -i;
    }
    if i >= n {
        i = 2 * (n - 1) - i;
    }
    i.clamp(0, n - 1) as usize
}

/// The taps of reflection-padded 3-wide mean pooling along one dimension of length n, and of
/// its adjoint (each index with the outputs that read it, repeated as often as they read it).
#[derive(Debug, Default, Clone)]
pub struct Taps {
    pub forward: Vec<[usize; 3]>,
    pub adjoint: Vec<([usize; 6], usize)>,
}

impl Taps {
    pub fn new(n: usize) -> Self {
        let forward: Vec<[usize; 3]> =
            (0..n as isize).map(|i| [reflect(i - 1, n), i as usize, reflect(i + 1, n)]).collect();
        let mut adjoint = vec![([0usize; 6], 0usize); n];
        for (p, taps) in forward.iter().enumerate() {
            for &q in taps {
                let (list, count) = &mut adjoint[q];
                if *count < 6 {
                    list[*count] = p;
                    *count += 1;
                }
            }
        }
        Self { forward, adjoint }
    }
}

/// Image size and band layout shared by all passes.
#[derive(Debug, Clone, Copy)]
pub struct Grid {
    pub width: usize,
    pub height: usize,
    pub rows_per_band: usize,
}

/// Per-pixel mean and variance over the reflection-padded 3x3 window of the interleaved image:
/// `stats[p * 6 + c]` = μ_c − [`SHIFT`], `stats[p * 6 + 3 + c]` = E[x_c²] − μ_c².
pub fn window_stats<T: Real>(
    grid: Grid,
    rows: &Taps,
    cols: &Taps,
    image: &[T],
    stats: &mut [T],
    scratch: &mut [T],
) {
    let w = grid.width;
    let ninth = T::from_f64(1.0 / 9.0);
    let shift = T::from_f64(SHIFT);
    stats
        .par_chunks_mut(grid.rows_per_band * w * 6)
        .zip(scratch.par_chunks_mut(WINDOW_SUMS * w))
        .enumerate()
        .for_each(|(band, (out, vsum))| {
            let row0 = band * grid.rows_per_band;
            for (local, out_row) in out.chunks_mut(w * 6).enumerate() {
                let [t0, t1, t2] = rows.forward[row0 + local];
                for x in 0..w {
                    for c in 0..3 {
                        let a = image[(t0 * w + x) * 3 + c] - shift;
                        let b = image[(t1 * w + x) * 3 + c] - shift;
                        let d = image[(t2 * w + x) * 3 + c] - shift;
                        vsum[x * 6 + c] = a + b + d;
                        vsum[x * 6 + 3 + c] = a * a + b * b + d * d;
                    }
                }
                for x in 0..w {
                    let [l, m, r] = cols.forward[x];
                    for c in 0..3 {
                        let mu = (vsum[l * 6 + c] + vsum[m * 6 + c] + vsum[r * 6 + c]) * ninth;
                        let sq = (vsum[l * 6 + 3 + c] + vsum[m * 6 + 3 + c] + vsum[r * 6 + 3 + c])
                            * ninth;
                        out_row[x * 6 + c] = mu;
                        out_row[x * 6 + 3 + c] = sq - mu * mu;
                    }
                }
            }
        });
}

/// Constant inputs of the photometric error against the target.
pub struct PhotometricTarget<'a, T> {
    pub grid: Grid,
    pub rows: &'a Taps,
    pub cols: &'a Taps,
    /// Interleaved target image.
    pub target: &'a [T],
    /// [`window_stats`] of the target.
    pub stats: &'a [T],
    pub ssim_weight: T,
}

/// pe(target, image) per pixel: ssim_weight·mean_c clamp((1 − SSIM_c)/2, 0, 1) +
/// (1 − ssim_weight)·mean_c |x_c − y_c|, plus `noise` when given. With `coefs`, also writes
/// the per-pixel adjoint coefficients ([`COEFS`] per pixel).
pub fn photometric_error<T: Real>(
    tgt: &PhotometricTarget<T>,
    image: &[T],
    noise: Option<&[T]>,
    error: &mut [T],
    coefs: Option<&mut [T]>,
    scratch: &mut [T],
) {
    let grid = tgt.grid;
    let w = grid.width;
    let band_pixels = grid.rows_per_band * w;
    let process = |band: usize, err: &mut [T], mut coef: Option<&mut [T]>, vsum: &mut [T]| {
        let row0 = band * grid.rows_per_band;
        let ninth = T::from_f64(1.0 / 9.0);
        let third = T::from_f64(1.0 / 3.0);
        let two = T::from_f64(2.0);
        let half = T::from_f64(0.5);
        let (c1, c2) = (T::from_f64(C1), T::from_f64(C2));
        let shift = T::from_f64(SHIFT);
        let ssim_w = tgt.ssim_weight * third;
        let l1_w = (T::ONE - tgt.ssim_weight) * third;
        for (local, err_row) in err.chunks_mut(w).enumerate() {
            let y = row0 + local;
            let [t0, t1, t2] = tgt.rows.forward[y];
            for x in 0..w {
                let (i0, i1, i2) = ((t0 * w + x) * 3, (t1 * w + x) * 3, (t2 * w + x) * 3);
                let v = &mut vsum[x * WINDOW_SUMS..(x + 1) * WINDOW_SUMS];
                for c in 0..3 {
                    let (a, b, d) =
                        (image[i0 + c] - shift, image[i1 + c] - shift, image[i2 + c] - shift);
                    let (ta, tb, td) = (
                        tgt.target[i0 + c] - shift,
                        tgt.target[i1 + c] - shift,
                        tgt.target[i2 + c] - shift,
                    );
                    v[c] = a + b + d;
                    v[3 + c] = a * a + b * b + d * d;
                    v[6 + c] = a * ta + b * tb + d * td;
                }
            }
            for x in 0..w {
                let [l, m, r] = tgt.cols.forward[x];
                let p = y * w + x;
                let st = &tgt.stats[p * 6..p * 6 + 6];
                let mut ssim_sum = T::ZERO;
                let mut l1_sum = T::ZERO;
                let mut local_coefs = [T::ZERO; COEFS];
                for c in 0..3 {
                    let sum = |k: usize| {
                        vsum[l * WINDOW_SUMS + k]
                            + vsum[m * WINDOW_SUMS + k]
                            + vsum[r * WINDOW_SUMS + k]
                    };
                    // Shifted (') window moments; the means themselves are unshifted.
                    let my_s = sum(c) * ninth;
                    let eyy = sum(3 + c) * ninth;
                    let exy = sum(6 + c) * ninth;
                    let (mx_s, var_x) = (st[c], st[3 + c]);
                    let (mx, my) = (mx_s + shift, my_s + shift);
                    let var_y = eyy - my_s * my_s;
                    let cov = exy - mx_s * my_s;
                    let n1 = two * mx * my + c1;
                    let n2 = two * cov + c2;
                    let d1 = mx * mx + my * my + c1;
                    let d2 = var_x + var_y + c2;
                    let (inv_d1, inv_d2) = (T::ONE / d1, T::ONE / d2);
                    let inv_den = inv_d1 * inv_d2;
                    let ssim = n1 * n2 * inv_den;
                    let dissim = (T::ONE - ssim) * half;
                    let inside = dissim >= T::ZERO && dissim <= T::ONE;
                    let clamped = if dissim < T::ZERO {
                        T::ZERO
                    } else if dissim > T::ONE {
                        T::ONE
                    } else {
                        dissim
                    };
                    ssim_sum += clamped;
                    let xv = tgt.target[p * 3 + c];
                    let yv = image[p * 3 + c];
                    let diff = xv - yv;
                    l1_sum += diff.abs();
                    if coef.is_some() {
                        let k = if inside { -half * ssim_w } else { T::ZERO };
                        let d_my = (two * mx * n2 - two * mx_s * n1) * inv_den
                            - ssim * (two * my * inv_d1 - two * my_s * inv_d2);
                        local_coefs[c] = k * d_my;
                        local_coefs[3 + c] = k * (-ssim * inv_d2);
                        local_coefs[6 + c] = k * (two * n1 * inv_den);
                        local_coefs[9 + c] = -l1_w * diff.sign();
                    }
                }
                let mut e = ssim_w * ssim_sum + l1_w * l1_sum;
                if let Some(noise) = noise {
                    e += noise[p];
                }
                err_row[x] = e;
                if let Some(coef) = coef.as_deref_mut() {
                    let o = (local * w + x) * COEFS;
                    coef[o..o + COEFS].copy_from_slice(&local_coefs);
                }
            }
        }
    };
    match coefs {
        Some(coefs) => error
            .par_chunks_mut(band_pixels)
            .zip(coefs.par_chunks_mut(band_pixels * COEFS))
            .zip(scratch.par_chunks_mut(WINDOW_SUMS * w))
            .enumerate()
            .for_each(|(band, ((err, coef), vsum))| process(band, err, Some(coef), vsum)),
        None => error
            .par_chunks_mut(band_pixels)
            .zip(scratch.par_chunks_mut(WINDOW_SUMS * w))
            .enumerate()
            .for_each(|(band, (err, vsum))| process(band, err, None, vsum)),
    }
}

/// Camera and pose of one warp: Q = M·(D·K⁻¹·[x, y, 1]) + t, p' = π(K·Q).
#[derive(Debug, Clone, Copy)]
pub struct WarpParams<T> {
    pub rotation: [[T; 3]; 3],
    pub translation: [T; 3],
    pub fx: T,
    pub fy: T,
    pub cx: T,
    pub cy: T,
}

/// Border-clamped sampling coordinate: (lower index, fraction, d clamped / d coordinate).
#[inline(always)]
fn clamp_coordinate<T: Real>(u: T, n: usize) -> (usize, T, T) {
    let max = T::from_usize(n - 1);
    if !u.is_finite() || u <= T::ZERO {
        return (0, T::ZERO, T::ZERO);
    }
    if u >= max {
        return (n - 2, T::ONE, T::ZERO);
    }
    // u > 0 here, so truncation is the floor.
    let i0 = u.to_index().min(n - 2);
    (i0, u - T::from_usize(i0), T::ONE)
}

/// Projection of the pixel (x, y) at depth `depth`: (Q, 1 / (Qz + eps), u, v).
#[inline(always)]
fn project<T: Real>(p: &WarpParams<T>, ray: [T; 3], depth: T) -> ([T; 3], T, T, T) {
    let m = &p.rotation;
    let q = [
        depth * (m[0][0] * ray[0] + m[0][1] * ray[1] + m[0][2]) + p.translation[0],
        depth * (m[1][0] * ray[0] + m[1][1] * ray[1] + m[1][2]) + p.translation[1],
        depth * (m[2][0] * ray[0] + m[2][1] * ray[1] + m[2][2]) + p.translation[2],
    ];
    let inv_z = T::ONE / (q[2] + T::from_f64(PROJECTION_EPS));
    let u = (p.fx * q[0] + p.cx * q[2]) * inv_z;
    let v = (p.fy * q[1] + p.cy * q[2]) * inv_z;
    (q, inv_z, u, v)
}

/// Warps the interleaved `source` into the target view using `depth`; writes interleaved RGB.
pub fn warp<T: Real>(
    grid: Grid,
    params: &WarpParams<T>,
    depth: &[T],
    source: &[T],
    warped: &mut [T],
) {
    let (w, h) = (grid.width, grid.height);
    warped.par_chunks_mut(grid.rows_per_band * w * 3).enumerate().for_each(|(band, out)| {
        let row0 = band * grid.rows_per_band;
        for (local, out_row) in out.chunks_mut(w * 3).enumerate() {
            let y = row0 + local;
            let ray_y = (T::from_usize(y) - params.cy) / params.fy;
            for x in 0..w {
                let ray = [(T::from_usize(x) - params.cx) / params.fx, ray_y, T::ONE];
                let (_, _, u, v) = project(params, ray, depth[y * w + x]);
                let (x0, fx, _) = clamp_coordinate(u, w);
                let (y0, fy, _) = clamp_coordinate(v, h);
                let i00 = (y0 * w + x0) * 3;
                let i10 = i00 + w * 3;
                for c in 0..3 {
                    let top = source[i00 + c] + fx * (source[i00 + 3 + c] - source[i00 + c]);
                    let bottom = source[i10 + c] + fx * (source[i10 + 3 + c] - source[i10 + c]);
                    out_row[x * 3 + c] = top + fy * (bottom - top);
                }
            }
        }
    });
}

/// Inputs of the adjoint of one source's warp and photometric error.
pub struct WarpBackward<'a, T> {
    pub photometric: &'a PhotometricTarget<'a, T>,
    pub params: WarpParams<T>,
    pub depth: &'a [T],
    pub source: &'a [T],
    pub warped: &'a [T],
    pub coefs: &'a [T],
    pub winner: &'a [u8],
    /// The winner code of this source's warped error.
    pub code: u8,
    /// d loss / d (per-pixel minimum) — the same for every pixel.
    pub weight: T,
}

/// Accumulates d loss / d depth into `grad_depth` for the pixels whose minimum is this source's
/// warped error (through the 3x3 SSIM windows around them) and returns the reductions
/// ([`WARP_SUMS`]: d/dM row-major, d/dt, d/d(fx, fy, cx, cy)).
pub fn warp_backward<T: Real>(
    args: &WarpBackward<T>,
    grad_depth: &mut [T],
    scratch: &mut [T],
) -> [f64; WARP_SUMS] {
    let pt = args.photometric;
    let grid = pt.grid;
    let (w, h) = (grid.width, grid.height);
    let p = &args.params;
    let ninth = T::from_f64(1.0 / 9.0);
    let two = T::from_f64(2.0);
    let shift = T::from_f64(SHIFT);
    grad_depth
        .par_chunks_mut(grid.rows_per_band * w)
        .zip(scratch.par_chunks_mut(WINDOW_SUMS * w))
        .enumerate()
        .map(|(band, (gd, vsum))| {
            let mut acc = [0f64; WARP_SUMS];
            let row0 = band * grid.rows_per_band;
            for (local, gd_row) in gd.chunks_mut(w).enumerate() {
                let y = row0 + local;
                vsum.fill(T::ZERO);
                let (taps, count) = pt.rows.adjoint[y];
                for &row in &taps[..count] {
                    for x in 0..w {
                        let q = row * w + x;
                        if args.winner[q] == args.code {
                            let src = &args.coefs[q * COEFS..q * COEFS + WINDOW_SUMS];
                            let dst = &mut vsum[x * WINDOW_SUMS..(x + 1) * WINDOW_SUMS];
                            for k in 0..WINDOW_SUMS {
                                dst[k] += src[k];
                            }
                        }
                    }
                }
                let ray_y = (T::from_usize(y) - p.cy) / p.fy;
                for x in 0..w {
                    let q = y * w + x;
                    let mut sums = [T::ZERO; WINDOW_SUMS];
                    let (ctaps, ccount) = pt.cols.adjoint[x];
                    for &col in &ctaps[..ccount] {
                        for k in 0..WINDOW_SUMS {
                            sums[k] += vsum[col * WINDOW_SUMS + k];
                        }
                    }
                    let own = args.winner[q] == args.code;
                    let mut grad_image = [T::ZERO; 3];
                    let mut any = false;
                    for c in 0..3 {
                        let xv = pt.target[q * 3 + c] - shift;
                        let yv = args.warped[q * 3 + c] - shift;
                        let mut g = (sums[c] + two * yv * sums[3 + c] + xv * sums[6 + c]) * ninth;
                        if own {
                            g += args.coefs[q * COEFS + 9 + c];
                        }
                        grad_image[c] = g * args.weight;
                        any |= g != T::ZERO;
                    }
                    if !any {
                        continue;
                    }
                    let ray = [(T::from_usize(x) - p.cx) / p.fx, ray_y, T::ONE];
                    let depth = args.depth[q];
                    let (qv, inv_z, u, v) = project(p, ray, depth);
                    let (x0, fx, dx) = clamp_coordinate(u, w);
                    let (y0, fy, dy) = clamp_coordinate(v, h);
                    if dx == T::ZERO && dy == T::ZERO {
                        continue;
                    }
                    let i00 = (y0 * w + x0) * 3;
                    let i10 = i00 + w * 3;
                    let (mut g_u, mut g_v) = (T::ZERO, T::ZERO);
                    for c in 0..3 {
                        let (s00, s01) = (args.source[i00 + c], args.source[i00 + 3 + c]);
                        let (s10, s11) = (args.source[i10 + c], args.source[i10 + 3 + c]);
                        let d_dx = (T::ONE - fy) * (s01 - s00) + fy * (s11 - s10);
                        let d_dy = (T::ONE - fx) * (s10 - s00) + fx * (s11 - s01);
                        g_u += grad_image[c] * d_dx;
                        g_v += grad_image[c] * d_dy;
                    }
                    g_u *= dx;
                    g_v *= dy;
                    let g_q = [
                        g_u * p.fx * inv_z,
                        g_v * p.fy * inv_z,
                        (g_u * (p.cx - u) + g_v * (p.cy - v)) * inv_z,
                    ];
                    let m = &p.rotation;
                    let m_ray = [
                        m[0][0] * ray[0] + m[0][1] * ray[1] + m[0][2],
                        m[1][0] * ray[0] + m[1][1] * ray[1] + m[1][2],
                        m[2][0] * ray[0] + m[2][1] * ray[1] + m[2][2],
                    ];
                    gd_row[x] += g_q[0] * m_ray[0] + g_q[1] * m_ray[1] + g_q[2] * m_ray[2];
                    let point = [depth * ray[0], depth * ray[1], depth];
                    for i in 0..3 {
                        let gq = g_q[i].to_f64();
                        for j in 0..3 {
                            acc[i * 3 + j] += gq * point[j].to_f64();
                        }
                        acc[9 + i] += gq;
                    }
                    // Intrinsics: through the projection and through the back-projection K⁻¹.
                    let g_px = g_q[0] * m[0][0] + g_q[1] * m[1][0] + g_q[2] * m[2][0];
                    let g_py = g_q[0] * m[0][1] + g_q[1] * m[1][1] + g_q[2] * m[2][1];
                    let dx_ray = depth / p.fx;
                    let dy_ray = depth / p.fy;
                    acc[12] += (g_u * qv[0] * inv_z - g_px * dx_ray * ray[0]).to_f64();
                    acc[13] += (g_v * qv[1] * inv_z - g_py * dy_ray * ray[1]).to_f64();
                    acc[14] += (g_u * qv[2] * inv_z - g_px * dx_ray).to_f64();
                    acc[15] += (g_v * qv[2] * inv_z - g_py * dy_ray).to_f64();
                }
            }
            acc
        })
        .reduce(
            || [0f64; WARP_SUMS],
            |mut a, b| {
                for (x, y) in a.iter_mut().zip(b) {
                    *x += y;
                }
                a
            },
        )
}

/// Edge-aware smoothness of one scale: `weight` · (mean over the (h)x(w−1) horizontal
/// differences of |∂x σ*|·exp(−mean_c |∂x I|) + the same vertically), σ* = σ / (mean σ + 1e-7).
/// Returns the weighted value; with `grad`, adds d value / d σ to it (`grad_norm` is scratch of
/// the map's size).
pub fn smoothness<T: Real>(
    width: usize,
    height: usize,
    disparity: &[T],
    image: &[T],
    weight: f64,
    grad: Option<(&mut [T], &mut [T])>,
) -> f64 {
    let (w, h) = (width, height);
    let plane = w * h;
    let mean = disparity.par_iter().map(|v| v.to_f64()).sum::<f64>() / plane as f64;
    let norm = T::from_f64(mean) + T::from_f64(1e-7);
    let inv_norm = T::ONE / norm;
    let third = T::from_f64(1.0 / 3.0);
    let edge_x = |y: usize, x: usize| {
        let i = y * w + x;
        let d = (image[i] - image[i + 1]).abs()
            + (image[plane + i] - image[plane + i + 1]).abs()
            + (image[2 * plane + i] - image[2 * plane + i + 1]).abs();
        (-(d * third)).exp()
    };
    let edge_y = |y: usize, x: usize| {
        let i = y * w + x;
        let d = (image[i] - image[i + w]).abs()
            + (image[plane + i] - image[plane + i + w]).abs()
            + (image[2 * plane + i] - image[2 * plane + i + w]).abs();
        (-(d * third)).exp()
    };
    let wx = weight / (h * (w - 1)) as f64;
    let wy = weight / ((h - 1) * w) as f64;
    let (sum_x, sum_y) = (0..h)
        .into_par_iter()
        .map(|y| {
            let row = &disparity[y * w..(y + 1) * w];
            let (mut sx, mut sy) = (0f64, 0f64);
            for x in 0..w - 1 {
                sx += ((row[x] * inv_norm - row[x + 1] * inv_norm).abs() * edge_x(y, x)).to_f64();
            }
            if y + 1 < h {
                let below = &disparity[(y + 1) * w..(y + 2) * w];
                for x in 0..w {
                    sy += ((row[x] * inv_norm - below[x] * inv_norm).abs() * edge_y(y, x)).to_f64();
                }
            }
            (sx, sy)
        })
        .reduce(|| (0.0, 0.0), |a, b| (a.0 + b.0, a.1 + b.1));
    let value = wx * sum_x + wy * sum_y;
    if let Some((grad, grad_norm)) = grad {
        let (cx, cy) = (T::from_f64(wx), T::from_f64(wy));
        let star = |i: usize| disparity[i] * inv_norm;
        // d value / d σ*, gathered per pixel from the differences that touch it.
        grad_norm.par_chunks_mut(w).enumerate().for_each(|(y, g_row)| {
            for (x, g) in g_row.iter_mut().enumerate() {
                let i = y * w + x;
                let mut acc = T::ZERO;
                if x + 1 < w {
                    acc += cx * (star(i) - star(i + 1)).sign() * edge_x(y, x);
                }
                if x > 0 {
                    acc -= cx * (star(i - 1) - star(i)).sign() * edge_x(y, x - 1);
                }
                if y + 1 < h {
                    acc += cy * (star(i) - star(i + w)).sign() * edge_y(y, x);
                }
                if y > 0 {
                    acc -= cy * (star(i - w) - star(i)).sign() * edge_y(y - 1, x);
                }
                *g = acc;
            }
        });
        let dot = grad_norm.par_iter().zip(disparity).map(|(g, d)| (*g * *d).to_f64()).sum::<f64>();
        let through_mean = T::from_f64(dot / (norm.to_f64() * norm.to_f64() * plane as f64));
        grad.par_iter_mut()
            .zip(&*grad_norm)
            .for_each(|(g, gn)| *g += *gn * inv_norm - through_mean);
    }
    value
}
