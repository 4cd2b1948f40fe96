//! `livedepth train` and the committed base model: a few training steps on a tiny rendered
//! drive lower the loss and write loadable weights with a complete sidecar; bad options and
//! files give typed errors naming them; the committed base model beats an untrained network
//! on a freshly rendered drive it never saw.
#![cfg(feature = "torch")]

mod common;

use livedepth::adapt::loss_backend::{LossBackendKind, choose_loss_backend};
use livedepth::app::eval::evaluate;
use livedepth::model::network::{DepthNetwork, PoseNetwork};
use livedepth::model::{Arch, PoseArch};
use livedepth::source::dataset::FrameSelection;
use livedepth::synth::{RenderConfig, Renderer, write_dataset};
use livedepth::train::{
    DEPTH_FILE, POSE_FILE, SIDECAR_FILE, TrainError, TrainOptions, TrainSidecar, TrainedModel,
    train,
};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use tch::Device;

/// Tests in this binary share libtorch's global RNG and thread pool.
static TORCH: Mutex<()> = Mutex::new(());

fn torch_exclusive() -> std::sync::MutexGuard<'static, ()> {
    TORCH.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn render(dir: &Path, frames: usize, width: u32, height: u32, seed: u64) -> PathBuf {
    let config =
        RenderConfig { width, height, frames, seed, supersample: 1, ..RenderConfig::default() };
    let renderer = Renderer::new(&config).expect("render config");
    write_dataset(&renderer, dir, false).expect("render drive");
    dir.to_path_buf()
}

fn tiny_options(data: &Path, out: &Path) -> TrainOptions {
    TrainOptions {
        datasets: vec![format!("kitti:{}", data.display())],
        out: out.to_path_buf(),
        width: 64,
        height: 32,
        epochs: 4,
        batch_size: 2,
        max_steps: Some(16),
        learning_rate: 1e-3,
        pose_learning_rate: 1e-3,
        seed: 11,
        supervised_weight: 1.0,
        pose_supervised_weight: 1.0,
        self_supervised_weight: 1.0,
        checkpoint_every: 5,
        progress: false,
        command: "livedepth train (test)".into(),
        ..TrainOptions::default()
    }
}

#[test]
fn a_few_steps_lower_the_loss_and_write_loadable_weights_with_a_sidecar() {
    let _guard = torch_exclusive();
    let tmp = tempfile::tempdir().unwrap();
    let data = render(&tmp.path().join("drive"), 12, 128, 64, 5);
    let out = tmp.path().join("model");
    let sidecar = train(&tiny_options(&data, &out)).expect("training runs");

    assert_eq!(sidecar.steps, 16);
    assert_eq!(sidecar.rejected_steps, 0);
    assert!(sidecar.complete && !sidecar.interrupted);
    assert!(
        sidecar.final_losses.total < sidecar.first_losses.total,
        "loss did not go down: first {:?}, final {:?}",
        sidecar.first_losses,
        sidecar.final_losses
    );
    assert!(sidecar.final_losses.supervised_depth < sidecar.first_losses.supervised_depth);
    assert!(sidecar.final_losses.photometric > 0.0 && sidecar.final_losses.supervised_pose > 0.0);

    // The sidecar on disk matches and records what the brief asks for.
    let read = TrainSidecar::read(&out.join(SIDECAR_FILE)).unwrap();
    assert_eq!((read.steps, read.complete), (sidecar.steps, sidecar.complete));
    assert!((read.final_losses.total - sidecar.final_losses.total).abs() < 1e-9);
    assert_eq!(read.arch, "rtmonodepth-s");
    assert_eq!(read.pose_arch, "rtmonodepth-s-pose");
    assert_eq!((read.width, read.height), (64, 32));
    assert_eq!(read.seed, 11);
    // The loss ran where the adapter's would: our CUDA kernels on a GPU, else the CPU loss
    // (or what LIVEDEPTH_ADAPT_LOSS asks for).
    let request = std::env::var(livedepth::adapt::loss_backend::LOSS_BACKEND_ENV).ok();
    let device = livedepth::engine::default_device();
    let backend = choose_loss_backend(device, cfg!(feature = "cuda"), request.as_deref());
    assert_eq!(read.loss_backend, Some(backend.expect("a backend this machine runs")));
    assert_eq!(read.command, "livedepth train (test)");
    assert_eq!(read.datasets.len(), 1);
    assert_eq!(read.datasets[0].frames, 12);
    assert_eq!(read.datasets[0].triplets, 10);
    assert!(read.datasets[0].with_depth && read.datasets[0].with_pose);
    assert_eq!(read.epochs, 4);
    assert!((read.epochs_completed - 16.0 / 5.0).abs() < 1e-9);

    // The weights load into fresh networks, and the trained depth differs from a fresh one.
    let trained = TrainedModel::open(&out).unwrap();
    assert_eq!(trained.depth, out.join(DEPTH_FILE));
    let depth = DepthNetwork::load(&trained.depth, Arch::RtMonoDepthS, Device::Cpu).unwrap();
    PoseNetwork::load(&out.join(POSE_FILE), PoseArch::RtMonoDepthSPose, Device::Cpu).unwrap();
    let x = tch::Tensor::zeros([1, 3, 32, 64], (tch::Kind::Float, Device::Cpu));
    let disp = tch::no_grad(|| depth.forward_t(&x, false));
    assert_eq!(disp[0].size(), vec![1, 1, 32, 64]);
    assert!(disp[0].isfinite().all().int64_value(&[]) == 1);

    // One generation in all three files; a weight file from another save (a crash between the
    // three renames) makes the folder a mismatched set, which is an error naming it.
    let generation = read.generation.clone().expect("the sidecar names its save");
    assert!(generation.ends_with("/step-16"), "{generation}");
    depth
        .save_safetensors_with(&out.join(DEPTH_FILE), &[("generation", "another-run/step-8")])
        .unwrap();
    let err = TrainedModel::open(&out).unwrap_err().to_string();
    assert!(err.contains("mismatched set") && err.contains("another-run/step-8"), "{err}");
    assert!(err.contains(&generation) && err.contains(DEPTH_FILE), "{err}");
}

