//! `livedepth loss`, the npz file probe: outputs equal the library's, bad files give errors that
//! name the array, and (where the torch venv exists) the PyTorch peer reads the same file and
//! computes the same loss.

mod common;

use common::files::write_npz;
use livedepth::loss::{
    LossConfig, LossError, LossInputs, Pose6, SelfSupervisedLoss, probe, target_pyramid,
};
use std::path::Path;
use std::process::Command;

struct Fixture {
    w: usize,
    h: usize,
    target: Vec<f32>,
    sources: Vec<Vec<f32>>,
    disparities: Vec<Vec<f32>>,
    pyramid: Vec<Vec<f32>>,
    poses: Vec<Pose6>,
    intrinsics: [f32; 4],
    noise: Vec<f32>,
}

fn fixture() -> Fixture {
    let (w, h, scales) = (48usize, 32usize, 3usize);
    let img = |dx: f32| -> Vec<f32> {
        (0..3 * w * h)
            .map(|i| {
                let (c, p) = (i / (w * h), i % (w * h));
                let (x, y) = ((p % w) as f32 + dx, (p / w) as f32);
                0.5 + 0.3 * (0.4 * x + c as f32).sin() * (0.3 * y).cos()
                    + 0.1 * (1.7 * x - 0.9 * y).sin()
            })
            .collect()
    };
    let target = img(0.0);
    let disparities: Vec<Vec<f32>> = (0..scales)
        .map(|s| {
            (0..(w >> s) * (h >> s))
                .map(|i| 0.05 + 0.2 * ((i as f32 * 0.37).sin() * 0.5 + 0.5))
                .collect()
        })
        .collect();
    let pyramid = target_pyramid(&target, w, h, scales);
    Fixture {
        w,
        h,
        sources: vec![img(1.5), img(-1.0)],
        target,
        disparities,
        pyramid,
        poses: vec![
            Pose6 { axis_angle: [0.01, -0.02, 0.0], translation: [0.1, 0.0, 0.05], invert: true },
            Pose6 {
                axis_angle: [0.0, 0.015, 0.01],
                translation: [-0.08, 0.02, 0.0],
                invert: false,
            },
        ],
        intrinsics: [40.0, 38.0, 23.5, 15.5],
        noise: (0..2 * w * h).map(|i| 1e-5 * ((i as f32 * 1.3).sin())).collect(),
    }
}

fn with_inputs<R>(f: &Fixture, run: impl FnOnce(&LossInputs) -> R) -> R {
    let sources: Vec<&[f32]> = f.sources.iter().map(Vec::as_slice).collect();
    let disparities: Vec<&[f32]> = f.disparities.iter().map(Vec::as_slice).collect();
    let pyramid: Vec<&[f32]> = f.pyramid.iter().map(Vec::as_slice).collect();
    run(&LossInputs {
        width: f.w,
        height: f.h,
        target: &f.target,
        sources: &sources,
        disparities: &disparities,
        target_pyramid: &pyramid,
        poses: &f.poses,
        intrinsics: f.intrinsics,
        tie_break_noise: Some(&f.noise),
    })
}

fn read_f32(path: &Path, name: &str) -> (Vec<u64>, Vec<f32>) {
    let mut npz = npyz::npz::NpzArchive::open(path).expect("output npz");
    let array =
        npz.by_name(name).expect("readable").unwrap_or_else(|| panic!("array {name} missing"));
    let shape = array.shape().to_vec();
    (shape, array.into_vec().expect("float32"))
}

fn read_u8(path: &Path, name: &str) -> Vec<u8> {
    let mut npz = npyz::npz::NpzArchive::open(path).expect("output npz");
    npz.by_name(name).expect("readable").expect("present").into_vec().expect("uint8")
}

