//! The self-supervised training loss of Monodepth2 on the CPU, forward and analytic backward:
//! depth from sigmoid disparity, warping of the source frames into the target view by depth and
//! relative pose, the SSIM + L1 photometric error, the per-pixel minimum reprojection with
//! auto-masking (identity errors with tie-break noise), and the edge-aware smoothness term,
//! averaged over scales. The gradients with respect to every disparity scale, each pose's six
//! parameters and the intrinsics feed libtorch's backward pass (backward of sum(output · grad)).
//!
//! All kernels are fused rayon passes over bands of rows working in a reusable workspace (no
//! allocation after the first call at a given size). The same code instantiated with `f64` is
//! the double-precision twin the finite-difference checks run against.
//!
//! Conventions: images are planar 3 x H x W, RGB in [0, 1]; pixel centres lie at integer
//! coordinates; ties in the per-pixel minimum go to the first candidate in the order
//! [identity_0 … identity_{n−1}, warped_0 … warped_{n−1}], and the gradient flows only through
//! the winning warped error.

pub(crate) mod geometry;
mod kernels;
mod noise;
pub mod probe;
mod real;
mod types;
mod upsample;
mod validate;

pub use real::Real;
pub use types::{LossConfig, LossError, LossInputs, LossOutputs, Pose6, ScaleLoss};
use validate::validate;

use kernels::{Grid, PhotometricTarget, Taps, WarpBackward, WarpParams};
use rayon::prelude::*;
use upsample::UpsampleAxis;

/// The sizes a workspace is laid out for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Layout {
    width: usize,
    height: usize,
    sources: usize,
    scales: usize,
    rows_per_band: usize,
}

/// Buffers reused from call to call.
#[derive(Debug, Default)]
struct Workspace<T> {
    layout: Option<Layout>,
    rows: Taps,
    cols: Taps,
    /// Per scale ≥ 1: (rows, columns) upsampling tables.
    upsample: Vec<(UpsampleAxis<T>, UpsampleAxis<T>)>,
    target: Vec<T>,
    target_stats: Vec<T>,
    sources: Vec<T>,
    noise: Vec<T>,
    identity_min: Vec<T>,
    identity_arg: Vec<u8>,
    disparity_up: Vec<T>,
    depth: Vec<T>,
    warped: Vec<T>,
    errors: Vec<T>,
    coefs: Vec<T>,
    min_error: Vec<T>,
    winner: Vec<u8>,
    grad_depth: Vec<T>,
    upsample_tmp: Vec<T>,
    smooth_tmp: Vec<T>,
    scratch: Vec<T>,
    warp_params: Vec<WarpParams<T>>,
    warp_sums: Vec<[f64; kernels::WARP_SUMS]>,
}

impl<T: Real> Workspace<T> {
    /// Lays the buffers out for `layout`; the gradient buffers only once gradients are asked for.
    fn ensure(&mut self, layout: Layout, gradients: bool) {
        let coefs = layout.sources * layout.width * layout.height * kernels::COEFS;
        if gradients && self.coefs.len() != coefs {
            self.coefs.clear();
            self.coefs.resize(coefs, T::ZERO);
        }
        if self.layout == Some(layout) {
            return;
        }
        let (w, h, n) = (layout.width, layout.height, layout.sources);
        let hw = w * h;
        let bands = h.div_ceil(layout.rows_per_band);
        self.rows = Taps::new(h);
        self.cols = Taps::new(w);
        self.upsample = (0..layout.scales)
            .map(|s| (UpsampleAxis::new(h >> s, h), UpsampleAxis::new(w >> s, w)))
            .collect();
        let resize = |v: &mut Vec<T>, len: usize| {
            v.clear();
            v.resize(len, T::ZERO);
        };
        resize(&mut self.target, hw * 3);
        resize(&mut self.target_stats, hw * 6);
        resize(&mut self.sources, n * hw * 3);
        resize(&mut self.noise, n * hw);
        resize(&mut self.identity_min, hw);
        self.identity_arg = vec![0; hw];
        resize(&mut self.disparity_up, hw);
        resize(&mut self.depth, hw);
        resize(&mut self.warped, n * hw * 3);
        resize(&mut self.errors, n * hw);
        if self.coefs.len() != coefs {
            self.coefs = Vec::new();
        }
        resize(&mut self.min_error, hw);
        self.winner = vec![0; hw];
        resize(&mut self.grad_depth, hw);
        resize(&mut self.upsample_tmp, hw);
        resize(&mut self.smooth_tmp, hw);
        resize(&mut self.scratch, bands * kernels::WINDOW_SUMS * w);
        self.layout = Some(layout);
    }
}

