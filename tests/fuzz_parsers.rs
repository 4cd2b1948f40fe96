//! Property tests (proptest) of every parser that reads user files or text, with a bounded
//! budget so that CI stays fast: each target starts from a valid input and applies random byte
//! edits (replace, insert, delete, truncate), or generates structured values directly, and the
//! parser must return `Ok` or a typed error naming the file, and never panic, hang or abort on
//! an allocation. Case counts are fixed per target ([`CASES`]) and printed.
//!
//! Targets: the PyTorch zip/pickle checkpoint reader (bytes and structured tensor views),
//! safetensors loading, the loss probe's npz inputs, TOML run configs and adaptation configs, and
//! the source URI parser (with the config validation that must agree with it).
#![cfg(feature = "torch")]

mod common;

use common::files::{pth_bytes, tensor_pickle, write_npz};
use livedepth::adapt::AdaptConfig;
use livedepth::config::{Config, check_source_uri};
use livedepth::model::checkpoint::{Checkpoint, MetaValue, StorageDtype, StoredTensor};
use livedepth::source::gst_uri::parse_source_uri;
use proptest::prelude::*;
use proptest::test_runner::{Config as RunnerConfig, TestRunner};
use std::path::Path;

/// Cases per target: (name, cases).
const CASES: [(&str, u32); 7] = [
    ("pth bytes", 5000),
    ("pth tensor views", 5000),
    ("safetensors bytes", 5000),
    ("npz probe inputs", 1000),
    ("run config TOML", 10000),
    ("adapt config TOML", 5000),
    ("source URI", 20000),
];

fn cases(target: &str) -> u32 {
    CASES.iter().find(|(name, _)| *name == target).map(|(_, n)| *n).unwrap_or(100)
}

fn runner(target: &str) -> TestRunner {
    let n = cases(target);
    println!("fuzz target `{target}`: {n} cases");
    TestRunner::new(RunnerConfig {
        cases: n,
        failure_persistence: None,
        // Shrinking a failure is worth little here and could take long; the failing input is
        // printed as found.
        max_shrink_iters: 64,
        ..RunnerConfig::default()
    })
}

/// A byte edit: (position, byte, kind) with kind 0 = replace, 1 = insert, 2 = delete.
type Edit = (usize, u8, u8);

fn edits() -> impl Strategy<Value = (Vec<Edit>, Option<usize>)> {
    (
        prop::collection::vec((any::<usize>(), any::<u8>(), 0u8..3), 1..8),
        prop::option::weighted(0.2, any::<usize>()),
    )
}

fn mutate(seed: &[u8], (edits, truncate): &(Vec<Edit>, Option<usize>)) -> Vec<u8> {
    let mut bytes = seed.to_vec();
    for &(at, byte, kind) in edits {
        let len = bytes.len();
        match kind {
            0 if len > 0 => bytes[at % len] = byte,
            1 => bytes.insert(at % (len + 1), byte),
            2 if len > 0 => {
                bytes.remove(at % len);
            }
            _ => {}
        }
    }
    if let Some(cut) = truncate {
        let keep = cut % (bytes.len() + 1);
        bytes.truncate(keep);
    }
    bytes
}

/// A read error must name the file it is about.
fn names(err: &impl std::fmt::Display, path: &Path) -> bool {
    err.to_string().contains(&path.display().to_string())
}

#[test]
fn checkpoint_reader_survives_mutated_files() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("fuzz.pth");
    let storage: Vec<u8> = (0..6).flat_map(|i| (i as f32).to_le_bytes()).collect();
    let seed = pth_bytes(&tensor_pickle(&[2, 3], &[3, 1], 0, 6), &storage);
    std::fs::write(&path, &seed).unwrap();
    assert_eq!(Checkpoint::read_pth(&path).unwrap().tensors["t"].values.len(), 6);
    runner("pth bytes")
        .run(&edits(), |e| {
            std::fs::write(&path, mutate(&seed, &e)).unwrap();
            if let Err(err) = Checkpoint::read_pth(&path) {
                prop_assert!(names(&err, &path), "{err}");
            }
            Ok(())
        })
        .unwrap();
}

#[test]
fn checkpoint_reader_survives_any_tensor_view() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("view.pth");
    let dims = prop::sample::select(vec![0u64, 1, 2, 3, 7, 1 << 20, 1 << 31, 1 << 46, 1 << 62]);
    let view = (prop::collection::vec((dims.clone(), dims.clone()), 0..4), dims.clone(), 0u64..64);
    runner("pth tensor views")
        .run(&view, |(shape_stride, offset, numel)| {
            let (shape, stride): (Vec<u64>, Vec<u64>) = shape_stride.into_iter().unzip();
            let storage = vec![0u8; 4 * numel as usize];
            std::fs::write(
                &path,
                pth_bytes(&tensor_pickle(&shape, &stride, offset, numel), &storage),
            )
            .unwrap();
            match Checkpoint::read_pth(&path) {
                Ok(ckpt) => {
                    let t = &ckpt.tensors["t"];
                    let expected: u64 = shape.iter().product();
                    prop_assert_eq!(t.values.len() as u64, expected);
                }
                Err(err) => prop_assert!(names(&err, &path), "{err}"),
            }
            Ok(())
        })
        .unwrap();
}

