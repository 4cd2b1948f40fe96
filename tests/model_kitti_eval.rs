//! Acceptance of the network and the evaluation protocol: the acceptance command
//! `livedepth eval --dataset kitti:../shared/data/kitti_tiny --model …/m_640x192 --arch
//! rtmonodepth-s` must give abs_rel 0.128 ± 0.003 and a1 0.871 ± 0.005 (the published accuracy
//! of this model on these 7 frames), and agree per frame with the independent Python evaluation
//! in tests/python (its own forward pass, PIL resize and numpy metrics).
#![cfg(feature = "torch")]

mod common;
mod model_support;

use model_support::*;
use std::process::Command;

#[test]
fn eval_command_reproduces_published_accuracy_on_kitti_tiny() {
    let Some(model) = common::shared("models/rtmonodepth_s/m_640x192") else { return };
    let Some(kitti) = common::shared("data/kitti_tiny") else { return };
    let dir = tempfile::tempdir().unwrap();
    let json_path = dir.path().join("eval.json");
    let output = Command::new(env!("CARGO_BIN_EXE_livedepth"))
        .args(["eval", "--arch", "rtmonodepth-s", "--quiet", "--dataset"])
        .arg(format!("kitti:{}", kitti.display()))
        .arg("--model")
        .arg(&model)
        .arg("--json")
        .arg(&json_path)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    println!("{stdout}{}", String::from_utf8_lossy(&output.stderr));
    assert!(output.status.success());
    assert!(stdout.contains("abs_rel"), "the metrics table is printed");
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json_path).unwrap()).unwrap();
    let abs_rel = report["abs_rel"].as_f64().unwrap();
    let a1 = report["a1"].as_f64().unwrap();
    assert_eq!(report["frames"].as_u64(), Some(7));
    assert!((abs_rel - 0.128).abs() <= 0.003, "abs_rel {abs_rel}");
    assert!((a1 - 0.871).abs() <= 0.005, "a1 {a1}");
    let per_frame = report["per_frame"].as_array().unwrap();
    assert_eq!(per_frame.len(), 7);

    let python = common::python();
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
        for key in ["abs_rel", "a1"] {
            let (a, b) = (ours[key].as_f64().unwrap(), theirs[key].as_f64().unwrap());
            let tolerance = if key == "abs_rel" { 2e-4 } else { 2e-3 };
            assert!((a - b).abs() < tolerance, "frame {i}: {key} {a} vs Python {b}");
        }
    }
}