#[test]
fn probe_outputs_equal_the_library_outputs() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (inputs_path, out_path) = (dir.path().join("in.npz"), dir.path().join("out.npz"));
    let f = fixture();
    let config = LossConfig::default();
    with_inputs(&f, |inputs| probe::write_probe_inputs(&inputs_path, inputs, &config))
        .expect("write inputs");
    let status = Command::new(env!("CARGO_BIN_EXE_livedepth"))
        .args(["loss", "--inputs"])
        .arg(&inputs_path)
        .arg("--out")
        .arg(&out_path)
        .status()
        .expect("run livedepth");
    assert!(status.success());
    let expected =
        with_inputs(&f, |inputs| SelfSupervisedLoss::new(config).forward_backward(inputs).cloned())
            .expect("loss");
    assert_eq!(read_f32(&out_path, "total").1, vec![expected.total]);
    assert_eq!(read_f32(&out_path, "photometric").1, vec![expected.photometric]);
    assert_eq!(read_f32(&out_path, "smoothness").1, vec![expected.smoothness]);
    let (shape, min_error) = read_f32(&out_path, "min_error");
    assert_eq!(shape, vec![f.h as u64, f.w as u64]);
    assert_eq!(min_error, expected.min_error);
    assert_eq!(read_u8(&out_path, "automask"), expected.automask);
    assert_eq!(read_u8(&out_path, "winner"), expected.winner);
    for s in 0..3 {
        let (shape, grad) = read_f32(&out_path, &format!("grad_disp_{s}"));
        assert_eq!(shape, vec![(f.h >> s) as u64, (f.w >> s) as u64]);
        assert_eq!(grad, expected.grad_disparities[s]);
    }
    let (shape, grad_axis) = read_f32(&out_path, "grad_axis_angle");
    assert_eq!(shape, vec![2, 3]);
    let (_, grad_trans) = read_f32(&out_path, "grad_translation");
    for i in 0..2 {
        assert_eq!(&grad_axis[i * 3..i * 3 + 3], &expected.grad_poses[i][..3]);
        assert_eq!(&grad_trans[i * 3..i * 3 + 3], &expected.grad_poses[i][3..]);
    }
    assert_eq!(read_f32(&out_path, "grad_intrinsics").1, expected.grad_intrinsics.to_vec());
    assert!(expected.grad_poses.iter().all(|g| g.iter().any(|v| *v != 0.0)));

    // The PyTorch peer reads the same file and computes the same loss.
    let python = common::python();
    let script = common::repo_root().join("scripts/bench/loss_peer.py");
    let out = Command::new(python)
        .arg(script)
        .arg("--inputs")
        .arg(&inputs_path)
        .args(["--iters", "1", "--warmup", "0", "--threads", "1"])
        .output()
        .expect("run the peer");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON line");
    let peer = report["loss"].as_f64().expect("loss");
    println!("probe {} PyTorch peer {peer}", expected.total);
    assert!((peer - f64::from(expected.total)).abs() < 1e-5);
}

/// Writes an npz with the given float32 arrays.
fn valid_arrays(f: &Fixture) -> Vec<(&'static str, Vec<u64>, Vec<f32>)> {
    let (w, h) = (f.w as u64, f.h as u64);
    vec![
        ("target", vec![3, h, w], f.target.clone()),
        ("sources", vec![2, 3, h, w], f.sources.concat()),
        ("disp_0", vec![h, w], f.disparities[0].clone()),
        ("axis_angle", vec![2, 3], f.poses.iter().flat_map(|p| p.axis_angle).collect()),
        ("translation", vec![2, 3], f.poses.iter().flat_map(|p| p.translation).collect()),
        ("K", vec![4], f.intrinsics.to_vec()),
    ]
}

fn probe_error(arrays: &[(&str, Vec<u64>, Vec<f32>)]) -> String {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("in.npz");
    write_npz(&path, arrays);
    let out = dir.path().join("out.npz");
    let err = probe::run_probe(&path, &out).expect_err("bad input must fail");
    assert!(!out.exists(), "no output on failure");
    assert!(matches!(
        err,
        LossError::File { .. } | LossError::Shape { .. } | LossError::NonFinite { .. }
    ));
    err.to_string()
}

