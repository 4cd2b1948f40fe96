//! The ONNX Runtime engine (`--engine onnxruntime`, the `ort` crate loading the onnxruntime
//! wheel that scripts/setup.sh installs) against the libtorch engine on real data:
//! - disparity of the real KITTI RT-MonoDepth-S model on a real KITTI frame within 1e-4 of
//!   libtorch's, and both pose networks within 1e-4 (and 1e-3 of their magnitude);
//! - adapted weights published by the adapter's exchange reach the engine through a session
//!   rebuilt on a background thread: the first refresh only hands them over, a later one swaps
//!   the new session in, and it then serves exactly the new weights;
//! - `eval --engine onnxruntime` reproduces the published KITTI tiny accuracy (abs_rel 0.128 ±
//!   0.003), `run --engine auto` reports which backend it measured fastest, and a missing
//!   library is named with what to do.
#![cfg(feature = "onnxruntime")]

mod common;
mod model_support;

use livedepth::adapt::weights_exchange;
use livedepth::engine::{
    DepthEngine, OrtDepthEngine, OrtOptions, OrtPoseEngine, PoseEngine, TorchDepthEngine,
    TorchPoseEngine,
};
use livedepth::model::network::{DepthNetwork, PoseNetwork};
use livedepth::model::{Arch, PoseArch};
use model_support::{load_rgb, max_abs_diff};
use std::path::PathBuf;
use tch::Device;

const KITTI_MODEL: &str = "models/rtmonodepth_s/m_640x192";

fn kitti_frame(i: usize) -> Option<PathBuf> {
    common::shared(&format!(
        "data/kitti_tiny/2011_09_26/2011_09_26_drive_0023_sync/image_02/data/{i:010}.png"
    ))
}

fn cpu_options() -> OrtOptions {
    OrtOptions { threads: 1, ..OrtOptions::default() }
}

#[test]
fn onnxruntime_depth_matches_libtorch_on_a_real_kitti_frame() {
    let (Some(model), Some(frame)) = (common::shared(KITTI_MODEL), kitti_frame(0)) else {
        return;
    };
    let image = load_rgb(&frame);
    let load = || DepthNetwork::load(&model, Arch::RtMonoDepthS, Device::Cpu).unwrap();
    let mut torch = TorchDepthEngine::new(load(), 640, 192, 1).unwrap();
    let mut ort = OrtDepthEngine::new(load(), 640, 192, cpu_options()).unwrap();
    let ours = ort.predict_disparity(&image).unwrap();
    let reference = torch.predict_disparity(&image).unwrap();
    assert_eq!((ours.width, ours.height), (640, 192));
    let diff = max_abs_diff(&ours.data, &reference.data);
    println!("KITTI frame 0, 640x192: max |Δdisp| onnxruntime vs libtorch {diff:.2e}");
    assert!(diff < 1e-4, "max |Δdisp| {diff}");
    assert!(ours.data.iter().any(|&d| d > 0.01), "a real frame gives a non-trivial disparity");

    // The live path's entry point: a planar input prepared with the engine's normalisation.
    let (mean, std) = ort.input_normalisation();
    assert_eq!((mean, std), ([0.0; 3], [1.0; 3]), "the graph normalises inside");
    let mut pre = livedepth::engine::Preprocessor::new(640, 192, mean, std).unwrap();
    let mut planar = vec![0f32; pre.output_len()];
    pre.run(&image, &mut planar).unwrap();
    let mut out = vec![0f32; 640 * 192];
    ort.forward_planar(&planar, &mut out).unwrap();
    assert!(max_abs_diff(&out, &ours.data) < 1e-6);
    assert!(ort.forward_planar(&planar[1..], &mut out).is_err(), "a short input is refused");
}

