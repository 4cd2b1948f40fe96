//! Parity of the CPU loss with libtorch autograd: the same Monodepth2 formulation composed from
//! tch ops (grid_sample with align_corners = true and border padding, reflection padding + 3x3
//! average pooling for SSIM, bilinear upsampling, min over identity and warped errors) gives the
//! reference loss and, through autograd, the reference gradients.
#![cfg(feature = "torch")]

use livedepth::loss::{LossConfig, LossInputs, Pose6, SelfSupervisedLoss, target_pyramid};
use tch::{Device, Kind, Tensor};

struct Lcg(u64);
impl Lcg {
    fn next(&mut self) -> f32 {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        ((self.0 >> 40) as f32) / ((1u64 << 24) as f32)
    }
}

/// A smooth, textured scene image seen with a sub-pixel offset (planar 3 x h x w).
fn scene(w: usize, h: usize, dx: f32, dy: f32, rng: &mut Lcg) -> Vec<f32> {
    let mut img = vec![0f32; 3 * w * h];
    for c in 0..3 {
        for y in 0..h {
            for x in 0..w {
                let (xf, yf) = (x as f32 + dx, y as f32 + dy);
                let v = 0.5
                    + 0.2 * (0.31 * xf + c as f32).sin() * (0.17 * yf).cos()
                    + 0.15 * (0.07 * (xf + 2.0 * yf) + 1.3 * c as f32).sin()
                    + 0.1 * (0.9 * xf - 0.5 * yf).sin();
                img[c * w * h + y * w + x] = (v + 0.02 * (rng.next() - 0.5)).clamp(0.0, 1.0);
            }
        }
    }
    img
}

/// The reference runs in double precision so that it is the truth our f32 kernels are held to.
static DOUBLE: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(true);
fn kind() -> Kind {
    if DOUBLE.load(std::sync::atomic::Ordering::SeqCst) { Kind::Double } else { Kind::Float }
}

fn tensor(data: &[f32], shape: &[i64]) -> Tensor {
    Tensor::from_slice(data).view(shape).to_kind(kind())
}

fn to_vec(t: &Tensor) -> Vec<f64> {
    let t = t.to_kind(Kind::Double).contiguous().view([-1]);
    Vec::<f64>::try_from(&t).expect("double tensor")
}

/// SSIM dissimilarity per channel, 1 x 3 x h x w.
fn ssim(x: &Tensor, y: &Tensor) -> Tensor {
    let (c1, c2) = (0.01f64.powi(2), 0.03f64.powi(2));
    let pool = |t: &Tensor| {
        t.reflection_pad2d([1, 1, 1, 1]).avg_pool2d([3, 3], [1, 1], [0, 0], false, true, None)
    };
    let (mu_x, mu_y) = (pool(x), pool(y));
    let sigma_x = pool(&(x * x)) - &mu_x * &mu_x;
    let sigma_y = pool(&(y * y)) - &mu_y * &mu_y;
    let sigma_xy = pool(&(x * y)) - &mu_x * &mu_y;
    let n = (&mu_x * &mu_y * 2.0 + c1) * (sigma_xy * 2.0 + c2);
    let d = (&mu_x * &mu_x + &mu_y * &mu_y + c1) * (sigma_x + sigma_y + c2);
    ((-(n / d) + 1.0) / 2.0).clamp(0.0, 1.0)
}

fn photometric(target: &Tensor, image: &Tensor) -> Tensor {
    let ssim_part = ssim(image, target).mean_dim(&[1i64][..], true, kind());
    let l1 = (target - image).abs().mean_dim(&[1i64][..], true, kind());
    ssim_part * f64::from(0.85f32) + l1 * (1.0 - f64::from(0.85f32))
}