/// The loss with its configuration and reusable workspace.
#[derive(Debug, Default)]
pub struct SelfSupervisedLoss<T: Real = f32> {
    config: LossConfig,
    workspace: Workspace<T>,
    outputs: LossOutputs<T>,
    calls: u64,
}

/// Planar 3 x H x W → interleaved.
fn interleave<T: Real>(planar: &[T], hw: usize, out: &mut [T]) {
    out.par_chunks_mut(3 * 4096).enumerate().for_each(|(chunk, dst)| {
        let base = chunk * 4096;
        for (k, px) in dst.chunks_mut(3).enumerate() {
            let p = base + k;
            px[0] = planar[p];
            px[1] = planar[hw + p];
            px[2] = planar[2 * hw + p];
        }
    });
}

impl<T: Real> SelfSupervisedLoss<T> {
    pub fn new(config: LossConfig) -> Self {
        Self { config, workspace: Workspace::default(), outputs: LossOutputs::default(), calls: 0 }
    }

    pub fn config(&self) -> &LossConfig {
        &self.config
    }

    /// The loss and its parts, no gradients.
    pub fn forward(&mut self, inputs: &LossInputs<T>) -> Result<&LossOutputs<T>, LossError> {
        self.run(inputs, false)
    }

    /// The loss, its parts and its gradients.
    pub fn forward_backward(
        &mut self,
        inputs: &LossInputs<T>,
    ) -> Result<&LossOutputs<T>, LossError> {
        self.run(inputs, true)
    }

