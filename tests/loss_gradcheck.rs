//! Finite-difference checks of the loss's analytic gradients on the double-precision twin
//! (`SelfSupervisedLoss<f64>`, the same kernels as the f32 hot path), on small random inputs
//! that include pixels warping outside the image, auto-masked pixels and exact ties.

use livedepth::loss::{LossConfig, LossInputs, LossOutputs, Pose6, SelfSupervisedLoss};

/// Small deterministic generator for test data.
struct Lcg(u64);
impl Lcg {
    fn next(&mut self) -> f64 {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        ((self.0 >> 11) as f64) / ((1u64 << 53) as f64)
    }
}

/// A smooth random texture plus fine noise, planar 3 x h x w.
fn texture(w: usize, h: usize, rng: &mut Lcg) -> Vec<f64> {
    let phases: Vec<f64> = (0..12).map(|_| rng.next() * 6.0).collect();
    let mut img = vec![0.0; 3 * w * h];
    for c in 0..3 {
        for y in 0..h {
            for x in 0..w {
                let (xf, yf) = (x as f64, y as f64);
                let v = 0.5
                    + 0.2 * (0.7 * xf + phases[c * 4]).sin()
                    + 0.15 * (0.9 * yf + phases[c * 4 + 1]).cos()
                    + 0.1 * (0.4 * (xf + yf) + phases[c * 4 + 2]).sin();
                img[c * w * h + y * w + x] = (v + 0.05 * (rng.next() - 0.5)).clamp(0.0, 1.0);
            }
        }
    }
    img
}

fn pyramid(img: &[f64], w: usize, h: usize, scales: usize) -> Vec<Vec<f64>> {
    let f32s: Vec<f32> = img.iter().map(|&v| v as f32).collect();
    livedepth::loss::target_pyramid(&f32s, w, h, scales)
        .into_iter()
        .map(|l| l.into_iter().map(f64::from).collect())
        .collect()
}

struct Case {
    w: usize,
    h: usize,
    target: Vec<f64>,
    sources: Vec<Vec<f64>>,
    disparities: Vec<Vec<f64>>,
    pyramid: Vec<Vec<f64>>,
    poses: Vec<Pose6<f64>>,
    intrinsics: [f64; 4],
    noise: Vec<f64>,
}

impl Case {
    fn evaluate(&self, loss: &mut SelfSupervisedLoss<f64>, grads: bool) -> LossOutputs<f64> {
        let sources: Vec<&[f64]> = self.sources.iter().map(Vec::as_slice).collect();
        let disparities: Vec<&[f64]> = self.disparities.iter().map(Vec::as_slice).collect();
        let pyramid: Vec<&[f64]> = self.pyramid.iter().map(Vec::as_slice).collect();
        let inputs = LossInputs {
            width: self.w,
            height: self.h,
            target: &self.target,
            sources: &sources,
            disparities: &disparities,
            target_pyramid: &pyramid,
            poses: &self.poses,
            intrinsics: self.intrinsics,
            tie_break_noise: Some(&self.noise),
        };
        let out = if grads { loss.forward_backward(&inputs) } else { loss.forward(&inputs) };
        out.expect("valid inputs").clone()
    }
}

fn random_case(seed: u64) -> Case {
    let (w, h, scales) = (16, 12, 3);
    let mut rng = Lcg(seed);
    let target = texture(w, h, &mut rng);
    let mut sources = vec![texture(w, h, &mut rng), texture(w, h, &mut rng)];
    // A static band where source 1 equals the target: the identity error wins there (masked).
    for c in 0..3 {
        for y in 0..3 {
            for x in 0..w {
                let i = c * w * h + y * w + x;
                sources[1][i] = target[i];
            }
        }
    }
    // Blend the sources toward the target so that warping matters.
    for s in &mut sources {
        for (v, t) in s.iter_mut().zip(&target) {
            *v = 0.5 * *v + 0.5 * t;
        }
    }
    let disparities = (0..scales)
        .map(|s| (0..(w >> s) * (h >> s)).map(|_| 0.02 + 0.3 * rng.next()).collect())
        .collect();
    let poses = vec![
        // Large forward-left motion: many pixels sample outside the image (border clamp).
        Pose6 { axis_angle: [0.02, -0.05, 0.01], translation: [0.35, -0.1, 0.2], invert: false },
        Pose6 { axis_angle: [-0.03, 0.04, 0.02], translation: [-0.05, 0.04, -0.08], invert: true },
    ];
    let noise = (0..2 * w * h).map(|_| 1e-5 * (rng.next() - 0.5)).collect();
    let pyramid = pyramid(&target, w, h, scales);
    Case {
        w,
        h,
        target,
        sources,
        disparities,
        pyramid,
        poses,
        intrinsics: [14.0, 13.0, 7.6, 5.4],
        noise,
    }
}

