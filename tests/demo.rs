//! `livedepth demo`. Without ../shared (`--scene synthetic`): with the committed base model it
//! renders an unseen drive,
//! replays it through GStreamer at the camera's frame rate (paced) with live depth and online
//! adaptation, and writes every promised artefact (mp4 of the drive, colourised depth video,
//! depth PNGs, frozen-vs-adapted report in JSON, abs_rel-over-time SVG, and the side-by-side
//! video input | frozen depth | adapted depth, which decodes back frame for frame); a missing
//! model is a clear error naming it. With ../shared (the default scene there): it replays the
//! real kitchen_val recording with the KITTI model at the adaptation defaults and scores exactly
//! what `eval --adapt` without flags scores. Nothing here asserts a timing: how many frames the paced
//! live replay delivers and how many steps the adapter takes meanwhile depend on the machine.
#![cfg(feature = "torch")]

mod common;

use livedepth::adapt::AdaptConfig;
use livedepth::app::adapt::{AdaptOptions, evaluate_adapt};
use livedepth::app::demo::{
    BASE_MODEL_DIR, DemoOptions, SceneChoice, demo_render_config, resolve_model, run_demo,
};
use livedepth::app::eval::{EvalOptions, EvalReport};
use livedepth::engine::EngineKind;
use livedepth::frame::RgbImage;
use livedepth::sink::side_by_side::STRIP_HEIGHT;
use livedepth::source::Source;
use livedepth::source::dataset::FrameSelection;
use livedepth::source::gst::{GstOptions, GstSource};
use std::path::Path;
use std::time::Duration;

/// Every frame of the video at `path`, decoded through the project's GStreamer file source.
fn decode(path: &Path) -> Vec<RgbImage> {
    let options =
        GstOptions { live: Some(false), timeout: Duration::from_secs(30), ..Default::default() };
    let mut source = GstSource::open(&format!("file://{}", path.display()), &options).unwrap();
    let mut frames = Vec::new();
    while let Some(frame) = source.next_frame().unwrap() {
        frames.push(frame.rgb);
    }
    frames
}

/// The `w` x `h` block of `image` whose top-left corner is (`x`, `y`).
fn crop(image: &RgbImage, x: u32, y: u32, w: u32, h: u32) -> RgbImage {
    let mut out = RgbImage::new(w, h);
    for row in 0..h {
        let src = 3 * ((y + row) * image.width + x) as usize;
        let dst = 3 * (row * w) as usize;
        out.data[dst..dst + 3 * w as usize].copy_from_slice(&image.data[src..src + 3 * w as usize]);
    }
    out
}

