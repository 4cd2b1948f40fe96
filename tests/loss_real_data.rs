//! Real-data sanity of the loss: with ground-truth depth and relative pose, warping the source
//! frame must explain the target far better than no warp, and better than wrong geometry (depth
//! scaled by 2, translation perturbed by 5 cm). Kitchen (7-Scenes) and KITTI from ../shared
//! (skipped with a printed reason when absent), and an analytic synthetic scene (a textured
//! fronto-parallel plane with exact depth and a known camera translation).

// Small 3x3 matrix algebra with explicit indices.
#![allow(clippy::needless_range_loop)]

mod common;

use livedepth::loss::{LossConfig, LossInputs, Pose6, SelfSupervisedLoss};
use std::path::Path;

type Mat3 = [[f64; 3]; 3];

/// Camera-to-world pose: rotation and translation.
#[derive(Clone, Copy)]
struct CameraPose {
    r: Mat3,
    t: [f64; 3],
}

/// Rodrigues' formula, written out independently of the library.
fn rotation_matrix(w: [f64; 3]) -> Mat3 {
    let theta = (w[0] * w[0] + w[1] * w[1] + w[2] * w[2]).sqrt();
    if theta == 0.0 {
        return [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]];
    }
    let k = w.map(|v| v / theta);
    let (s, c) = theta.sin_cos();
    let mut r = [[0.0; 3]; 3];
    for i in 0..3 {
        for j in 0..3 {
            let cross = match (i, j) {
                (0, 1) => -k[2],
                (0, 2) => k[1],
                (1, 0) => k[2],
                (1, 2) => -k[0],
                (2, 0) => -k[1],
                (2, 1) => k[0],
                _ => 0.0,
            };
            r[i][j] = c * if i == j { 1.0 } else { 0.0 } + s * cross + (1.0 - c) * k[i] * k[j];
        }
    }
    r
}

/// Axis-angle of a rotation matrix (log map; rotations here are far from π).
fn axis_angle(r: &Mat3) -> [f64; 3] {
    let cos = ((r[0][0] + r[1][1] + r[2][2] - 1.0) / 2.0).clamp(-1.0, 1.0);
    let theta = cos.acos();
    let v = [r[2][1] - r[1][2], r[0][2] - r[2][0], r[1][0] - r[0][1]];
    let k = if theta < 1e-9 { 0.5 } else { theta / (2.0 * theta.sin()) };
    [v[0] * k, v[1] * k, v[2] * k]
}

/// The target→source transform (target camera points into the source camera) as a [`Pose6`].
fn relative_pose(target: &CameraPose, source: &CameraPose, extra_translation: [f64; 3]) -> Pose6 {
    let mut m = [[0.0; 3]; 3];
    let mut t = [0.0; 3];
    for i in 0..3 {
        for j in 0..3 {
            m[i][j] = (0..3).map(|k| source.r[k][i] * target.r[k][j]).sum();
        }
        t[i] = (0..3).map(|k| source.r[k][i] * (target.t[k] - source.t[k])).sum::<f64>()
            + extra_translation[i];
    }
    let w = axis_angle(&m);
    Pose6 { axis_angle: w.map(|v| v as f32), translation: t.map(|v| v as f32), invert: false }
}

/// Pixels with valid depth whose ground-truth warp lands inside the source image (1-pixel
/// margin): the others sample the clamped border and say nothing about the geometry.
fn in_view(w: usize, h: usize, depth: &[f32], pose: &Pose6, intrinsics: [f32; 4]) -> Vec<bool> {
    let r = rotation_matrix(pose.axis_angle.map(f64::from));
    let t = pose.translation.map(f64::from);
    let [fx, fy, cx, cy] = intrinsics.map(f64::from);
    (0..w * h)
        .map(|i| {
            let d = f64::from(depth[i]);
            let p = [((i % w) as f64 - cx) / fx * d, ((i / w) as f64 - cy) / fy * d, d];
            let q: Vec<f64> =
                (0..3).map(|k| (0..3).map(|j| r[k][j] * p[j]).sum::<f64>() + t[k]).collect();
            let (u, v) = (fx * q[0] / q[2] + cx, fy * q[1] / q[2] + cy);
            d > 0.0 && q[2] > 0.0 && u > 1.0 && u < w as f64 - 2.0 && v > 1.0 && v < h as f64 - 2.0
        })
        .collect()
}

fn read_numbers(path: &Path) -> Vec<f64> {
    std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .split_whitespace()
        .map(|s| s.parse().unwrap_or_else(|e| panic!("{}: {s}: {e}", path.display())))
        .collect()
}

