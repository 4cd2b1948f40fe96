//! Metric scale without ground truth (`--metric-scale ground`):
//! - the ground-plane fit on rendered frames (exact depth) recovers the renderer's camera
//!   height within 3 %;
//! - on KITTI tiny, `eval --metric-scale ground --camera-height 1.65 --no-median-scaling` with
//!   the KITTI RT-MonoDepth-S gives abs_rel at most 0.16 (0.128 median-scaled) and a median
//!   ratio of ground truth to prediction near 1.

mod common;

use livedepth::scale::ground::fit_ground_plane;
use livedepth::synth::{RenderConfig, Renderer};

#[test]
fn the_ground_plane_of_rendered_frames_is_the_renderers_camera_height() {
    let renderer = Renderer::new(&RenderConfig {
        frames: 12,
        width: 320,
        height: 96,
        seed: 9091,
        supersample: 1,
        ..RenderConfig::default()
    })
    .unwrap();
    for index in [0, 5, 11] {
        let frame = renderer.render_frame(index).unwrap();
        let fit =
            fit_ground_plane(&frame.depth, &renderer.intrinsics(), 7).expect("a road in view");
        let height = frame.pose_cam_to_world.translation.vector.z;
        let error = (fit.height - height).abs() / height;
        println!(
            "frame {index}: fitted {:.4} m, camera at {height:.4} m ({:.2} %)",
            fit.height,
            100.0 * error
        );
        assert!(error < 0.03, "frame {index}: {fit:?} vs {height}");
        assert!(fit.inlier_fraction > 0.5, "{fit:?}");
    }
}

#[test]
fn ground_scale_makes_the_kitti_model_metric_on_kitti_tiny() {
    let (Some(model), Some(kitti)) =
        (common::shared("models/rtmonodepth_s/m_640x192"), common::shared("data/kitti_tiny"))
    else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("eval.json");
    let output = common::livedepth(&[
        "eval",
        "--quiet",
        "--dataset",
        &format!("kitti:{}", kitti.display()),
        "--model",
        model.to_str().unwrap(),
        "--metric-scale",
        "ground",
        "--camera-height",
        "1.65",
        "--no-median-scaling",
        "--json",
        json.to_str().unwrap(),
    ]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    println!("{stdout}{}", String::from_utf8_lossy(&output.stderr));
    assert!(output.status.success());
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert_eq!(report["protocol"]["median_scaling"], false);
    let abs_rel = report["abs_rel"].as_f64().unwrap();
    assert!(abs_rel <= 0.16, "metric abs_rel {abs_rel}");
    let ratio = report["scale_ratio_median"].as_f64().unwrap();
    assert!((0.85..1.15).contains(&ratio), "ground truth / prediction {ratio}");
    let scale = &report["metric_scale"];
    assert_eq!(scale["source"]["source"], "ground");
    assert_eq!(scale["measured"].as_u64(), Some(7));
    // Without a camera height the flag says what it needs.
    let output = common::livedepth(&[
        "eval",
        "--dataset",
        &format!("kitti:{}", kitti.display()),
        "--model",
        model.to_str().unwrap(),
        "--metric-scale",
        "ground",
    ]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success() && stderr.contains("--camera-height"), "{stderr}");
}

/// Median of the non-zero values of a 16-bit depth PNG, in metres (KITTI convention: /256).
fn median_png_depth(path: &std::path::Path) -> f64 {
    let image = image::open(path).unwrap().to_luma16();
    let mut values: Vec<u16> = image.into_raw().into_iter().filter(|&v| v > 0).collect();
    values.sort_unstable();
    f64::from(values[values.len() / 2]) / 256.0
}

#[test]
fn run_writes_depth_in_metres_with_the_ground_scale() {
    let (Some(_), Some(_)) =
        (common::shared("models/rtmonodepth_s/m_640x192"), common::shared("data/kitti_tiny"))
    else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let run = |name: &str, extra: &[&str]| {
        let out = dir.path().join(name);
        let mut args =
            vec!["run", "--config", "configs/kitti.toml", "--out", out.to_str().unwrap()];
        args.extend_from_slice(extra);
        let output = common::livedepth(&args);
        assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
        out
    };
    let metric = run("metric", &["--metric-scale", "ground", "--camera-height", "1.65"]);
    let units = run("units", &[]);
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(metric.join("run_report.json")).unwrap())
            .unwrap();
    let scale = report["metric_scale"]["scale_median"].as_f64().unwrap();
    assert_eq!(report["metric_scale"]["measured"].as_u64(), Some(7));
    let png = "depth/000003.png";
    let (in_metres, in_units) =
        (median_png_depth(&metric.join(png)), median_png_depth(&units.join(png)));
    println!("scale {scale:.3}; median depth {in_metres:.2} m vs {in_units:.3} network units");
    // A road scene's median depth is metres to tens of metres; the network's units are not.
    assert!((4.0..40.0).contains(&in_metres), "{in_metres}");
    assert!(((in_metres / in_units) / scale - 1.0).abs() < 0.05, "PNG depth scaled by {scale}");
    let unscaled: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(units.join("run_report.json")).unwrap())
            .unwrap();
    assert!(unscaled.get("metric_scale").is_none());
}
