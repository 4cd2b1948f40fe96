//! The real RT-MonoDepth-S m_640x192 checkpoint on kitti_tiny's 7 frames through the Rust
//! engine (Preprocessor → libtorch forward → disparity resized bilinearly to GT size → depth),
//! scored with the Monodepth2 protocol, must give abs_rel 0.128 ± 0.003 and a1 0.871 ± 0.005,
//! and agree per frame with the independent Python evaluation (tests/python).
#![cfg(feature = "torch")]

mod common;
mod model_support;

use livedepth::engine::{DepthEngine, MAX_DEPTH, MIN_DEPTH, TorchDepthEngine};
use livedepth::model::Arch;
use model_support::*;

/// abs_rel and a1 of one frame under the Monodepth2 KITTI protocol (Garg crop, GT in
/// (1e-3, 80), median scaling, clamp).
fn frame_metrics(pred: &[f32], gt: &[f32], width: usize, height: usize) -> (f64, f64) {
    let (y0, y1) =
        ((0.408_108_11 * height as f64) as usize, (0.991_891_89 * height as f64) as usize);
    let (x0, x1) = ((0.035_947_71 * width as f64) as usize, (0.964_052_29 * width as f64) as usize);
    let mut pairs: Vec<(f64, f64)> = Vec::new();
    for y in y0..y1 {
        for x in x0..x1 {
            let g = gt[y * width + x] as f64;
            if g > 1e-3 && g < 80.0 {
                pairs.push((pred[y * width + x] as f64, g));
            }
        }
    }
    let median = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        let n = v.len();
        if n % 2 == 1 { v[n / 2] } else { 0.5 * (v[n / 2 - 1] + v[n / 2]) }
    };
    let ratio =
        median(pairs.iter().map(|p| p.1).collect()) / median(pairs.iter().map(|p| p.0).collect());
    let (mut abs_rel, mut a1) = (0.0, 0.0);
    for &(p, g) in &pairs {
        let p = (p * ratio).clamp(1e-3, 80.0);
        abs_rel += (g - p).abs() / g;
        a1 += f64::from(u8::from((g / p).max(p / g) < 1.25));
    }
    (abs_rel / pairs.len() as f64, a1 / pairs.len() as f64)
}

#[test]
fn rtmonodepth_s_on_kitti_tiny_reproduces_published_accuracy() {
    let Some(model) = common::shared("models/rtmonodepth_s/m_640x192") else { return };
    let Some(kitti) = common::shared("data/kitti_tiny") else { return };
    let drive = kitti.join("2011_09_26/2011_09_26_drive_0023_sync");
    let mut engine =
        TorchDepthEngine::load(&model, Arch::RtMonoDepthS, 640, 192, tch::Device::Cpu).unwrap();
    let mut per_frame = Vec::new();
    for i in 0..7 {
        let image = load_rgb(&drive.join(format!("image_02/data/{i:010}.png")));
        let npz_path = drive.join(format!("proj_depth/velodyne/image_02/{i:010}.npz"));
        let mut npz = npyz::npz::NpzArchive::open(&npz_path).unwrap();
        let gt_npy = npz.by_name("velodyne_depth").unwrap().expect("velodyne_depth");
        let shape: Vec<usize> = gt_npy.shape().iter().map(|&d| d as usize).collect();
        let gt: Vec<f32> = gt_npy.into_vec().unwrap();
        let (gh, gw) = (shape[0], shape[1]);
        let disparity = engine.predict_disparity(&image).unwrap();
        let depth = disparity.resized_bilinear(gw as u32, gh as u32).to_depth(MIN_DEPTH, MAX_DEPTH);
        per_frame.push(frame_metrics(&depth.data, &gt, gw, gh));
    }
    let abs_rel = per_frame.iter().map(|m| m.0).sum::<f64>() / 7.0;
    let a1 = per_frame.iter().map(|m| m.1).sum::<f64>() / 7.0;
    println!("Rust engine on kitti_tiny: abs_rel {abs_rel:.4}, a1 {a1:.4}");
    assert!((abs_rel - 0.128).abs() <= 0.003, "abs_rel {abs_rel}");
    assert!((a1 - 0.871).abs() <= 0.005, "a1 {a1}");

    let Some(python) = common::python() else { return };
    let json = run_python(
        &python,
        "kitti_eval_reference.py",
        &[kitti.to_str().unwrap(), model.to_str().unwrap()],
    );
    let reference: serde_json::Value = serde_json::from_str(json.trim()).unwrap();
    println!(
        "Python reference: abs_rel {:.4}, a1 {:.4}",
        reference["abs_rel"].as_f64().unwrap(),
        reference["a1"].as_f64().unwrap()
    );
    for (i, (ours, theirs)) in
        per_frame.iter().zip(reference["per_frame"].as_array().unwrap()).enumerate()
    {
        let (r_abs, r_a1) = (theirs["abs_rel"].as_f64().unwrap(), theirs["a1"].as_f64().unwrap());
        assert!((ours.0 - r_abs).abs() < 2e-4, "frame {i}: abs_rel {} vs {r_abs}", ours.0);
        assert!((ours.1 - r_a1).abs() < 2e-3, "frame {i}: a1 {} vs {r_a1}", ours.1);
    }
}
