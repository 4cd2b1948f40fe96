//! Metric scale without ground truth (`--metric-scale ground`):
//! - the ground-plane fit on rendered frames (exact depth) recovers the renderer's camera
//!   height within 3 %;
//! - on KITTI tiny, `eval --metric-scale ground --camera-height 1.65 --no-median-scaling` with
//!   the KITTI RT-MonoDepth-S gives abs_rel at most 0.16 (0.128 median-scaled) and a median
//!   ratio of ground truth to prediction near 1;
//! - `--metric-scale speed`: rendered drives record the vehicle's speed (`speed.csv`, whose
//!   odometer matches the path); on kitchen frames the adapted KITTI network's depth is served
//!   in metres to within a factor 1.5 (its units are a third of a metre there); a speed sidecar
//!   with a bad row is refused naming the file and the line.

mod common;

use livedepth::scale::ground::fit_ground_plane;
use livedepth::synth::{RenderConfig, Renderer};
use std::path::Path;

/// `livedepth eval --quiet --dataset DATASET --model MODEL EXTRA…`.
fn eval_on(dataset: &str, model: &Path, extra: &[&str]) -> std::process::Output {
    let mut args =
        vec!["eval", "--quiet", "--dataset", dataset, "--model", model.to_str().unwrap()];
    args.extend_from_slice(extra);
    common::livedepth(&args)
}

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
    let output = eval_on(
        &format!("kitti:{}", kitti.display()),
        &model,
        &[
            "--metric-scale",
            "ground",
            "--camera-height",
            "1.65",
            "--no-median-scaling",
            "--json",
            json.to_str().unwrap(),
        ],
    );
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

#[test]
fn rendered_drives_record_the_vehicles_speed() {
    use livedepth::scale::speed::SpeedTrack;
    let tmp = tempfile::tempdir().unwrap();
    let renderer = Renderer::new(&RenderConfig {
        width: 64,
        height: 32,
        frames: 12,
        seed: 6151,
        supersample: 1,
        ..RenderConfig::default()
    })
    .unwrap();
    livedepth::synth::write_dataset(&renderer, tmp.path(), false).unwrap();
    let track = SpeedTrack::read(&tmp.path().join("speed.csv")).expect("speed.csv parses");
    let (poses, stamps) = (renderer.poses(), renderer.timestamps());
    let path: f64 =
        poses.windows(2).map(|p| (p[1].translation.vector - p[0].translation.vector).norm()).sum();
    let odometer = track.odometer(stamps[stamps.len() - 1]).unwrap();
    println!("path {path:.3} m, odometer {odometer:.3} m");
    assert!((odometer / path - 1.0).abs() < 0.01, "odometer {odometer} vs path {path}");
}

/// `eval --adapt --metric-scale speed --no-median-scaling` on kitchen frames 0–79, with the
/// distance travelled from the ground-truth positions: the KITTI network's units are about a
/// third of a metre indoors (ground truth / prediction ≈ 3); once the scale has settled the
/// served depth is in metres to within a factor 1.5 (median ratio per frame).
#[cfg(feature = "torch")]
#[test]
fn speed_scale_turns_the_kitti_networks_units_into_metres_on_the_kitchen() {
    use livedepth::app::adapt::{AdaptOptions, evaluate_adapt};
    use livedepth::scale::MetricScale;
    let (Some(model), Some(kitchen)) =
        (common::shared("models/rtmonodepth_s/m_640x192"), common::shared("data/kitchen"))
    else {
        return;
    };
    let options = livedepth::app::eval::EvalOptions {
        no_median_scaling: true,
        metric_scale: MetricScale::Speed { speed_file: None, speed_key: None },
        ..common::eval_options(
            format!("kitchen:{}", kitchen.display()),
            model,
            (128, 96),
            livedepth::source::dataset::FrameSelection::parse("0..80").unwrap(),
        )
    };
    let adapt = AdaptOptions { print_every: 0, ..AdaptOptions::default() };
    let (report, _) = evaluate_adapt(&options, &adapt).expect("lock-step evaluation");
    let summary = report.metric_scale.clone().expect("a scale summary");
    let median = |rows: &[livedepth::app::eval::FrameRow]| {
        let mut r: Vec<f64> = rows.iter().map(|r| r.metrics.scale_ratio).collect();
        r.sort_by(f64::total_cmp);
        r[r.len() / 2]
    };
    let unscaled = summary.unscaled as usize;
    let (in_units, in_metres) =
        (median(&report.per_frame[..unscaled]), median(&report.per_frame[unscaled..]));
    println!(
        "ground truth / prediction: {in_units:.3} in network units (first {unscaled} frames), \
         {in_metres:.3} with the speed scale; scale median {:.3} m/unit; abs_rel {:.3}",
        summary.scale_median, report.mean.abs_rel
    );
    assert!(unscaled > 0 && unscaled < 40, "{summary:?}");
    assert!(in_units > 2.0, "the network's units are not metres here: {in_units}");
    assert!((1.0 / 1.5..1.5).contains(&in_metres), "not metric: {in_metres}");
}