#[test]
fn the_demo_writes_every_artefact_with_the_committed_base_model() {
    let model = common::repo_root().join(BASE_MODEL_DIR);
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("demo");
    // At least 2·6 + 1 frames, so that triplets form at any default spacing (k up to 6).
    let frames = 16;
    let report = run_demo(&DemoOptions {
        out: out.clone(),
        scene: SceneChoice::Synthetic,
        frames: Some(frames),
        seed: 77,
        model: Some(model.clone()),
        steps_per_frame: Some(1),
        live: true,
        threads: Some(1),
        // The live replay serves through the onnxruntime engine (adapted weights reach it by
        // background session rebuilds); the lock-step comparison is the same either way.
        engine: EngineKind::OnnxRuntime,
    })
    .expect("the demo runs without ../shared");

    // The base model resolves from its sidecar: its own size and pose weights.
    assert_eq!(report.model.depth, model.join("depth.safetensors"));
    assert_eq!(report.model.pose.as_deref(), Some(model.join("pose.safetensors").as_path()));
    assert_eq!((report.model.width, report.model.height), (320, 96));

    // The drive and the live outputs.
    assert!(std::fs::metadata(out.join("drive.mp4")).unwrap().len() > 1000);
    // The live replay is paced like a camera (a busy machine may drop frames, as a camera
    // would; how many is a timing and is not asserted).
    let replay = report.live.as_ref().expect("the live replay ran");
    assert!(replay.uri.contains("identity sync=true"), "not paced: {}", replay.uri);
    assert_eq!(replay.camera_fps, report.scene.fps);
    assert!((1..=frames as u64).contains(&replay.frames_delivered), "{replay:?}");
    assert_eq!(replay.adapt_steps, replay.adapt.steps);
    let live = out.join("live");
    assert!(std::fs::metadata(live.join("depth.mp4")).unwrap().len() > 1000);
    let pngs = std::fs::read_dir(live.join("depth"))
        .unwrap()
        .filter(|e| e.as_ref().unwrap().path().extension().is_some_and(|x| x == "png"))
        .count();
    assert_eq!(pngs as u64, replay.frames_delivered);
    let run_report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(live.join("run_report.json")).unwrap())
            .unwrap();
    assert_eq!(run_report["engine"], "onnxruntime");
    let swaps = &run_report["weight_swaps"];
    assert_eq!(swaps["failures"], 0, "{swaps}");
    assert_eq!(
        swaps["publish_to_live_ms"].as_array().unwrap().len() as u64,
        swaps["swaps"].as_u64().unwrap()
    );

    // Frozen and adapted scored on the same frames; adaptation took steps.
    assert_eq!(report.frozen.per_frame.len(), frames);
    assert_eq!(report.adapted.per_frame.len(), frames);
    for (f, a) in report.frozen.per_frame.iter().zip(&report.adapted.per_frame) {
        assert_eq!(f.frame, a.frame);
    }
    // The first frame is predicted before any step: identical in both runs.
    assert_eq!(
        report.frozen.per_frame[0].metrics.abs_rel,
        report.adapted.per_frame[0].metrics.abs_rel
    );
    assert!(report.adapt_stats.steps > 0, "{:?}", report.adapt_stats);
    assert!(report.frozen.values().iter().chain(&report.adapted.values()).all(|v| v.is_finite()));
    assert!(report.table().contains("frozen") && report.table().contains("adapted"));
    // The same adaptation in metres: the speed source's scale, no median scaling.
    assert_eq!(report.metric.per_frame.len(), frames);
    assert!(!report.metric.protocol.median_scaling);
    let scale = report.metric.metric_scale.as_ref().expect("the speed source reports its scale");
    assert!(scale.scale_median.is_finite() && scale.scale_median > 0.0, "{scale:?}");
    assert!(report.metric.values().iter().all(|v| v.is_finite()));
    assert!(report.table().contains("metres") && report.table().contains("--metric-scale speed"));

    // The JSON report and the plot.
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("report.json")).unwrap()).unwrap();
    for key in
        ["frozen", "adapted", "metric", "windows", "adapt_stats", "scene", "model", "side_by_side"]
    {
        assert!(json.get(key).is_some(), "report.json lacks `{key}`");
    }
    assert_eq!(json["scene"]["kind"], "synthetic");
    for key in ["adapt_steps", "delivered_fps", "frames_delivered", "frames_dropped"] {
        assert!(json["live"].get(key).is_some(), "report.json lacks `live.{key}`");
    }
    assert!(report.table().contains("change"));
    assert!(report.side_by_side.exists());
    assert!(json["frozen"]["abs_rel"].as_f64().is_some());
    assert!(json["adapted"]["a1"].as_f64().is_some());
    assert!(json["metric"]["metric_scale"]["scale_median"].as_f64().is_some());
    assert!(out.join("eval_metric.json").exists());
    let svg = std::fs::read_to_string(out.join("abs_rel_over_time.svg")).unwrap();
    assert!(svg.starts_with("<svg") || svg.contains("<svg"));
    assert!(svg.contains("frozen") && svg.contains("adapted"));
}

#[test]
fn the_side_by_side_video_shows_input_frozen_and_adapted_for_every_frame() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("demo");
    let frames = 8;
    let report = run_demo(&DemoOptions {
        out: out.clone(),
        scene: SceneChoice::Synthetic,
        frames: Some(frames),
        seed: 78,
        model: Some(common::repo_root().join(BASE_MODEL_DIR)),
        steps_per_frame: Some(1),
        live: false,
        threads: Some(1),
        engine: EngineKind::Torch,
    })
    .expect("the demo runs without its live part");
    assert!(report.live.is_none());
    assert_eq!(report.scene.kind, "synthetic");
    let path = out.join("side_by_side.mp4");
    assert_eq!(report.side_by_side, path);
    assert!(report.outputs.contains(&path.display().to_string()));

    let decoded = decode(&path);
    let scene = demo_render_config(frames, 78);
    let (column, height) = (scene.width, scene.height);
    assert_eq!(decoded.len(), frames, "one video frame per lock-step frame");
    for (i, image) in decoded.iter().enumerate() {
        assert_eq!(image.width, 3 * column, "frame {i}: three columns");
        assert_eq!(image.height, height + STRIP_HEIGHT, "frame {i}: the columns and the strip");
    }
    // The first frame is predicted before any adaptation step: the frozen and the adapted
    // columns show the same depth (up to compression), and neither is the input.
    let first = &decoded[0];
    let below_titles = 40;
    let part = |c: u32| crop(first, c * column, below_titles, column, height - below_titles);
    let (input, frozen, adapted) = (part(0), part(1), part(2));
    assert!(common::psnr(&frozen, &adapted) > 35.0, "{}", common::psnr(&frozen, &adapted));
    assert!(common::psnr(&input, &frozen) < 25.0, "{}", common::psnr(&input, &frozen));

    // The demo's lock-step runs (which also hand out the predictions for the video) score
    // exactly as `eval --adapt` (`evaluate_adapt`) does with the same settings: one seed, one
    // set of numbers.
    let adapt = AdaptOptions {
        config: report.adapt_config.clone(),
        pose_model: report.model.pose.clone(),
        print_every: 0,
        ..AdaptOptions::default()
    };
    let eval = EvalOptions {
        dataset: report.scene.dataset_spec.clone(),
        model: report.model.depth.clone(),
        arch: report.model.arch,
        width: report.model.width,
        height: report.model.height,
        selection: FrameSelection::all(),
        no_median_scaling: false,
        json: None,
        plot: None,
        progress: false,
        engine: EngineKind::Torch,
        metric_scale: Default::default(),
    };
    let (reference, stats) = evaluate_adapt(&eval, &adapt).unwrap();
    assert_eq!(stats.steps, report.adapt_stats.steps);
    let abs_rel =
        |r: &EvalReport| r.per_frame.iter().map(|f| f.metrics.abs_rel).collect::<Vec<_>>();
    assert_eq!(abs_rel(&reference), abs_rel(&report.adapted));
}