#[test]
fn bad_options_and_files_give_typed_errors_naming_them() {
    let _guard = torch_exclusive();
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("model");
    let base = TrainOptions {
        datasets: vec!["kitti:/nonexistent/drive".into()],
        out: out.clone(),
        progress: false,
        ..TrainOptions::default()
    };
    let cases: [(TrainOptions, &str); 6] = [
        (TrainOptions { epochs: 0, ..base.clone() }, "epochs"),
        (TrainOptions { batch_size: 0, ..base.clone() }, "batch-size"),
        (TrainOptions { width: 100, ..base.clone() }, "100x96"),
        (TrainOptions { learning_rate: f64::NAN, ..base.clone() }, "lr"),
        (TrainOptions { supervised_weight: -1.0, ..base.clone() }, "supervised-weight"),
        (TrainOptions { datasets: Vec::new(), ..base.clone() }, "dataset"),
    ];
    for (options, needle) in cases {
        let err = train(&options).unwrap_err();
        assert!(matches!(err, TrainError::Flag { .. } | TrainError::Model(_)), "{err:?}");
        assert!(err.to_string().contains(needle), "`{err}` does not name {needle}");
    }
    // A missing dataset folder and a malformed spec name the spec and the path.
    let err = train(&base).unwrap_err();
    assert!(matches!(err, TrainError::Dataset { .. }), "{err:?}");
    assert!(err.to_string().contains("/nonexistent/drive"), "{err}");
    let err =
        train(&TrainOptions { datasets: vec!["video:x".into()], ..base.clone() }).unwrap_err();
    assert!(err.to_string().contains("video:x"), "{err}");
    // Too few frames for a triplet.
    let data = render(&tmp.path().join("two"), 2, 64, 32, 1);
    let err = train(&TrainOptions {
        datasets: vec![format!("kitti:{}", data.display())],
        width: 64,
        height: 32,
        ..base.clone()
    })
    .unwrap_err();
    assert!(matches!(err, TrainError::Data { .. }), "{err:?}");
    assert!(err.to_string().contains("no triplet"), "{err}");
    // The CUDA loss asked for where the networks run on the CPU: an error naming why.
    if !livedepth::engine::torch_cuda_available() {
        let data = render(&tmp.path().join("six"), 6, 64, 32, 1);
        let err = train(&TrainOptions {
            datasets: vec![format!("kitti:{}", data.display())],
            width: 64,
            height: 32,
            max_steps: Some(1),
            loss_backend: Some(LossBackendKind::Cuda),
            ..base.clone()
        })
        .unwrap_err();
        assert!(matches!(err, TrainError::Flag { flag: "loss_backend", .. }), "{err:?}");
        assert!(err.to_string().contains("cuda"), "{err}");
        // With the loss off, nothing asks for a backend: supervised-only training runs.
        let sidecar = train(&TrainOptions {
            datasets: vec![format!("kitti:{}", data.display())],
            width: 64,
            height: 32,
            max_steps: Some(1),
            self_supervised_weight: 0.0,
            supervised_weight: 1.0,
            loss_backend: Some(LossBackendKind::Cuda),
            ..base.clone()
        })
        .expect("supervised-only training needs no loss backend");
        assert_eq!(sidecar.loss_backend, None);
    }
    // A corrupt sidecar names the file.
    std::fs::create_dir_all(&out).unwrap();
    std::fs::write(out.join(SIDECAR_FILE), b"{ not json").unwrap();
    let err = TrainedModel::open(&out).unwrap_err();
    assert!(matches!(err, TrainError::Sidecar { .. }), "{err:?}");
    assert!(err.to_string().contains("train.json"), "{err}");
}