    fn run(
        &mut self,
        inputs: &LossInputs<T>,
        gradients: bool,
    ) -> Result<&LossOutputs<T>, LossError> {
        self.config.validate()?;
        validate(inputs)?;
        let cfg = self.config;
        let (w, h) = (inputs.width, inputs.height);
        let hw = w * h;
        let n = inputs.sources.len();
        let scales = inputs.disparities.len();
        let threads = rayon::current_num_threads().max(1);
        let rows_per_band = h.div_ceil(4 * threads).max(1);
        let layout = Layout { width: w, height: h, sources: n, scales, rows_per_band };
        self.workspace.ensure(layout, gradients);
        let call = self.calls;
        self.calls += 1;
        let grid = Grid { width: w, height: h, rows_per_band };
        let ws = &mut self.workspace;
        let out = &mut self.outputs;

        interleave(inputs.target, hw, &mut ws.target);
        for (i, src) in inputs.sources.iter().enumerate() {
            interleave(src, hw, &mut ws.sources[i * hw * 3..(i + 1) * hw * 3]);
        }
        kernels::window_stats(
            grid,
            &ws.rows,
            &ws.cols,
            &ws.target,
            &mut ws.target_stats,
            &mut ws.scratch,
        );
        let photometric_target = PhotometricTarget {
            grid,
            rows: &ws.rows,
            cols: &ws.cols,
            target: &ws.target,
            stats: &ws.target_stats,
            ssim_weight: T::from_f64(f64::from(cfg.ssim_weight)),
        };

        // Identity errors (unwarped sources + tie-break noise) and their per-pixel minimum.
        if cfg.automask {
            let noise: &[T] = match inputs.tie_break_noise {
                Some(noise) => noise,
                None => {
                    noise::fill_normal(
                        &mut ws.noise,
                        w,
                        f64::from(cfg.tie_break_std),
                        cfg.seed,
                        call,
                    );
                    &ws.noise
                }
            };
            for i in 0..n {
                kernels::photometric_error(
                    &photometric_target,
                    &ws.sources[i * hw * 3..(i + 1) * hw * 3],
                    Some(&noise[i * hw..(i + 1) * hw]),
                    &mut ws.errors[i * hw..(i + 1) * hw],
                    None,
                    &mut ws.scratch,
                );
            }
            let errors = &ws.errors;
            ws.identity_min
                .par_iter_mut()
                .zip(ws.identity_arg.par_iter_mut())
                .enumerate()
                .for_each(|(p, (best, arg))| {
                    let (mut b, mut a) = (errors[p], 0u8);
                    for i in 1..n {
                        let e = errors[i * hw + p];
                        if e < b {
                            b = e;
                            a = i as u8;
                        }
                    }
                    *best = b;
                    *arg = a;
                });
        }

        let intr = inputs.intrinsics;
        let min_disp = 1.0 / f64::from(cfg.max_depth);
        let disp_range = 1.0 / f64::from(cfg.min_depth) - min_disp;
        let (min_disp_t, disp_range_t) = (T::from_f64(min_disp), T::from_f64(disp_range));
        ws.warp_params.clear();
        ws.warp_params.extend(inputs.poses.iter().map(|pose| {
            let f = |v: [T; 3]| [v[0].to_f64(), v[1].to_f64(), v[2].to_f64()];
            let (m, t) = geometry::transform(f(pose.axis_angle), f(pose.translation), pose.invert);
            WarpParams {
                rotation: m.map(|row| row.map(T::from_f64)),
                translation: t.map(T::from_f64),
                fx: intr[0],
                fy: intr[1],
                cx: intr[2],
                cy: intr[3],
            }
        }));
        ws.warp_sums.clear();
        ws.warp_sums.resize(n, [0f64; kernels::WARP_SUMS]);
        let (warp_params, pose_sums) = (&ws.warp_params, &mut ws.warp_sums);

        out.per_scale.clear();
        // One (after `forward`: empty) gradient per scale; buffers keep their capacity.
        out.grad_disparities.resize_with(scales, Vec::new);
        out.grad_disparities.iter_mut().for_each(Vec::clear);
        let pixel_weight = T::from_f64(1.0 / (scales as f64 * hw as f64));
        let (mut photometric_total, mut smoothness_total) = (0f64, 0f64);
        let identity_codes = if cfg.automask { n as u8 } else { 0 };

        for s in 0..scales {
            // Disparity at full resolution → depth.
            if s == 0 {
                ws.disparity_up.copy_from_slice(inputs.disparities[0]);
            } else {
                let (rows, cols) = &ws.upsample[s];
                upsample::upsample(grid, rows, cols, inputs.disparities[s], &mut ws.disparity_up);
            }
            ws.depth.par_iter_mut().zip(&ws.disparity_up).for_each(|(d, &sigma)| {
                *d = T::ONE / (min_disp_t + disp_range_t * sigma);
            });

            // Warp every source and compute its photometric error (+ adjoint coefficients).
            for (i, params) in warp_params.iter().enumerate() {
                let warped = &mut ws.warped[i * hw * 3..(i + 1) * hw * 3];
                kernels::warp(
                    grid,
                    params,
                    &ws.depth,
                    &ws.sources[i * hw * 3..(i + 1) * hw * 3],
                    warped,
                );
                let coefs = gradients
                    .then(|| &mut ws.coefs[i * hw * kernels::COEFS..(i + 1) * hw * kernels::COEFS]);
                kernels::photometric_error(
                    &photometric_target,
                    warped,
                    None,
                    &mut ws.errors[i * hw..(i + 1) * hw],
                    coefs,
                    &mut ws.scratch,
                );
            }

            // Per-pixel minimum over [identity…, warped…]; first minimum wins.
            let (errors, identity_min, identity_arg) =
                (&ws.errors, &ws.identity_min, &ws.identity_arg);
            let automask = cfg.automask;
            let photometric_sum: f64 = ws
                .min_error
                .par_chunks_mut(w)
                .zip(ws.winner.par_chunks_mut(w))
                .enumerate()
                .map(|(y, (min_row, win_row))| {
                    let mut sum = 0f64;
                    for x in 0..w {
                        let p = y * w + x;
                        let (mut best, mut code, first) = if automask {
                            (identity_min[p], identity_arg[p], 0)
                        } else {
                            (errors[p], 0u8, 1)
                        };
                        for i in first..n {
                            let e = errors[i * hw + p];
                            if e < best {
                                best = e;
                                code = identity_codes + i as u8;
                            }
                        }
                        min_row[x] = best;
                        win_row[x] = code;
                        sum += best.to_f64();
                    }
                    sum
                })
                .sum();
            let photometric = photometric_sum / hw as f64;

            if s == 0 {
                out.min_error.clone_from(&ws.min_error);
                out.winner.clone_from(&ws.winner);
                out.automask.clear();
                out.automask.extend(ws.winner.iter().map(|&c| u8::from(c >= identity_codes)));
                let masked = ws.winner.iter().filter(|&&c| c < identity_codes).count();
                out.masked_fraction = T::from_f64(masked as f64 / hw as f64);
            }

            if gradients {
                ws.grad_depth.fill(T::ZERO);
                for (i, params) in warp_params.iter().enumerate() {
                    let args = WarpBackward {
                        photometric: &photometric_target,
                        params: *params,
                        depth: &ws.depth,
                        source: &ws.sources[i * hw * 3..(i + 1) * hw * 3],
                        warped: &ws.warped[i * hw * 3..(i + 1) * hw * 3],
                        coefs: &ws.coefs[i * hw * kernels::COEFS..(i + 1) * hw * kernels::COEFS],
                        winner: &ws.winner,
                        code: identity_codes + i as u8,
                        weight: pixel_weight,
                    };
                    let sums = kernels::warp_backward(&args, &mut ws.grad_depth, &mut ws.scratch);
                    for (a, b) in pose_sums[i].iter_mut().zip(sums) {
                        *a += b;
                    }
                }
                // d depth / d σ = −range · depth².
                ws.grad_depth.par_iter_mut().zip(&ws.depth).for_each(|(g, &d)| {
                    *g = -(*g * disp_range_t * d * d);
                });
                let grad = &mut out.grad_disparities[s];
                grad.clear();
                grad.resize((w >> s) * (h >> s), T::ZERO);
                if s == 0 {
                    grad.copy_from_slice(&ws.grad_depth);
                } else {
                    let (rows, cols) = &ws.upsample[s];
                    upsample::upsample_transpose(
                        grid,
                        rows,
                        cols,
                        &ws.grad_depth,
                        &mut ws.upsample_tmp,
                        grad,
                    );
                }
            }

            let smooth_weight = f64::from(cfg.smoothness_weight) / f64::from(1u32 << s);
            let (sw, sh) = (w >> s, h >> s);
            let smoothness_raw = kernels::smoothness(
                sw,
                sh,
                inputs.disparities[s],
                inputs.target_pyramid[s],
                smooth_weight / scales as f64,
                if gradients {
                    Some((&mut out.grad_disparities[s][..], &mut ws.smooth_tmp[..sw * sh]))
                } else {
                    None
                },
            );
            let smoothness = smoothness_raw * scales as f64;
            out.per_scale.push(ScaleLoss {
                photometric: T::from_f64(photometric),
                smoothness: T::from_f64(smoothness),
            });
            photometric_total += photometric;
            smoothness_total += smoothness;
        }

        out.photometric = T::from_f64(photometric_total / scales as f64);
        out.smoothness = T::from_f64(smoothness_total / scales as f64);
        out.total = T::from_f64((photometric_total + smoothness_total) / scales as f64);
        out.grad_poses.clear();
        out.grad_intrinsics = [T::ZERO; 4];
        if gradients {
            let mut intrinsics = [0f64; 4];
            for (i, pose) in inputs.poses.iter().enumerate() {
                let sums = &pose_sums[i];
                let grad_m = [
                    [sums[0], sums[1], sums[2]],
                    [sums[3], sums[4], sums[5]],
                    [sums[6], sums[7], sums[8]],
                ];
                let f = |v: [T; 3]| [v[0].to_f64(), v[1].to_f64(), v[2].to_f64()];
                let g = geometry::pose_gradient(
                    f(pose.axis_angle),
                    f(pose.translation),
                    pose.invert,
                    &grad_m,
                    [sums[9], sums[10], sums[11]],
                );
                out.grad_poses.push(g.map(T::from_f64));
                for k in 0..4 {
                    intrinsics[k] += sums[12 + k];
                }
            }
            out.grad_intrinsics = intrinsics.map(T::from_f64);
        }
        Ok(&self.outputs)
    }
}