/// Central difference of the total loss along a perturbation applied by `apply`.
fn central_difference(
    case: &mut Case,
    loss: &mut SelfSupervisedLoss<f64>,
    step: f64,
    apply: &dyn Fn(&mut Case, f64),
) -> f64 {
    apply(case, step);
    let plus = case.evaluate(loss, false).total;
    apply(case, -2.0 * step);
    let minus = case.evaluate(loss, false).total;
    apply(case, step);
    (plus - minus) / (2.0 * step)
}

/// Compares analytic and numeric derivatives; returns the number of entries compared.
fn check_all(
    case: &mut Case,
    analytic: &LossOutputs<f64>,
    loss: &mut SelfSupervisedLoss<f64>,
) -> usize {
    let step = 1e-6;
    let mut compared = 0;
    let mut mismatches = Vec::new();
    let mut check = |what: String, a: f64, n: f64, scale: f64| {
        if (a - n).abs() > 1e-7 * scale.max(1e-3) + 1e-4 * a.abs().max(n.abs()) {
            mismatches.push(format!("{what}: analytic {a:e} numeric {n:e}"));
        }
    };
    for s in 0..case.disparities.len() {
        let scale = analytic.grad_disparities[s].iter().fold(0f64, |m, v| m.max(v.abs()));
        for i in 0..case.disparities[s].len() {
            let n = central_difference(case, loss, step, &|c, d| c.disparities[s][i] += d);
            check(format!("disparity[{s}][{i}]"), analytic.grad_disparities[s][i], n, scale * 1e3);
            compared += 1;
        }
    }
    for k in 0..case.poses.len() {
        for j in 0..6 {
            let n = central_difference(case, loss, step, &|c, d| {
                if j < 3 {
                    c.poses[k].axis_angle[j] += d
                } else {
                    c.poses[k].translation[j - 3] += d
                }
            });
            check(format!("pose[{k}][{j}]"), analytic.grad_poses[k][j], n, 1e3);
            compared += 1;
        }
    }
    for j in 0..4 {
        let n = central_difference(case, loss, step, &|c, d| c.intrinsics[j] += d);
        check(format!("intrinsics[{j}]"), analytic.grad_intrinsics[j], n, 1e3);
        compared += 1;
    }
    assert!(
        mismatches.is_empty(),
        "{} of {compared} derivatives disagree:\n{}",
        mismatches.len(),
        mismatches.join("\n")
    );
    compared
}

#[test]
fn gradients_match_finite_differences_with_border_samples_and_masking() {
    let mut case = random_case(11);
    let mut loss = SelfSupervisedLoss::<f64>::new(LossConfig::default());
    let analytic = case.evaluate(&mut loss, true);
    // The scenario exercises what it claims: masked pixels and warped errors winning elsewhere.
    let hw = case.w * case.h;
    assert!(analytic.masked_fraction > 0.05, "masked fraction {}", analytic.masked_fraction);
    assert!(analytic.winner.iter().any(|&c| c >= 2), "no warped error wins: {:?}", analytic.winner);
    assert_eq!(analytic.automask.len(), hw);
    // forward() alone gives the same loss.
    let plain = case.evaluate(&mut loss, false);
    assert_eq!(plain.total, analytic.total);
    assert!(analytic.grad_poses.iter().all(|g| g.iter().any(|v| v.abs() > 1e-6)));
    let compared = check_all(&mut case, &analytic, &mut loss);
    assert_eq!(compared, 16 * 12 + 8 * 6 + 4 * 3 + 12 + 4);
}