fn pose_from_rows(v: &[f64]) -> CameraPose {
    CameraPose {
        r: [[v[0], v[1], v[2]], [v[4], v[5], v[6]], [v[8], v[9], v[10]]],
        t: [v[3], v[7], v[11]],
    }
}

/// Planar RGB in [0, 1].
fn load_rgb(path: &Path) -> (usize, usize, Vec<f32>) {
    let img = image::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display())).to_rgb8();
    let (w, h) = (img.width() as usize, img.height() as usize);
    let mut planar = vec![0f32; 3 * w * h];
    for (i, px) in img.pixels().enumerate() {
        for c in 0..3 {
            planar[c * w * h + i] = f32::from(px[c]) / 255.0;
        }
    }
    (w, h, planar)
}

/// Mean of the single-source warped photometric error over the pixels where `valid` holds.
#[allow(clippy::too_many_arguments)]
fn warped_error(
    config: LossConfig,
    w: usize,
    h: usize,
    target: &[f32],
    source: &[f32],
    depth: &[f32],
    valid: &[bool],
    pose: Pose6,
    intrinsics: [f32; 4],
) -> f64 {
    let (min_d, max_d) = (config.min_depth, config.max_depth);
    let disparity: Vec<f32> = depth
        .iter()
        .map(|&d| {
            ((1.0 / d.clamp(min_d, max_d) - 1.0 / max_d) / (1.0 / min_d - 1.0 / max_d))
                .clamp(0.0, 1.0)
        })
        .collect();
    let sources = [source];
    let disparities = [disparity.as_slice()];
    let pyramid = [target];
    let poses = [pose];
    let inputs = LossInputs {
        width: w,
        height: h,
        target,
        sources: &sources,
        disparities: &disparities,
        target_pyramid: &pyramid,
        poses: &poses,
        intrinsics,
        tie_break_noise: None,
    };
    let config = LossConfig { automask: false, ..config };
    let mut loss = SelfSupervisedLoss::new(config);
    let out = loss.forward(&inputs).expect("valid inputs");
    let (sum, count) = out
        .min_error
        .iter()
        .zip(valid)
        .filter(|(_, v)| **v)
        .fold((0f64, 0usize), |(s, n), (e, _)| (s + f64::from(*e), n + 1));
    assert!(count > 100, "too few valid pixels ({count})");
    sum / count as f64
}

/// The four errors of the geometry check: GT, no warp, depth x2, translation off by 5 cm.
struct Discrimination {
    gt: f64,
    no_warp: f64,
    depth_doubled: f64,
    pose_perturbed: f64,
}

#[allow(clippy::too_many_arguments)]
fn discriminate(
    config: LossConfig,
    w: usize,
    h: usize,
    target: &[f32],
    source: &[f32],
    depth: &[f32],
    valid: &[bool],
    pose: Pose6,
    intrinsics: [f32; 4],
) -> Discrimination {
    let err = |depth: &[f32], pose: Pose6| {
        warped_error(config, w, h, target, source, depth, valid, pose, intrinsics)
    };
    let gt = err(depth, pose);
    let no_warp = err(depth, Pose6 { axis_angle: [0.0; 3], translation: [0.0; 3], invert: false });
    let doubled: Vec<f32> = depth.iter().map(|d| 2.0 * d).collect();
    let depth_doubled = err(&doubled, pose);
    // A random 5 cm translation error: the mean over the six axis directions.
    let mut pose_perturbed = 0.0;
    for axis in 0..3 {
        for sign in [-1.0f32, 1.0] {
            let mut p = pose;
            p.translation[axis] += sign * 0.05;
            pose_perturbed += err(depth, p) / 6.0;
        }
    }
    let d = Discrimination { gt, no_warp, depth_doubled, pose_perturbed };
    println!(
        "photometric error: GT {:.4}, no warp {:.4}, depth x2 {:.4}, pose 5 cm off {:.4}",
        d.gt, d.no_warp, d.depth_doubled, d.pose_perturbed
    );
    d
}

/// Sums the errors of several frame pairs.
fn accumulate(total: &mut Discrimination, d: &Discrimination) {
    total.gt += d.gt;
    total.no_warp += d.no_warp;
    total.depth_doubled += d.depth_doubled;
    total.pose_perturbed += d.pose_perturbed;
}

