//! Issue #13's audit rows that go through the command line, run against the real binary: each
//! bad input gets an error that names the flag or field and says what was expected, before any
//! work is done, and our own model folder is accepted where a model is asked for.
#![cfg(feature = "torch")]

mod common;

use common::livedepth;

use std::path::Path;

fn stderr(output: &std::process::Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn path_str(path: &Path) -> &str {
    path.to_str().expect("utf-8 temp path")
}

#[test]
fn run_source_flag_errors_name_the_flag_not_the_config_file() {
    let output =
        livedepth(&["run", "--config", "configs/synthetic.toml", "--source", "ftp://host/x.mp4"]);
    assert!(!output.status.success());
    let err = stderr(&output);
    assert!(err.contains("--source") && err.contains("ftp://"), "{err}");
    assert!(!err.contains("source.uri"), "blames the config file's field: {err}");
    assert!(err.contains("accepted forms"), "{err}");
}

#[test]
fn an_output_folder_that_is_a_file_is_named_with_what_was_expected() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("out");
    std::fs::write(&file, b"keep me").unwrap();
    let output = livedepth(&[
        "run",
        "--config",
        "configs/synthetic.toml",
        "--source",
        "test://?num-buffers=3",
        "--out",
        path_str(&file),
    ]);
    assert!(!output.status.success());
    let err = stderr(&output);
    assert!(err.contains("--out") && err.contains("expected a folder"), "{err}");
    assert!(!err.contains("os error 17"), "{err}");
    assert_eq!(std::fs::read(&file).unwrap(), b"keep me");
}

#[test]
fn render_mp4_into_a_folder_fails_before_rendering() {
    let dir = tempfile::tempdir().unwrap();
    let (out, folder) = (dir.path().join("drive"), dir.path().join("videos"));
    std::fs::create_dir(&folder).unwrap();
    let output = livedepth(&[
        "render",
        "--out",
        path_str(&out),
        "--frames",
        "3",
        "--width",
        "64",
        "--height",
        "32",
        "--mp4",
        path_str(&folder),
    ]);
    assert!(!output.status.success());
    let err = stderr(&output);
    assert!(err.contains("folder") && err.contains(path_str(&folder)), "{err}");
    assert!(!out.exists(), "the drive was rendered before the error");
}

#[test]
fn eval_accepts_our_own_model_folder_at_its_trained_size_and_a_selection_to_the_end() {
    let dir = tempfile::tempdir().unwrap();
    let drive = dir.path().join("drive");
    let rendered = livedepth(&[
        "render",
        "--out",
        path_str(&drive),
        "--frames",
        "3",
        "--width",
        "320",
        "--height",
        "96",
        "--quiet",
    ]);
    assert!(rendered.status.success(), "{}", stderr(&rendered));
    let json = dir.path().join("eval.json");
    let output = livedepth(&[
        "eval",
        "--dataset",
        &format!("kitti:{}", drive.display()),
        "--model",
        "models/base_320x96",
        "--frames",
        "0..=18446744073709551615",
        "--quiet",
        "--json",
        path_str(&json),
    ]);
    assert!(output.status.success(), "{}", stderr(&output));
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert_eq!(report["frames"], 3, "the selection to the last frame takes all 3");
    assert_eq!((report["width"].as_u64(), report["height"].as_u64()), (Some(320), Some(96)));
    let abs_rel = report["abs_rel"].as_f64().unwrap();
    assert!(abs_rel.is_finite() && abs_rel < 0.5, "{abs_rel}");
}

#[test]
fn a_failing_adaptation_thread_shows_at_once_and_the_run_exits_non_zero_under_either_policy() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    let config = dir.path().join("camera.toml");
    std::fs::write(
        &config,
        format!(
            "[source]\nuri = \"test://ball?num-buffers=450\"\n[network]\narch = \
             \"rtmonodepth-s\"\nwidth = 320\nheight = 96\nmodel = \"models/base_320x96\"\n\
             [outputs]\ndir = \"{}\"\nvideo = false\nmetrics = false\n",
            out.display()
        ),
    )
    .unwrap();
    // A checkpoint path that is a folder: the adaptation thread fails as it starts, while the
    // 15 s camera stream goes on.
    let folder = dir.path().join("checkpoints");
    std::fs::create_dir(&folder).unwrap();
    let run = |policy: &str| {
        livedepth(&[
            "run",
            "--config",
            path_str(&config),
            "--adapt",
            "--checkpoint",
            path_str(&folder),
            "--adapt-on-failure",
            policy,
        ])
    };

    let output = run("continue");
    let err = stderr(&output);
    assert!(!output.status.success(), "a failed adaptation must fail the run: {err}");
    assert!(err.contains("adapt: FAILED") && err.contains("--checkpoint"), "{err}");
    assert!(err.contains("live depth goes on with the last published weights"), "{err}");
    // A failed adapter wants no CPU: the live path never yields to it, however long it runs.
    assert!(!err.contains("the depth stage now yields"), "{err}");
    // The live path ran to the end of the stream and wrote its report.
    let report: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(out.join("run_report.json")).expect("run_report.json"),
    )
    .unwrap();
    assert!(report["frames_delivered"].as_u64().unwrap_or(0) > 0, "{report}");

    let output = run("stop");
    let err = stderr(&output);
    assert!(!output.status.success());
    assert!(err.contains("the run stops (--adapt-on-failure stop)"), "{err}");
    assert!(err.contains("expected a file path"), "{err}");
}