#[test]
fn gradients_match_finite_differences_without_automask() {
    let mut case = random_case(5);
    let config = LossConfig { automask: false, smoothness_weight: 0.05, ..LossConfig::default() };
    let mut loss = SelfSupervisedLoss::<f64>::new(config);
    let analytic = case.evaluate(&mut loss, true);
    assert_eq!(analytic.masked_fraction, 0.0);
    assert!(analytic.winner.iter().all(|&c| c < 2));
    check_all(&mut case, &analytic, &mut loss);
}

#[test]
fn exact_ties_go_to_the_first_candidate_and_gradients_stay_consistent() {
    let mut case = random_case(23);
    // Two identical sources with identical poses: every warped error ties exactly.
    case.sources[1] = case.sources[0].clone();
    case.poses[1] = case.poses[0];
    case.noise.iter_mut().for_each(|v| *v = 0.0);
    let mut loss = SelfSupervisedLoss::<f64>::new(LossConfig::default());
    let analytic = case.evaluate(&mut loss, true);
    // Identity errors tie too: identity 0 wins over identity 1, warped 0 over warped 1.
    assert!(
        !analytic.winner.contains(&1) && !analytic.winner.contains(&3),
        "{:?}",
        analytic.winner
    );
    assert!(analytic.winner.contains(&2));
    assert_eq!(
        analytic.grad_poses[1], [0.0; 6],
        "gradient must flow only through the first of tied errors"
    );
    // Disparity gradients (ties persist under disparity perturbations) match differences.
    let step = 1e-6;
    for s in 0..case.disparities.len() {
        for i in (0..case.disparities[s].len()).step_by(3) {
            let n =
                central_difference(&mut case, &mut loss, step, &|c, d| c.disparities[s][i] += d);
            let a = analytic.grad_disparities[s][i];
            assert!((a - n).abs() < 1e-8 + 1e-4 * a.abs(), "disparity[{s}][{i}]: {a:e} vs {n:e}");
        }
    }
    // Moving both poses together keeps the tie: the directional derivative is pose 0's gradient.
    for j in 0..6 {
        let n = central_difference(&mut case, &mut loss, step, &|c, d| {
            for k in 0..2 {
                if j < 3 {
                    c.poses[k].axis_angle[j] += d
                } else {
                    c.poses[k].translation[j - 3] += d
                }
            }
        });
        let a = analytic.grad_poses[0][j];
        assert!((a - n).abs() < 1e-8 + 1e-4 * a.abs(), "pose[{j}]: {a:e} vs {n:e}");
    }
}

#[test]
fn outputs_report_consistent_parts() {
    let case = random_case(3);
    let mut loss = SelfSupervisedLoss::<f64>::new(LossConfig::default());
    let out = case.evaluate(&mut loss, true);
    let scales = out.per_scale.len() as f64;
    let photometric: f64 = out.per_scale.iter().map(|s| s.photometric).sum::<f64>() / scales;
    let smoothness: f64 = out.per_scale.iter().map(|s| s.smoothness).sum::<f64>() / scales;
    assert!((out.photometric - photometric).abs() < 1e-12);
    assert!((out.smoothness - smoothness).abs() < 1e-12);
    assert!((out.total - photometric - smoothness).abs() < 1e-12);
    let mean_min = out.min_error.iter().sum::<f64>() / out.min_error.len() as f64;
    assert!((out.per_scale[0].photometric - mean_min).abs() < 1e-12);
    for (m, &c) in out.automask.iter().zip(&out.winner) {
        assert_eq!(*m, u8::from(c >= 2));
    }
}

#[test]
fn pose_rows_round_trip_in_the_pose_network_layout() {
    let pose =
        Pose6 { axis_angle: [0.1f32, -0.2, 0.3], translation: [1.0, -2.0, 3.5], invert: true };
    // Axis-angle first, then translation: the pose network's rows and the fused loss's input.
    assert_eq!(pose.row(), [0.1, -0.2, 0.3, 1.0, -2.0, 3.5]);
    assert_eq!(Pose6::from_row(&pose.row(), true), pose);
    let rows = [pose.row(), [9.0; 6]].concat();
    let next = Pose6::from_row(&rows[6..], false);
    assert_eq!((next.axis_angle, next.translation, next.invert), ([9.0; 3], [9.0; 3], false));
}