/// `far_lower`: how much lower than with no warp the GT error must be.
fn assert_discriminates(total: &Discrimination, pairs: usize, far_lower: f64) {
    let n = pairs as f64;
    println!(
        "mean over {pairs} pairs: GT {:.4}, no warp {:.4}, depth x2 {:.4}, pose 5 cm off {:.4}",
        total.gt / n,
        total.no_warp / n,
        total.depth_doubled / n,
        total.pose_perturbed / n
    );
    assert!(
        total.gt < far_lower * total.no_warp,
        "GT warp should explain the motion far better than no warp"
    );
    assert!(total.gt < total.depth_doubled, "depth x2 should be worse");
    assert!(total.gt < total.pose_perturbed, "a 5 cm pose error should be worse");
}

#[test]
fn kitchen_gt_geometry_explains_the_motion() {
    let Some(dir) = common::shared("data/kitchen") else { return };
    let k = read_numbers(&dir.join("camera-intrinsics.txt"));
    let intrinsics = [k[0] as f32, k[4] as f32, k[2] as f32, k[5] as f32];
    let frame = |i: usize, ext: &str| dir.join(format!("frame-{i:06}.{ext}"));
    // Frames t and t + 5 across the sequence: the Kinect depth is registered to colour only
    // approximately and the poses carry their own error, so single pairs vary; the means decide.
    let pairs = [0usize, 60, 120, 180, 240];
    let mut total =
        Discrimination { gt: 0.0, no_warp: 0.0, depth_doubled: 0.0, pose_perturbed: 0.0 };
    for &t_idx in &pairs {
        let s_idx = t_idx + 5;
        let (w, h, target) = load_rgb(&frame(t_idx, "color.jpg"));
        let (_, _, source) = load_rgb(&frame(s_idx, "color.jpg"));
        let depth_png = image::open(frame(t_idx, "depth.png")).expect("depth png").to_luma16();
        assert_eq!((depth_png.width() as usize, depth_png.height() as usize), (w, h));
        let depth: Vec<f32> = depth_png.pixels().map(|p| f32::from(p[0]) / 1000.0).collect();
        // Invalid pixels get the median depth; they are left out of the averages.
        let mut sorted: Vec<f32> = depth.iter().copied().filter(|&d| d > 0.0).collect();
        sorted.sort_by(f32::total_cmp);
        let median = sorted[sorted.len() / 2];
        let filled: Vec<f32> = depth.iter().map(|&d| if d > 0.0 { d } else { median }).collect();
        let pose_t = pose_from_rows(&read_numbers(&frame(t_idx, "pose.txt")));
        let pose_s = pose_from_rows(&read_numbers(&frame(s_idx, "pose.txt")));
        let pose = relative_pose(&pose_t, &pose_s, [0.0; 3]);
        let valid = in_view(w, h, &depth, &pose, intrinsics);
        print!("kitchen frames {t_idx} -> {s_idx}: ");
        let d = discriminate(
            LossConfig::default(),
            w,
            h,
            &target,
            &source,
            &filled,
            &valid,
            pose,
            intrinsics,
        );
        accumulate(&mut total, &d);
    }
    // Measured: GT 0.102, no warp 0.149, depth x2 0.119, pose 5 cm off 0.157.
    assert_discriminates(&total, pairs.len(), 0.75);
}

#[test]
fn kitti_gt_geometry_explains_the_motion() {
    let Some(dir) = common::shared("data/kitti_tiny/2011_09_26/2011_09_26_drive_0023_sync") else {
        return;
    };
    let cam = dir.join("image_02");
    let k = read_numbers(&cam.join("cam.txt"));
    let intrinsics = [k[0] as f32, k[4] as f32, k[2] as f32, k[5] as f32];
    let poses = read_numbers(&cam.join("poses.txt"));
    // Frames 0 -> 1 first, then the other consecutive pairs of the 7 frames. The rotations in
    // poses.txt (about 0.02 rad of yaw per frame) explain these images worse than no rotation at
    // all on every pair (measured while writing this test), so the margins here are modest.
    let pairs = [0usize, 1, 2, 3, 4, 5];
    let mut total =
        Discrimination { gt: 0.0, no_warp: 0.0, depth_doubled: 0.0, pose_perturbed: 0.0 };
    for &t_idx in &pairs {
        let s_idx = t_idx + 1;
        let (w, h, target) = load_rgb(&cam.join(format!("data/{t_idx:010}.png")));
        let (_, _, source) = load_rgb(&cam.join(format!("data/{s_idx:010}.png")));
        let npz_path = dir.join(format!("proj_depth/velodyne/image_02/{t_idx:010}.npz"));
        let mut npz = npyz::npz::NpzArchive::open(&npz_path).expect("velodyne npz");
        let array =
            npz.by_name("velodyne_depth").expect("readable npz").expect("velodyne_depth array");
        let shape = array.shape().to_vec();
        let depth: Vec<f32> = array.into_vec().expect("float32 depth");
        assert_eq!(
            shape.iter().product::<u64>() as usize,
            w * h,
            "depth shape {shape:?} vs image {w}x{h}"
        );
        // Sparse depth: the rest is filled with a far plane; only valid pixels count, and the
        // photometric error is L1-only (no SSIM windows reaching into filled pixels).
        let filled: Vec<f32> = depth.iter().map(|&d| if d > 0.0 { d } else { 30.0 }).collect();
        let pose = relative_pose(
            &pose_from_rows(&poses[t_idx * 12..t_idx * 12 + 12]),
            &pose_from_rows(&poses[s_idx * 12..s_idx * 12 + 12]),
            [0.0; 3],
        );
        let valid = in_view(w, h, &depth, &pose, intrinsics);
        let config = LossConfig { ssim_weight: 0.0, ..LossConfig::default() };
        print!("KITTI frames {t_idx} -> {s_idx}: ");
        let d = discriminate(config, w, h, &target, &source, &filled, &valid, pose, intrinsics);
        accumulate(&mut total, &d);
    }
    // Measured: GT 0.177, no warp 0.201, depth x2 0.194, pose 5 cm off 0.178.
    assert_discriminates(&total, pairs.len(), 0.9);
}