#[test]
fn a_missing_model_is_an_error_naming_it() {
    let tmp = tempfile::tempdir().unwrap();
    let err = run_demo(&DemoOptions {
        out: tmp.path().join("demo"),
        model: Some("/nonexistent/model".into()),
        ..DemoOptions::default()
    })
    .unwrap_err()
    .to_string();
    assert!(err.contains("/nonexistent/model"), "{err}");
    let err = resolve_model(std::path::Path::new("/nonexistent/model")).unwrap_err().to_string();
    assert!(err.contains("train.json"), "{err}");
}

#[test]
fn with_shared_the_demo_replays_the_real_recording_at_the_adaptation_defaults() {
    let (Some(recording), Some(kitti_model)) =
        (common::shared("data/kitchen_val"), common::shared("models/rtmonodepth_s/m_640x192"))
    else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("demo");
    let frames = 14;
    let report = run_demo(&DemoOptions {
        out: out.clone(),
        scene: SceneChoice::Recorded(recording.clone()),
        frames: Some(frames),
        model: Some(kitti_model.clone()),
        live: true,
        ..DemoOptions::default()
    })
    .expect("the demo replays the recording");

    // The real recording, as a 30 fps camera recorded it, with its calibration.
    assert_eq!(report.scene.kind, "recorded");
    assert_eq!(report.scene.frames, frames);
    assert!((report.scene.fps - 30.0).abs() < 0.01, "{}", report.scene.fps);
    assert_eq!((report.scene.width, report.scene.height), (640, 480));
    assert_eq!(report.scene.camera.fx, 585.0);
    assert!(report.scene.dataset_spec.starts_with("kitchen:"));
    assert!(std::fs::metadata(out.join("recording.mp4")).unwrap().len() > 1000);
    // The KITTI model at the adaptation's default size, with the adaptation's defaults.
    assert_eq!(report.model.depth, kitti_model);
    assert_eq!((report.model.width, report.model.height), (128, 96));
    assert_eq!(report.adapt_config, AdaptConfig::default());
    let replay = report.live.as_ref().expect("the live replay ran");
    assert!(replay.uri.contains("recording.mp4"), "{}", replay.uri);
    assert!((1..=frames as u64).contains(&replay.frames_delivered), "{replay:?}");

    // The side-by-side video: one frame per lock-step frame, three 640-wide columns.
    let decoded = decode(&report.side_by_side);
    assert_eq!(decoded.len(), frames);
    assert_eq!((decoded[0].width, decoded[0].height), (3 * 640, 480 + STRIP_HEIGHT));

    // The lock-step runs score exactly what `eval --adapt` without flags scores.
    let eval = common::eval_options(
        format!("kitchen:{}", recording.display()),
        kitti_model,
        (128, 96),
        FrameSelection { start: 0, end: Some(frames), step: 1 },
    );
    let (reference, stats) =
        evaluate_adapt(&eval, &AdaptOptions { print_every: 0, ..AdaptOptions::default() }).unwrap();
    assert!(stats.steps > 0, "{stats:?}");
    assert_eq!(stats.steps, report.adapt_stats.steps);
    let abs_rel =
        |r: &EvalReport| r.per_frame.iter().map(|f| f.metrics.abs_rel).collect::<Vec<_>>();
    assert_eq!(abs_rel(&reference), abs_rel(&report.adapted));
    assert_eq!(report.frozen.per_frame.len(), frames);
}
