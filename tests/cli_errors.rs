//! Issue #13's audit rows that go through the command line, run against the real binary: each
//! bad input gets an error that names the flag or field and says what was expected, before any
//! work is done, and our own model folder is accepted where a model is asked for.
#![cfg(feature = "torch")]

mod common;

use std::path::Path;
use std::process::{Command, Output};

fn livedepth(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_livedepth"))
        .args(args)
        .current_dir(common::repo_root())
        .output()
        .expect("the livedepth binary runs")
}

fn stderr(output: &Output) -> String {
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