/// A band-limited colour texture on the world plane Z = const, as a function of (X, Y) metres.
fn plane_texture(x: f64, y: f64, c: usize) -> f32 {
    let c = c as f64;
    (0.5 + 0.2 * (7.0 * x + 1.3 * c).sin() * (5.0 * y).cos()
        + 0.15 * (11.0 * (x + 0.5 * y) + c).sin()
        + 0.1 * (3.0 * y - 2.0 * x).cos()) as f32
}

#[test]
fn synthetic_plane_with_exact_geometry_warps_to_near_zero_error() {
    let (w, h) = (160usize, 120usize);
    let (fx, fy, cx, cy) = (140.0f64, 140.0f64, 79.5f64, 59.5f64);
    let depth_m = 2.0f64;
    // The source camera sits 8 cm to the right of and 5 cm ahead of the target camera, turned
    // by a few degrees.
    let source_pose = CameraPose { r: rotation_matrix([0.02, -0.04, 0.03]), t: [0.08, 0.0, 0.05] };
    let target_pose = CameraPose { r: rotation_matrix([0.0; 3]), t: [0.0; 3] };
    // Renders the plane Z = depth_m seen by a camera (camera-to-world pose).
    let render = |cam: &CameraPose| {
        let mut img = vec![0f32; 3 * w * h];
        for y in 0..h {
            for x in 0..w {
                let ray = [(x as f64 - cx) / fx, (y as f64 - cy) / fy, 1.0];
                let d: Vec<f64> =
                    (0..3).map(|i| (0..3).map(|j| cam.r[i][j] * ray[j]).sum()).collect();
                let lambda = (depth_m - cam.t[2]) / d[2];
                let (wx, wy) = (cam.t[0] + lambda * d[0], cam.t[1] + lambda * d[1]);
                for c in 0..3 {
                    img[c * w * h + y * w + x] = plane_texture(wx, wy, c);
                }
            }
        }
        img
    };
    let target = render(&target_pose);
    let source = render(&source_pose);
    let depth = vec![depth_m as f32; w * h];
    let pose = relative_pose(&target_pose, &source_pose, [0.0; 3]);
    // Non-occluded pixels: those that project inside the source image with a 2-pixel margin.
    let valid: Vec<bool> = (0..w * h)
        .map(|i| {
            let (x, y) = ((i % w) as f64, (i / w) as f64);
            let p = [(x - cx) / fx * depth_m, (y - cy) / fy * depth_m, depth_m];
            let q: Vec<f64> = (0..3)
                .map(|k| (0..3).map(|j| source_pose.r[j][k] * (p[j] - source_pose.t[j])).sum())
                .collect();
            let (u, v) = (fx * q[0] / q[2] + cx, fy * q[1] / q[2] + cy);
            u > 2.0 && u < w as f64 - 3.0 && v > 2.0 && v < h as f64 - 3.0
        })
        .collect();
    let intrinsics = [fx as f32, fy as f32, cx as f32, cy as f32];
    let d = discriminate(
        LossConfig::default(),
        w,
        h,
        &target,
        &source,
        &depth,
        &valid,
        pose,
        intrinsics,
    );
    assert!(d.gt < 0.01, "exact geometry should warp to near-zero error, got {}", d.gt);
    assert!(d.gt < 0.1 * d.no_warp);
    assert!(d.gt < 0.5 * d.depth_doubled);
    assert!(d.gt < 0.5 * d.pose_perturbed);
}
