//! `livedepth bench infer` end to end on a tiny size: it prints a timing row with the PyTorch
//! peer's figures and their ratio, a line for the onnxruntime peer on our own ONNX export, the two runtimes agree on the disparity when they share the
//! shared checkpoint, and a bad `--sizes` value is a clear error.
#![cfg(feature = "torch")]

mod common;

use std::process::Command;

fn livedepth() -> Command {
    Command::new(env!("CARGO_BIN_EXE_livedepth"))
}

#[test]
fn bench_infer_prints_rust_and_peer_timings() {
    let python = common::python();
    let out = livedepth()
        .args([
            "bench",
            "infer",
            "--sizes",
            "64x32",
            "--iters",
            "2",
            "--warmup",
            "1",
            "--threads",
            "1",
        ])
        .arg("--python")
        .arg(&python)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    println!("{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success());
    let row = stdout.lines().find(|l| l.trim_start().starts_with("64x32 |")).expect("a 64x32 row");
    let cols: Vec<&str> = row.split_whitespace().filter(|c| *c != "|").collect();
    // size, rust, enc, dec, torch, enc, dec, torch-cl, ratio, r(cl), preproc, max|Δd|
    assert_eq!(cols.len(), 12, "{row}");
    for c in &cols[1..11] {
        let v: f64 = c.parse().unwrap_or_else(|_| panic!("`{c}` in {row}"));
        assert!(v > 0.0 && v.is_finite(), "{row}");
    }
    if common::shared("models/rtmonodepth_s/m_640x192").is_some() {
        let diff: f64 = cols[11].parse().unwrap();
        assert!(diff < 1e-4, "disparity mismatch {diff}");
    }
    assert!(stdout.contains("where the time goes"));
    // TensorRT has a row: measured on a GPU with TensorRT, else the reason it was not.
    let trt = stdout.lines().find(|l| l.contains("tensorrt")).expect("a tensorrt line");
    assert!(
        trt.contains("ratio torch engine / tensorrt engine")
            || (trt.contains("tensorrt not measured (") && trt.len() > 60),
        "{trt}"
    );
    // The onnxruntime peer runs our own ONNX export of the same weights on the same frame.
    let ort = stdout.lines().find(|l| l.contains("onnxruntime")).expect("an onnxruntime line");
    let ratio: f64 = ort
        .split("rust ")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .and_then(|r| r.parse().ok())
        .unwrap_or_else(|| panic!("a ratio in {ort}"));
    assert!(ratio > 0.0 && ratio.is_finite(), "{ort}");
    let diff: f64 = ort
        .rsplit("max|Δd| ")
        .next()
        .and_then(|d| d.trim().parse().ok())
        .unwrap_or_else(|| panic!("a disparity difference in {ort}"));
    assert!(diff < 1e-4, "onnxruntime disagrees with the engine by {diff}: {ort}");
}

#[test]
fn bench_infer_rejects_bad_sizes() {
    let out =
        livedepth().args(["bench", "infer", "--sizes", "65x32", "--no-peer"]).output().unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("--sizes") && stderr.contains("65x32") && stderr.contains("32"),
        "{stderr}"
    );
}