/// The target at each scale's resolution by 2x2 area averaging per level; level 0 is a copy of
/// `target` (planar 3 x H x W).
pub fn target_pyramid(target: &[f32], width: usize, height: usize, scales: usize) -> Vec<Vec<f32>> {
    let mut levels: Vec<Vec<f32>> = Vec::with_capacity(scales);
    if scales == 0 {
        return levels;
    }
    levels.push(target.to_vec());
    let (mut pw, mut ph) = (width, height);
    for _ in 1..scales {
        let (nw, nh) = (pw / 2, ph / 2);
        let prev = levels.last().map(Vec::as_slice).unwrap_or(&[]);
        let mut next = vec![0f32; 3 * nw * nh];
        if prev.len() >= 3 * pw * ph {
            for c in 0..3 {
                for y in 0..nh {
                    for x in 0..nw {
                        let at = |yy: usize, xx: usize| prev[c * pw * ph + yy * pw + xx];
                        next[c * nw * nh + y * nw + x] = 0.25
                            * (at(2 * y, 2 * x)
                                + at(2 * y, 2 * x + 1)
                                + at(2 * y + 1, 2 * x)
                                + at(2 * y + 1, 2 * x + 1));
                    }
                }
            }
        }
        levels.push(next);
        (pw, ph) = (nw, nh);
    }
    levels
}