#[test]
fn safetensors_loading_survives_mutated_files() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("fuzz.safetensors");
    let mut ckpt = Checkpoint { path: path.clone(), ..Default::default() };
    for (name, shape) in [("a.weight", vec![2usize, 3]), ("b.bias", vec![4])] {
        let n = shape.iter().product();
        let values = (0..n).map(|i| i as f32).collect();
        ckpt.tensors.insert(name.into(), StoredTensor { dtype: StorageDtype::F32, shape, values });
    }
    ckpt.metadata.insert("arch".into(), MetaValue::Str("rtmonodepth-s".into()));
    ckpt.write_safetensors(&path).unwrap();
    let seed = std::fs::read(&path).unwrap();
    runner("safetensors bytes")
        .run(&edits(), |e| {
            std::fs::write(&path, mutate(&seed, &e)).unwrap();
            if let Err(err) = Checkpoint::read_safetensors(&path) {
                prop_assert!(names(&err, &path), "{err}");
            }
            Ok(())
        })
        .unwrap();
}

#[test]
fn loss_probe_survives_mutated_npz_inputs() {
    let dir = tempfile::tempdir().unwrap();
    let (input, out) = (dir.path().join("in.npz"), dir.path().join("out.npz"));
    let (w, h) = (16u64, 8u64);
    let plane = |shift: f32| -> Vec<f32> {
        (0..3 * w * h).map(|i| 0.5 + 0.4 * ((i as f32 + shift) * 0.37).sin()).collect()
    };
    let arrays: Vec<(&str, Vec<u64>, Vec<f32>)> = vec![
        ("target", vec![3, h, w], plane(0.0)),
        ("sources", vec![1, 3, h, w], plane(1.0)),
        ("disp_0", vec![h, w], vec![0.3; (w * h) as usize]),
        ("axis_angle", vec![1, 3], vec![0.0, 0.01, 0.0]),
        ("translation", vec![1, 3], vec![0.05, 0.0, 0.0]),
        ("K", vec![4], vec![12.0, 12.0, 8.0, 4.0]),
    ];
    write_npz(&input, &arrays);
    let seed = std::fs::read(&input).unwrap();
    livedepth::loss::probe::run_probe(&input, &out).expect("the seed input is valid");
    runner("npz probe inputs")
        .run(&edits(), |e| {
            std::fs::write(&input, mutate(&seed, &e)).unwrap();
            if let Err(err) = livedepth::loss::probe::run_probe(&input, &out) {
                prop_assert!(names(&err, &input), "{err}");
            }
            Ok(())
        })
        .unwrap();
}

const RUN_CONFIG: &str = r#"
[source]
uri = "test://ball?num-buffers=10"
fps = 30.0
[camera]
fx = 185.6
fy = 184.32
cx = 160.0
cy = 48.0
width = 320
height = 96
[network]
arch = "rtmonodepth-s"
width = 320
height = 96
[pipeline]
queue_size = 2
policy = "auto"
stats_interval_s = 1.0
[outputs]
dir = "out/fuzz"
"#;

#[test]
fn run_configs_survive_mutated_text() {
    Config::from_toml_str(RUN_CONFIG, "fuzz.toml").expect("the seed config is valid");
    runner("run config TOML")
        .run(&edits(), |e| {
            let text = String::from_utf8_lossy(&mutate(RUN_CONFIG.as_bytes(), &e)).into_owned();
            if let Err(err) = Config::from_toml_str(&text, "fuzz.toml") {
                prop_assert!(err.to_string().contains("fuzz.toml"), "{err}");
            }
            Ok(())
        })
        .unwrap();
}

#[test]
fn adapt_configs_survive_mutated_text() {
    let seed = toml::to_string(&AdaptConfig::default()).unwrap();
    let parse = |text: &str| -> Result<AdaptConfig, String> {
        let config: AdaptConfig = toml::from_str(text).map_err(|e| e.to_string())?;
        config.validate().map_err(|e| e.to_string())?;
        Ok(config)
    };
    assert_eq!(parse(&seed).unwrap(), AdaptConfig::default());
    runner("adapt config TOML")
        .run(&edits(), |e| {
            let _ = parse(&String::from_utf8_lossy(&mutate(seed.as_bytes(), &e)));
            Ok(())
        })
        .unwrap();
}

#[test]
fn source_uris_parse_or_fail_and_config_validation_agrees_with_the_source() {
    let scheme = prop::sample::select(vec![
        "", "file://", "v4l2://", "rtsp://", "rtsps://", "http://", "csi://", "test://", "gst://",
        "kitti:", "kitchen:", "ftp://", "://",
    ]);
    let rest = prop::string::string_regex("[ -~]{0,40}").unwrap();
    runner("source URI")
        .run(&(scheme, rest), |(scheme, rest)| {
            let uri = format!("{scheme}{rest}");
            let parsed = parse_source_uri(&uri);
            let dataset = ["kitti:", "kitchen:", "tum:"].iter().any(|p| uri.trim().starts_with(p));
            // Whatever the config accepts, the source that opens it accepts too.
            if check_source_uri(&uri).is_ok() && !dataset {
                prop_assert!(parsed.is_ok(), "config accepts `{uri}`, the source does not");
            }
            if let Err(err) = parsed {
                prop_assert!(!err.to_string().is_empty());
            }
            Ok(())
        })
        .unwrap();
}