#[test]
fn the_cli_rejects_bad_flags_naming_them() {
    let exe = env!("CARGO_BIN_EXE_livedepth");
    let tmp = tempfile::tempdir().unwrap();
    let run = |args: &[&str]| {
        let out = std::process::Command::new(exe).arg("train").args(args).output().unwrap();
        assert!(!out.status.success(), "train {args:?} succeeded");
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let out_dir = tmp.path().join("m");
    let out_dir = out_dir.to_str().unwrap();
    let err = run(&["--dataset", "kitti:/nonexistent", "--out", out_dir, "--epochs", "0"]);
    assert!(err.contains("epochs"), "{err}");
    let err = run(&["--dataset", "kitti:/nonexistent", "--out", out_dir, "--batch-size", "x"]);
    assert!(err.contains("--batch-size"), "{err}");
    let err = run(&["--dataset", "kitti:/nonexistent", "--out", out_dir]);
    assert!(err.contains("/nonexistent"), "{err}");
    // Asking for the CUDA loss where the networks run on the CPU names the variable and why.
    if !livedepth::engine::torch_cuda_available() {
        let drive = render(&tmp.path().join("drive"), 6, 64, 32, 3);
        let dataset = format!("kitti:{}", drive.display());
        let out = std::process::Command::new(exe)
            .args(["train", "--dataset", &dataset, "--out", out_dir, "--width", "64"])
            .args(["--height", "32", "--max-steps", "1", "--quiet"])
            .env("LIVEDEPTH_ADAPT_LOSS", "cuda")
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "train with LIVEDEPTH_ADAPT_LOSS=cuda on the CPU ran");
        assert!(err.contains("LIVEDEPTH_ADAPT_LOSS") && err.contains("cuda"), "{err}");
    }
}

/// The committed base model against an untrained network of the same architecture on a drive
/// rendered now with a seed the base model never trained on (training used 101..=112).
#[test]
fn the_committed_base_model_beats_an_untrained_network_on_an_unseen_drive() {
    let _guard = torch_exclusive();
    let dir = common::repo_root().join(livedepth::app::demo::BASE_MODEL_DIR);
    let base = TrainedModel::open(&dir).expect("the committed base model opens");
    assert!(base.sidecar.complete, "the committed base model is a finished run");
    let (w, h) = (base.sidecar.width, base.sidecar.height);
    let tmp = tempfile::tempdir().unwrap();
    let data = render(&tmp.path().join("unseen"), 16, w, h, 4242);
    let untrained = tmp.path().join("untrained.safetensors");
    tch::manual_seed(1);
    DepthNetwork::new(Arch::RtMonoDepthS, Device::Cpu).save_safetensors(&untrained).unwrap();
    let score = |model: &Path| {
        evaluate(&common::eval_options(
            format!("kitti:{}", data.display()),
            model.to_path_buf(),
            (w, h),
            FrameSelection::all(),
        ))
        .expect("evaluation runs")
        .mean
    };
    let trained = score(&base.depth);
    let fresh = score(&untrained);
    eprintln!(
        "unseen drive: base abs_rel {:.3} a1 {:.3}; untrained abs_rel {:.3} a1 {:.3}",
        trained.abs_rel, trained.a1, fresh.abs_rel, fresh.a1
    );
    assert!(trained.abs_rel < 0.5 * fresh.abs_rel, "{trained:?} vs {fresh:?}");
    assert!(trained.a1 > fresh.a1 + 0.2, "{trained:?} vs {fresh:?}");
}

/// Ctrl-C (SIGINT) during `livedepth train` stops after the current step and saves the weights
/// and a sidecar marked interrupted.
#[test]
fn ctrl_c_stops_training_and_saves() {
    use std::io::{BufRead, BufReader};
    let tmp = tempfile::tempdir().unwrap();
    let data = render(&tmp.path().join("drive"), 8, 64, 32, 9);
    let out = tmp.path().join("model");
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_livedepth"))
        .args(["train", "--quiet", "--log-every", "1", "--epochs", "1000", "--batch-size", "2"])
        .args(["--width", "64", "--height", "32", "--checkpoint-every", "0"])
        .arg("--dataset")
        .arg(format!("kitti:{}", data.display()))
        .arg("--out")
        .arg(&out)
        .stderr(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let mut lines = BufReader::new(stderr).lines();
    // Wait for the first logged step, then interrupt.
    let first = lines.by_ref().map_while(Result::ok).find(|l| l.starts_with("train: step"));
    assert!(first.is_some(), "training never logged a step");
    let status = std::process::Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let _rest: Vec<String> = lines.map_while(Result::ok).collect();
    let exit = child.wait().unwrap();
    assert!(exit.success(), "train exited with {exit}");
    let sidecar = TrainSidecar::read(&out).unwrap();
    assert!(sidecar.interrupted && !sidecar.complete, "{sidecar:?}");
    assert!(sidecar.steps >= 1 && sidecar.steps < 1000 * 3);
    DepthNetwork::load(&out.join(DEPTH_FILE), Arch::RtMonoDepthS, Device::Cpu).unwrap();
}
