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