#[test]
fn a_speed_sidecar_with_a_bad_row_is_refused_naming_file_and_line() {
    let (Some(model), Some(kitchen)) =
        (common::shared("models/rtmonodepth_s/m_640x192"), common::shared("data/kitchen"))
    else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let speed = dir.path().join("speed.csv");
    std::fs::write(&speed, "time,speed\n0.0,1.0\n0.1,fast\n").unwrap();
    let dataset = format!("kitchen:{}", kitchen.display());
    let speed_arg = speed.to_str().unwrap();
    let output = eval_on(
        &dataset,
        &model,
        &["--frames", "0..20", "--adapt", "--metric-scale", "speed", "--speed-file", speed_arg],
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "a bad sidecar must be refused");
    let at = format!("{}:3:", speed.display());
    assert!(stderr.contains(&at) && stderr.contains("speed `fast`"), "{stderr}");
    // Without --adapt there is nothing to measure the scale against.
    let output = eval_on(&dataset, &model, &["--frames", "0..5", "--metric-scale", "speed"]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success() && stderr.contains("add --adapt"), "{stderr}");
}

/// `run --adapt --metric-scale speed --speed-file F` on a rendered drive: the run completes, its
/// report names the source and accounts for every frame; without --adapt it is refused saying
/// so.
#[cfg(feature = "torch")]
#[test]
fn run_takes_the_speed_scale_from_its_adapter() {
    use livedepth::app::adapt::{AdaptOptions, PoseInit};
    use livedepth::app::live::{LiveOptions, run_live};
    use livedepth::train::TrainedModel;
    let model = TrainedModel::open(&common::repo_root().join(livedepth::app::demo::BASE_MODEL_DIR))
        .expect("the committed base model opens");
    let dir = tempfile::tempdir().unwrap();
    let drive = dir.path().join("drive");
    let renderer = Renderer::new(&RenderConfig {
        width: 320,
        height: 96,
        frames: 24,
        seed: 6152,
        supersample: 1,
        ..RenderConfig::default()
    })
    .unwrap();
    livedepth::synth::write_dataset(&renderer, &drive, false).unwrap();
    let out = dir.path().join("out");
    let config_text = format!(
        r#"
[source]
uri = "kitti:{drive}"
[network]
arch = "rtmonodepth-s"
width = 320
height = 96
model = "{model}"
metric_scale = "speed"
speed_file = "{speed}"
[outputs]
dir = "{out}"
depth_png = true
"#,
        drive = drive.display(),
        model = model.depth.display(),
        speed = drive.join("speed.csv").display(),
        out = out.display()
    );
    let config = livedepth::config::Config::from_toml_str(&config_text, Path::new("<test>"))
        .expect("config");
    let adapt = AdaptOptions {
        pose_model: Some(model.pose.clone()),
        pose_init: PoseInit::DepthEncoder,
        ..AdaptOptions::default()
    };
    let report = run_live(&LiveOptions {
        config: config.clone(),
        model: None,
        max_frames: None,
        adapt: Some(adapt),
    })
    .expect("run --adapt --metric-scale speed");
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("run_report.json")).unwrap())
            .unwrap();
    let scale = &json["metric_scale"];
    println!("{scale}");
    assert_eq!(scale["source"]["source"], "speed", "{scale}");
    let counted: u64 =
        ["measured", "previous", "unscaled"].iter().map(|k| scale[k].as_u64().unwrap_or(0)).sum();
    assert_eq!(counted, report.frames_delivered, "every frame has a scale entry");
    assert!(out.join("depth/000023.png").exists());

    let refused = run_live(&LiveOptions { config, model: None, max_frames: Some(2), adapt: None })
        .unwrap_err();
    assert!(refused.to_string().contains("add --adapt"), "{refused}");
}