fn rotation(w: &Tensor) -> Tensor {
    let theta2 = (w * w).sum(kind());
    let theta = theta2.sqrt();
    let a = theta.sin() / &theta;
    let b = (-theta.cos() + 1.0) / &theta2;
    let (x, y, z) = (w.get(0), w.get(1), w.get(2));
    let zero = x.zeros_like();
    let k =
        Tensor::stack(&[&zero, &(-&z), &y, &z, &zero, &(-&x), &(-&y), &x, &zero], 0).view([3, 3]);
    Tensor::eye(3, (kind(), Device::Cpu)) + &k * a + k.matmul(&k) * b
}

struct Reference {
    total: f64,
    min_error: Vec<f64>,
    winner: Vec<i64>,
    grad_disparities: Vec<Vec<f64>>,
    grad_poses: Vec<Vec<f64>>,
    grad_intrinsics: Vec<f64>,
}

#[allow(clippy::too_many_arguments)]
fn run_reference(
    w: usize,
    h: usize,
    target: &[f32],
    sources: &[Vec<f32>],
    disparities: &[Vec<f32>],
    pyramid: &[Vec<f32>],
    poses: &[Pose6],
    intrinsics: [f32; 4],
    noise: &[f32],
) -> Reference {
    let (wi, hi) = (w as i64, h as i64);
    let n = sources.len();
    let scales = disparities.len();
    let target_t = tensor(target, &[1, 3, hi, wi]);
    let disp_t: Vec<Tensor> = disparities
        .iter()
        .enumerate()
        .map(|(s, d)| tensor(d, &[1, 1, hi >> s, wi >> s]).set_requires_grad(true))
        .collect();
    let pose_t: Vec<Tensor> = poses
        .iter()
        .map(|p| {
            let v = [p.axis_angle, p.translation].concat();
            tensor(&v, &[6]).set_requires_grad(true)
        })
        .collect();
    let k_t = tensor(&intrinsics, &[4]).set_requires_grad(true);
    let (fx, fy, cx, cy) = (k_t.get(0), k_t.get(1), k_t.get(2), k_t.get(3));
    let xs = Tensor::arange(wi, (kind(), Device::Cpu))
        .view([1, wi])
        .expand([hi, wi], false)
        .reshape([-1]);
    let ys = Tensor::arange(hi, (kind(), Device::Cpu))
        .view([hi, 1])
        .expand([hi, wi], false)
        .reshape([-1]);
    let ray = Tensor::stack(&[(&xs - &cx) / &fx, (&ys - &cy) / &fy, xs.ones_like()], 0);
    let transforms: Vec<(Tensor, Tensor)> = poses
        .iter()
        .zip(&pose_t)
        .map(|(p, t)| {
            let r = rotation(&t.narrow(0, 0, 3));
            let tr = t.narrow(0, 3, 3).view([3, 1]);
            if p.invert {
                let rt = r.transpose(0, 1);
                let tt = -rt.matmul(&tr);
                (rt, tt)
            } else {
                (r, tr)
            }
        })
        .collect();
    let source_t: Vec<Tensor> = sources.iter().map(|s| tensor(s, &[1, 3, hi, wi])).collect();
    let noise_t = tensor(noise, &[1, n as i64, hi, wi]);
    let identity: Vec<Tensor> = (0..n)
        .map(|i| photometric(&target_t, &source_t[i]) + noise_t.narrow(1, i as i64, 1))
        .collect();
    // The config holds f32 values: use exactly those.
    let (min_disp, max_disp) = (1.0 / 100.0f64, 1.0 / f64::from(0.1f32));
    let mut total = Tensor::zeros([], (kind(), Device::Cpu));
    let mut min0 = None;
    for s in 0..scales {
        let up = if s == 0 {
            disp_t[0].shallow_clone()
        } else {
            disp_t[s].upsample_bilinear2d([hi, wi], false, None, None)
        };
        let depth = (up * (max_disp - min_disp) + min_disp).reciprocal().view([1, -1]);
        let mut candidates: Vec<Tensor> = identity.iter().map(|t| t.shallow_clone()).collect();
        for i in 0..n {
            let (m, t) = &transforms[i];
            let q = m.matmul(&(&ray * &depth)) + t;
            let z = q.get(2) + 1e-7;
            let u = (&fx * q.get(0) + &cx * q.get(2)) / &z;
            let v = (&fy * q.get(1) + &cy * q.get(2)) / &z;
            let un = (u / (wi - 1) as f64 - 0.5) * 2.0;
            let vn = (v / (hi - 1) as f64 - 0.5) * 2.0;
            let grid = Tensor::stack(&[un, vn], -1).view([1, hi, wi, 2]);
            let warped = source_t[i].grid_sampler_2d(&grid, 0, 1, true);
            candidates.push(photometric(&target_t, &warped));
        }
        let (mins, idx) = Tensor::cat(&candidates, 1).min_dim(1, false);
        let mut scale_loss = mins.mean(kind());
        let d = &disp_t[s];
        let norm = d / (d.mean(kind()) + 1e-7);
        let img = tensor(&pyramid[s], &[1, 3, hi >> s, wi >> s]);
        let (sw, sh) = (wi >> s, hi >> s);
        let gx = (norm.narrow(3, 0, sw - 1) - norm.narrow(3, 1, sw - 1)).abs();
        let gy = (norm.narrow(2, 0, sh - 1) - norm.narrow(2, 1, sh - 1)).abs();
        let ix = (img.narrow(3, 0, sw - 1) - img.narrow(3, 1, sw - 1)).abs().mean_dim(
            &[1i64][..],
            true,
            kind(),
        );
        let iy = (img.narrow(2, 0, sh - 1) - img.narrow(2, 1, sh - 1)).abs().mean_dim(
            &[1i64][..],
            true,
            kind(),
        );
        let smooth = (gx * (-ix).exp()).mean(kind()) + (gy * (-iy).exp()).mean(kind());
        scale_loss += smooth * (f64::from(1e-3f32) / (1u32 << s) as f64);
        total += scale_loss;
        if s == 0 {
            min0 = Some((mins.detach(), idx));
        }
    }
    let total = total / scales as f64;
    total.backward();
    let (mins, idx) = min0.expect("at least one scale");
    Reference {
        total: total.double_value(&[]),
        min_error: to_vec(&mins),
        winner: Vec::<i64>::try_from(&idx.view([-1])).expect("indices"),
        grad_disparities: disp_t.iter().map(|d| to_vec(&d.grad())).collect(),
        grad_poses: pose_t.iter().map(|p| to_vec(&p.grad())).collect(),
        grad_intrinsics: to_vec(&k_t.grad()),
    }
}