#[test]
fn minimal_inputs_work_and_bad_inputs_name_the_array() {
    let f = fixture();
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("in.npz");
    write_npz(&path, &valid_arrays(&f));
    let summary = probe::run_probe(&path, &dir.path().join("out.npz")).expect("minimal inputs");
    assert_eq!((summary.sources, summary.scales, summary.width, summary.height), (2, 1, f.w, f.h));

    let without =
        |name: &str| valid_arrays(&f).into_iter().filter(|a| a.0 != name).collect::<Vec<_>>();
    let msg = probe_error(&without("K"));
    assert!(msg.contains("`K`") && msg.contains("missing"), "{msg}");
    let msg = probe_error(&without("disp_0"));
    assert!(msg.contains("disp_0"), "{msg}");

    let mut bad = valid_arrays(&f);
    bad[2].2[17] = f32::NAN;
    let msg = probe_error(&bad);
    assert!(msg.contains("disp_0") && msg.contains("non-finite"), "{msg}");

    // Negative disparities were accepted silently before issue #13.
    let mut bad = valid_arrays(&f);
    bad[2].2[f.w + 3] = -0.25;
    let msg = probe_error(&bad);
    assert!(msg.contains("disp_0") && msg.contains("[0, 1]") && msg.contains("-0.25"), "{msg}");
    assert!(msg.contains("row 1, column 3"), "{msg}");

    let mut bad = valid_arrays(&f);
    bad[3].1 = vec![3, 2];
    let msg = probe_error(&bad);
    assert!(msg.contains("axis_angle") && msg.contains("[2, 3]"), "{msg}");

    let mut bad = valid_arrays(&f);
    bad[2] =
        ("disp_0", vec![f.h as u64 / 2, f.w as u64], f.disparities[0][..f.w * f.h / 2].to_vec());
    let msg = probe_error(&bad);
    assert!(msg.contains("disp_0") && msg.contains("expected shape"), "{msg}");
}

#[test]
fn missing_or_corrupt_files_fail_with_the_path() {
    let dir = tempfile::tempdir().expect("temp dir");
    let missing = dir.path().join("nope.npz");
    let out = Command::new(env!("CARGO_BIN_EXE_livedepth"))
        .args(["loss", "--inputs"])
        .arg(&missing)
        .arg("--out")
        .arg(dir.path().join("out.npz"))
        .output()
        .expect("run livedepth");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("nope.npz"), "{stderr}");
    let corrupt = dir.path().join("corrupt.npz");
    std::fs::write(&corrupt, b"this is not a zip file").unwrap();
    let err = probe::run_probe(&corrupt, &dir.path().join("out.npz")).expect_err("corrupt");
    assert!(err.to_string().contains("corrupt.npz") && err.to_string().contains("npz"), "{err}");
}

#[test]
fn bad_config_and_shapes_are_typed_errors() {
    let f = fixture();
    let config = LossConfig { max_depth: 0.05, ..LossConfig::default() };
    let err = with_inputs(&f, |inputs| {
        SelfSupervisedLoss::new(config).forward(inputs).map(|_| ()).unwrap_err()
    });
    assert!(err.to_string().contains("max_depth"), "{err}");
    let err = with_inputs(&f, |inputs| {
        let bad = LossInputs { poses: &inputs.poses[..1], ..*inputs };
        SelfSupervisedLoss::new(LossConfig::default()).forward(&bad).map(|_| ()).unwrap_err()
    });
    assert!(err.to_string().contains("poses"), "{err}");
    let mut nan_target = f.target.clone();
    nan_target[5] = f32::NAN;
    let err = with_inputs(&f, |inputs| {
        let bad = LossInputs { target: &nan_target, ..*inputs };
        SelfSupervisedLoss::new(LossConfig::default()).forward(&bad).map(|_| ()).unwrap_err()
    });
    assert!(matches!(err, LossError::NonFinite { index: 5, .. }), "{err}");
}
