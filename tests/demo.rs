//! `livedepth demo` without ../shared: with the committed base model it renders an unseen drive,
//! replays it through GStreamer with live depth and online adaptation, and writes every promised
//! artefact (mp4 of the drive, colourised depth video, depth PNGs, frozen-vs-adapted report in
//! JSON, abs_rel-over-time SVG); a missing model is a clear error naming it.
#![cfg(feature = "torch")]

mod common;

use livedepth::app::demo::{BASE_MODEL_DIR, DemoOptions, resolve_model, run_demo};

#[test]
fn the_demo_writes_every_artefact_with_the_committed_base_model() {
    let model = common::repo_root().join(BASE_MODEL_DIR);
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("demo");
    let frames = 10;
    let report = run_demo(&DemoOptions {
        out: out.clone(),
        frames,
        seed: 77,
        model: Some(model.clone()),
        steps_per_frame: 1,
        live: true,
        threads: Some(1),
    })
    .expect("the demo runs without ../shared");

    // The base model resolves from its sidecar: its own size and pose weights.
    assert_eq!(report.model.depth, model.join("depth.safetensors"));
    assert_eq!(report.model.pose.as_deref(), Some(model.join("pose.safetensors").as_path()));
    assert_eq!((report.model.width, report.model.height), (320, 96));

    // The drive and the live outputs.
    assert!(std::fs::metadata(out.join("drive.mp4")).unwrap().len() > 1000);
    assert_eq!(report.live_frames, frames as u64);
    let live = out.join("live");
    assert!(std::fs::metadata(live.join("depth.mp4")).unwrap().len() > 1000);
    let pngs = std::fs::read_dir(live.join("depth"))
        .unwrap()
        .filter(|e| e.as_ref().unwrap().path().extension().is_some_and(|x| x == "png"))
        .count();
    assert_eq!(pngs, frames);

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

    // The JSON report and the plot.
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("report.json")).unwrap()).unwrap();
    for key in ["frozen", "adapted", "windows", "adapt_stats", "scene", "model"] {
        assert!(json.get(key).is_some(), "report.json lacks `{key}`");
    }
    assert!(json["frozen"]["abs_rel"].as_f64().is_some());
    assert!(json["adapted"]["a1"].as_f64().is_some());
    let svg = std::fs::read_to_string(out.join("abs_rel_over_time.svg")).unwrap();
    assert!(svg.starts_with("<svg") || svg.contains("<svg"));
    assert!(svg.contains("frozen") && svg.contains("adapted"));
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