fn widen<T: Copy + Into<f64>>(v: &[T]) -> Vec<f64> {
    v.iter().map(|&x| x.into()).collect()
}

/// ‖a − b‖₂ / ‖b‖₂.
fn rel_l2(a: &[f64], b: &[f64]) -> f64 {
    assert_eq!(a.len(), b.len());
    let diff: f64 = a.iter().zip(b).map(|(x, y)| (x - y).powi(2)).sum();
    let norm: f64 = b.iter().map(|y| y.powi(2)).sum();
    (diff / norm).sqrt()
}

fn max_diff(a: &[f64], b: &[f64]) -> f64 {
    assert_eq!(a.len(), b.len());
    a.iter().zip(b).fold(0f64, |m, (x, y)| m.max((x - y).abs()))
}

#[test]
fn loss_and_gradients_match_libtorch_autograd() {
    let (w, h, scales) = (160usize, 96usize, 4usize);
    let mut rng = Lcg(42);
    let target = scene(w, h, 0.0, 0.0, &mut rng);
    let sources = vec![scene(w, h, 1.7, -0.6, &mut rng), scene(w, h, -2.2, 0.9, &mut rng)];
    // Smooth disparity fields (depths about 0.4 to 10 m).
    let disparities: Vec<Vec<f32>> = (0..scales)
        .map(|s| {
            let (sw, sh) = (w >> s, h >> s);
            (0..sw * sh)
                .map(|i| {
                    let (x, y) = ((i % sw) as f32 / sw as f32, (i / sw) as f32 / sh as f32);
                    0.02 + 0.2 * (0.5 + 0.5 * (3.0 * x + 2.0 * y).sin()) + 0.01 * rng.next()
                })
                .collect()
        })
        .collect();
    let pyramid = target_pyramid(&target, w, h, scales);
    let poses = [
        Pose6 { axis_angle: [0.01, -0.02, 0.005], translation: [0.12, -0.03, 0.05], invert: true },
        Pose6 { axis_angle: [-0.015, 0.01, 0.01], translation: [-0.1, 0.02, -0.06], invert: false },
    ];
    let intrinsics = [0.58 * w as f32, 1.92 * h as f32, 0.5 * w as f32 - 0.3, 0.5 * h as f32 + 0.2];
    let noise: Vec<f32> = (0..2 * w * h).map(|_| 2e-5 * (rng.next() - 0.5)).collect();

    let run = |double: bool| {
        DOUBLE.store(double, std::sync::atomic::Ordering::SeqCst);
        run_reference(w, h, &target, &sources, &disparities, &pyramid, &poses, intrinsics, &noise)
    };
    let torch64 = run(true);
    let torch32 = run(false);

    // Our kernels instantiated in f64 against libtorch autograd in f64: the formulation is exact.
    let f64s = |v: &[Vec<f32>]| -> Vec<Vec<f64>> { v.iter().map(|x| widen(x)).collect() };
    let (t64, s64, d64, p64, n64) =
        (widen(&target), f64s(&sources), f64s(&disparities), f64s(&pyramid), widen(&noise));
    let sr: Vec<&[f64]> = s64.iter().map(Vec::as_slice).collect();
    let dr: Vec<&[f64]> = d64.iter().map(Vec::as_slice).collect();
    let pr: Vec<&[f64]> = p64.iter().map(Vec::as_slice).collect();
    let poses64: Vec<Pose6<f64>> = poses
        .iter()
        .map(|p| Pose6 {
            axis_angle: p.axis_angle.map(f64::from),
            translation: p.translation.map(f64::from),
            invert: p.invert,
        })
        .collect();
    let inputs64 = LossInputs {
        width: w,
        height: h,
        target: &t64,
        sources: &sr,
        disparities: &dr,
        target_pyramid: &pr,
        poses: &poses64,
        intrinsics: intrinsics.map(f64::from),
        tie_break_noise: Some(&n64),
    };
    let mut loss64 = SelfSupervisedLoss::<f64>::new(LossConfig::default());
    let ours64 = loss64.forward_backward(&inputs64).expect("valid inputs");
    println!("f64: ours {} libtorch {}", ours64.total, torch64.total);
    assert!((ours64.total - torch64.total).abs() < 1e-10);
    assert!(max_diff(&ours64.min_error, &torch64.min_error) < 1e-10);
    for s in 0..scales {
        let rel = rel_l2(&ours64.grad_disparities[s], &torch64.grad_disparities[s]);
        println!("f64 scale {s}: disparity gradient relative L2 difference {rel:e}");
        assert!(rel < 1e-10, "f64 scale {s}: {rel}");
    }
    for (a, b) in ours64.grad_poses.iter().zip(&torch64.grad_poses) {
        assert!(rel_l2(a, b) < 1e-10, "f64 pose {a:?} vs {b:?}");
    }
    assert!(rel_l2(&ours64.grad_intrinsics, &torch64.grad_intrinsics) < 1e-10);

    // The f32 hot path against libtorch's f32 autograd (and both against the f64 truth).
    let source_refs: Vec<&[f32]> = sources.iter().map(Vec::as_slice).collect();
    let disp_refs: Vec<&[f32]> = disparities.iter().map(Vec::as_slice).collect();
    let pyr_refs: Vec<&[f32]> = pyramid.iter().map(Vec::as_slice).collect();
    let inputs = LossInputs {
        width: w,
        height: h,
        target: &target,
        sources: &source_refs,
        disparities: &disp_refs,
        target_pyramid: &pyr_refs,
        poses: &poses,
        intrinsics,
        tie_break_noise: Some(&noise),
    };
    let mut loss = SelfSupervisedLoss::new(LossConfig::default());
    let ours = loss.forward_backward(&inputs).expect("valid inputs");
    println!("f32: ours {} libtorch {} (f64 truth {})", ours.total, torch32.total, torch64.total);
    assert!((f64::from(ours.total) - torch32.total).abs() < 1e-5);
    assert!((f64::from(ours.total) - torch64.total).abs() < 1e-5);
    // Per pixel, f32 SSIM variances (E[y²] − μ² next to C2 = 9e-4) keep ~1e-5 relative.
    let min_diff = max_diff(&widen(&ours.min_error), &torch32.min_error);
    println!("f32 per-pixel minimum: max difference {min_diff:e}");
    assert!(min_diff < 1e-4);
    let same_winner =
        ours.winner.iter().zip(&torch32.winner).filter(|(a, b)| i64::from(**a) == **b).count();
    assert!(
        same_winner as f64 > 0.999 * (w * h) as f64,
        "winners agree on {same_winner} of {}",
        w * h
    );
    // The scenario is realistic: warped errors win most pixels, some are auto-masked.
    assert!(
        ours.masked_fraction > 0.0 && ours.masked_fraction < 0.5,
        "masked {}",
        ours.masked_fraction
    );
    // Gradients: all scales together within 1e-4 (relative L2) of libtorch f32, scales 0–2 each
    // too. Each coarse-scale entry sums ~10² fine-pixel terms of both signs, so f32 rounding of
    // the sample coordinates (which bilinear cell a sample falls in) shows there at ~1e-4 in
    // libtorch f32 itself: we require ours to be as close to the f64 truth as libtorch f32 is.
    let (mut all_ours, mut all_torch) = (Vec::new(), Vec::new());
    for s in 0..scales {
        let a = widen(&ours.grad_disparities[s]);
        let to_torch = rel_l2(&a, &torch32.grad_disparities[s]);
        let to_truth = rel_l2(&a, &torch64.grad_disparities[s]);
        let torch_to_truth = rel_l2(&torch32.grad_disparities[s], &torch64.grad_disparities[s]);
        println!(
            "f32 scale {s}: disparity gradient relative L2 difference to libtorch f32 {to_torch:e}, \
             to f64 truth {to_truth:e} (libtorch f32 to truth {torch_to_truth:e})"
        );
        if s < 3 {
            assert!(to_torch < 1e-4, "scale {s}: {to_torch}");
        }
        assert!(
            to_truth < 1.5 * torch_to_truth + 1e-5,
            "scale {s}: {to_truth} vs {torch_to_truth}"
        );
        all_ours.extend(a);
        all_torch.extend(torch32.grad_disparities[s].iter().copied());
    }
    let all = rel_l2(&all_ours, &all_torch);
    println!("f32 all scales: disparity gradient relative L2 difference {all:e}");
    assert!(all < 1e-4);
    for (i, (a, b)) in ours.grad_poses.iter().zip(&torch32.grad_poses).enumerate() {
        let rel = rel_l2(&widen(a), b);
        println!("f32 pose {i}: ours {a:?} libtorch {b:?} (relative {rel:e})");
        assert!(rel < 1e-4, "pose {i}: {rel}");
    }
    let rel = rel_l2(&widen(&ours.grad_intrinsics), &torch32.grad_intrinsics);
    println!(
        "f32 intrinsics: ours {:?} libtorch {:?} (relative {rel:e})",
        ours.grad_intrinsics, torch32.grad_intrinsics
    );
    assert!(rel < 1e-4, "intrinsics: {rel}");
}