#[test]
fn onnxruntime_pose_matches_libtorch_for_both_pose_networks() {
    let (Some(a), Some(b)) = (kitti_frame(0), kitti_frame(1)) else { return };
    let (first, second) = (load_rgb(&a), load_rgb(&b));
    for (seed, arch) in [(3, PoseArch::RtMonoDepthSPose), (4, PoseArch::Monodepth2R18)] {
        tch::manual_seed(seed);
        let network = PoseNetwork::new(arch, Device::Cpu);
        let mut ort = OrtPoseEngine::new(&network, 192, 64, &cpu_options()).unwrap();
        let ours = ort.predict_pose(&first, &second).unwrap();
        let mut torch = TorchPoseEngine::new(network, 192, 64).unwrap();
        let reference = torch.predict_pose(&first, &second).unwrap();
        let ours_all: Vec<f32> = ours.axis_angle.into_iter().chain(ours.translation).collect();
        let ref_all: Vec<f32> =
            reference.axis_angle.into_iter().chain(reference.translation).collect();
        let diff = max_abs_diff(&ours_all, &ref_all);
        let magnitude = ref_all.iter().fold(0f32, |m, v| m.max(v.abs()));
        println!("{arch:?}: {ours:?} vs {reference:?}, max |Δ| {diff:.2e}");
        assert!(magnitude > 0.0, "a fresh network predicts some motion");
        assert!(diff < 1e-4 && diff < 1e-3 * magnitude.max(1e-3), "{arch:?}: max |Δ| {diff}");
    }
}

#[test]
fn adapted_weights_reach_the_onnxruntime_engine_through_a_background_rebuild() {
    let (Some(model), Some(frame)) = (common::shared(KITTI_MODEL), kitti_frame(2)) else {
        return;
    };
    let image = load_rgb(&frame);
    let load = || DepthNetwork::load(&model, Arch::RtMonoDepthS, Device::Cpu).unwrap();
    let mut engine = OrtDepthEngine::new(load(), 128, 96, cpu_options()).unwrap();
    let before = engine.predict_disparity(&image).unwrap();

    // "Adapted" weights: every decoder weight scaled by 1.05.
    let mut adapted = load();
    model_support::scale_decoder_weights(&mut adapted, 1.05);
    let (mut publisher, receiver) = weights_exchange();
    assert!(!engine.refresh_weights(&receiver).unwrap(), "nothing published yet");
    publisher.publish(&adapted).unwrap();
    assert!(
        !engine.refresh_weights(&receiver).unwrap(),
        "the first refresh hands the weights to the rebuild thread and returns at once"
    );
    assert_eq!(receiver.installed(), 1, "the engine took the published network");
    let mut swapped = false;
    for _ in 0..6000 {
        // Frames go on being served with the old weights while the rebuild runs.
        let served = engine.predict_disparity(&image).unwrap();
        if engine.refresh_weights(&receiver).unwrap() {
            swapped = true;
            break;
        }
        assert!(max_abs_diff(&served.data, &before.data) < 1e-6, "old weights until the swap");
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    assert!(swapped, "the rebuilt session never went live (waited 60 s)");
    let swaps = engine.weight_swaps();
    assert_eq!(swaps.swaps, 1);
    assert_eq!((swaps.publish_to_live_ms.len(), swaps.rebuild_ms.len()), (1, 1));
    assert_eq!(swaps.failures, 0);
    println!(
        "publish → live {:.1} ms (rebuild {:.1} ms on the background thread, install {:.3} ms)",
        swaps.publish_to_live_ms[0], swaps.rebuild_ms[0], swaps.install_ms[0]
    );

    let after = engine.predict_disparity(&image).unwrap();
    let mut torch = TorchDepthEngine::new(adapted, 128, 96, 1).unwrap();
    let expected = torch.predict_disparity(&image).unwrap();
    let diff = max_abs_diff(&after.data, &expected.data);
    let change = max_abs_diff(&after.data, &before.data);
    println!(
        "after the swap: max |Δ| vs libtorch with the adapted weights {diff:.2e}; change {change:.2e}"
    );
    assert!(diff < 1e-4, "the engine serves the adapted weights (max |Δ| {diff})");
    assert!(change > 1e-3, "the adapted weights change the output ({change})");

    // A second publication goes through the same thread.
    publisher.publish(&load()).unwrap();
    let mut again = false;
    for _ in 0..6000 {
        if engine.refresh_weights(&receiver).unwrap() {
            again = true;
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    assert!(again, "the second publication never went live");
    let restored = engine.predict_disparity(&image).unwrap();
    assert!(max_abs_diff(&restored.data, &before.data) < 1e-5, "back to the original weights");
    assert_eq!(engine.weight_swaps().swaps, 2);
}

fn eval_json(
    engine: &str,
    extra_env: Option<(&str, &str)>,
) -> Option<(std::process::Output, PathBuf)> {
    let model = common::shared(KITTI_MODEL)?;
    let kitti = common::shared("data/kitti_tiny")?;
    let dir = tempfile::tempdir().unwrap().keep();
    let json = dir.join("eval.json");
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_livedepth"));
    cmd.args(["eval", "--quiet", "--engine", engine, "--dataset"])
        .arg(format!("kitti:{}", kitti.display()))
        .arg("--model")
        .arg(&model)
        .arg("--json")
        .arg(&json);
    if let Some((k, v)) = extra_env {
        cmd.env(k, v);
    }
    Some((cmd.output().unwrap(), json))
}

#[test]
fn eval_with_onnxruntime_reproduces_the_published_kitti_accuracy() {
    let Some((output, json)) = eval_json("onnxruntime", None) else { return };
    print!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(output.status.success());
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert_eq!(report["engine"], "onnxruntime");
    assert_eq!(report["frames"].as_u64(), Some(7));
    let abs_rel = report["abs_rel"].as_f64().unwrap();
    assert!((abs_rel - 0.128).abs() <= 0.003, "abs_rel {abs_rel}");
}

#[test]
fn a_missing_onnxruntime_library_is_named_with_what_to_do() {
    let missing = "/nonexistent/libonnxruntime.so.1.32.0";
    let Some((output, _)) = eval_json("onnxruntime", Some(("ORT_DYLIB_PATH", missing))) else {
        return;
    };
    let stderr = String::from_utf8_lossy(&output.stderr);
    println!("{stderr}");
    assert!(!output.status.success());
    assert!(stderr.contains("ORT_DYLIB_PATH") && stderr.contains(missing), "{stderr}");
    // `auto` goes on without it and says why.
    let Some((output, json)) = eval_json("auto", Some(("ORT_DYLIB_PATH", missing))) else {
        return;
    };
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert!(stderr.contains("onnxruntime unavailable") && stderr.contains(missing), "{stderr}");
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert_eq!(report["engine"], "torch");
}

#[test]
fn run_engine_auto_measures_the_backends_and_reports_its_choice() {
    let (Some(_), Some(_)) = (common::shared(KITTI_MODEL), common::shared("data/kitti_tiny"))
    else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    let output = common::livedepth(&[
        "run",
        "--config",
        "configs/kitti.toml",
        "--frames",
        "3",
        "--engine",
        "auto",
        "--out",
        out.to_str().unwrap(),
    ]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    println!("{stderr}");
    assert!(output.status.success(), "{stderr}");
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("run_report.json")).unwrap())
            .unwrap();
    assert_eq!(report["frames_delivered"].as_u64(), Some(3));
    let engine = report["engine"].as_str().unwrap();
    assert!(engine == "torch" || engine == "onnxruntime", "{engine}");
    let choice = report["engine_choice"].as_str().unwrap();
    for measured in ["torch", "onnxruntime", "ms/frame", "tensorrt unavailable"] {
        assert!(choice.contains(measured), "{choice}");
    }
    assert!(choice.starts_with(engine), "{choice}");
}
