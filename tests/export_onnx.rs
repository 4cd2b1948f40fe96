//! `livedepth export` against onnxruntime: the exported ONNX graphs, run by onnxruntime in the
//! torch venv (tests/python/onnx_run.py, which also runs `onnx.checker.check_model`), must give
//! the outputs of our libtorch networks on the same random image: the real KITTI RT-MonoDepth-S
//! model at 640x192 (fixed shape) and through a `--dynamic` export at other sizes and batch 2,
//! and freshly initialised (seeded) networks of every architecture through `--dynamic` exports:
//! RT-MonoDepth-S depth and light pose, Monodepth2 ResNet-18 and ResNet-50 depth and the
//! Monodepth2 pose network, whose batch norms get seeded random running statistics, scales and
//! shifts (fresh ones are the identity) so that eval-mode batch norm is really compared.
//! Disparities differ by less than 1e-4; pose outputs (×0.01, small) by less than 1e-4 and
//! 1e-3 of their magnitude. The flag errors are checked against the real binary and need no
//! shared data.
#![cfg(feature = "torch")]

mod common;

use common::livedepth;
mod model_support;

use livedepth::model::network::{DepthNetwork, PoseNetwork};
use livedepth::model::{Arch, PoseArch};
use model_support::{max_abs_diff, read_npy, run_python, values, write_npy};
use std::path::Path;
use tch::{Device, Tensor};

fn path_str(path: &Path) -> &str {
    path.to_str().expect("utf-8 path")
}

/// Runs `livedepth export ARGS --out OUT`, asserting success.
fn export(args: &[&str], out: &Path) {
    let mut all = vec!["export"];
    all.extend_from_slice(args);
    all.extend_from_slice(&["--out", path_str(out)]);
    let output = livedepth(&all);
    assert!(
        output.status.success(),
        "livedepth {all:?} failed:\n{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    print!("{}", String::from_utf8_lossy(&output.stdout));
}

/// `n` values uniform in [0, 1) from a fixed-seed xorshift generator.
fn random_unit(n: usize, seed: u64) -> Vec<f32> {
    let mut state = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..n)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 40) as f32 / (1u64 << 24) as f32
        })
        .collect()
}

/// Our networks' input: `(x − mean) / std`, as the callers of `DepthNetwork` normalise (every
/// architecture uses one mean and std for all channels).
fn normalised(arch: Arch, shape: [usize; 4], rgb: &[f32]) -> Tensor {
    let (mean, std) = arch.normalisation();
    assert!(mean.iter().all(|&m| m == mean[0]) && std.iter().all(|&s| s == std[0]));
    let dims: Vec<i64> = shape.iter().map(|&d| d as i64).collect();
    (Tensor::from_slice(rgb).reshape(dims) - f64::from(mean[0])) / f64::from(std[0])
}

/// Gives every batch norm of `vs` seeded random running statistics, scale and shift (fresh ones
/// are mean 0, variance 1, scale 1, shift 0: the identity up to epsilon): running mean and
/// shift in [−0.2, 0.2), running variance in [0.5, 2), scale in [0.5, 1.5). Returns how many
/// batch norms there are.
fn perturb_batch_norms(vs: &tch::nn::VarStore, seed: u64) -> usize {
    let vars = vs.variables();
    let mut prefixes: Vec<&str> =
        vars.keys().filter_map(|name| name.strip_suffix("running_mean")).collect();
    prefixes.sort_unstable();
    tch::no_grad(|| {
        for (k, prefix) in prefixes.iter().enumerate() {
            for (j, (param, lo, hi)) in [
                ("running_mean", -0.2, 0.2),
                ("running_var", 0.5, 2.0),
                ("weight", 0.5, 1.5),
                ("bias", -0.2, 0.2),
            ]
            .into_iter()
            .enumerate()
            {
                let mut var = vars[&format!("{prefix}{param}")].shallow_clone();
                let u = random_unit(var.numel(), seed * 1000 + (4 * k + j) as u64);
                let v: Vec<f32> = u.iter().map(|u| lo + (hi - lo) * u).collect();
                var.copy_(&Tensor::from_slice(&v).reshape(var.size()));
            }
        }
    });
    prefixes.len()
}

/// Runs `model` with onnxruntime on `input` (named `input_name`); returns the output folder.
fn run_onnx(model: &Path, input_name: &str, shape: [usize; 4], rgb: &[f32]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("input.npy");
    write_npy(&input, &shape, rgb);
    let feed = format!("{input_name}={}", path_str(&input));
    let stdout = run_python(
        &common::python(),
        "onnx_run.py",
        &[path_str(model), path_str(dir.path()), &feed],
    );
    print!("{stdout}");
    dir
}

fn graph_json(dir: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(dir.join("graph.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

/// The initializer names of the exported graph equal the network's `VarStore` names.
fn assert_initializers_are_varstore_names(graph: &serde_json::Value, vs: &tch::nn::VarStore) {
    let mut onnx: Vec<String> = graph["initializers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_owned())
        .collect();
    onnx.sort();
    let mut ours: Vec<String> = vs.variables().into_keys().collect();
    ours.sort();
    assert_eq!(onnx, ours);
}

/// Fails on NaN or infinite values (`max_abs_diff` folds with `f32::max`, which skips NaN, so a
/// NaN output would otherwise compare as equal).
fn assert_finite(values: &[f32], what: &str) {
    let bad = values.iter().filter(|v| !v.is_finite()).count();
    assert_eq!(bad, 0, "{what}: {bad} of {} values are NaN or infinite", values.len());
}

/// Compares the disparities onnxruntime wrote in `dir` with those of `net`; returns the
/// largest difference over all scales.
fn compare_depth(
    net: &DepthNetwork,
    dir: &Path,
    shape: [usize; 4],
    rgb: &[f32],
    label: &str,
) -> f32 {
    let disps =
        tch::no_grad(|| net.try_forward_t(&normalised(net.arch(), shape, rgb), false)).unwrap();
    assert_eq!(disps.len(), net.arch().num_scales());
    let mut worst = 0f32;
    for (s, d) in disps.iter().enumerate() {
        let (onnx_shape, onnx) = read_npy(&dir.join(format!("disp_{s}.npy")));
        let ours: Vec<usize> = d.size().iter().map(|&v| v as usize).collect();
        assert_eq!(onnx_shape, ours, "{label} disp_{s} shape");
        assert_eq!(ours, [shape[0], 1, shape[2] >> s, shape[3] >> s]);
        let ours_values = values(d);
        assert_finite(&onnx, &format!("{label} disp_{s} (onnxruntime)"));
        assert_finite(&ours_values, &format!("{label} disp_{s} (libtorch)"));
        let diff = max_abs_diff(&ours_values, &onnx);
        let lo = ours_values.iter().copied().fold(f32::INFINITY, f32::min);
        let hi = ours_values.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        println!(
            "{label} disp_{s} {ours:?}: max |ORT − libtorch| = {diff:.3e} (disparities in \
             [{lo:.4}, {hi:.4}])"
        );
        assert!(hi > lo, "{label} disp_{s} is constant: the comparison would be empty");
        assert!(diff < 1e-4, "{label} disp_{s}: max abs difference {diff}");
        worst = worst.max(diff);
    }
    worst
}

#[test]
fn kitti_model_matches_libtorch_fixed_and_dynamic() {
    let Some(model) = common::shared("models/rtmonodepth_s/m_640x192") else { return };
    let net = DepthNetwork::load(&model, Arch::RtMonoDepthS, Device::Cpu).unwrap();
    let out = tempfile::tempdir().unwrap();

    // Fixed 1x3x192x640, the model's training size.
    let fixed = out.path().join("depth_640x192.onnx");
    let m = path_str(&model);
    export(&["--model", m, "--arch", "rtmonodepth-s", "--width", "640", "--height", "192"], &fixed);
    let shape = [1, 3, 192, 640];
    let rgb = random_unit(shape.iter().product(), 1);
    let dir = run_onnx(&fixed, "image", shape, &rgb);
    let graph = graph_json(dir.path());
    assert_eq!(graph["ir_version"], 8);
    assert_eq!(graph["opset"], serde_json::json!([["", 17]]));
    assert_eq!(graph["inputs"]["image"], serde_json::json!([1, 3, 192, 640]));
    assert_eq!(graph["outputs"]["disp_2"], serde_json::json!([1, 1, 48, 160]));
    assert_initializers_are_varstore_names(&graph, net.var_store());
    let worst = compare_depth(&net, dir.path(), shape, &rgb, "KITTI 640x192");
    println!("KITTI RT-MonoDepth-S 640x192 fixed: max |Δ| over all scales = {worst:.3e}");

    // Symbolic batch, height and width: exported at 320x96, run at 320x96 and 256x64, batch 2.
    let dynamic = out.path().join("depth_dynamic.onnx");
    export(
        &["--model", m, "--arch", "rtmonodepth-s", "--width", "320", "--height", "96", "--dynamic"],
        &dynamic,
    );
    for (shape, seed) in [([2, 3, 96, 320], 2), ([2, 3, 64, 256], 3)] {
        let rgb = random_unit(shape.iter().product(), seed);
        let dir = run_onnx(&dynamic, "image", shape, &rgb);
        let graph = graph_json(dir.path());
        assert_eq!(graph["inputs"]["image"], serde_json::json!(["batch", 3, "height", "width"]));
        let label = format!("KITTI dynamic {}x{} batch 2", shape[3], shape[2]);
        let worst = compare_depth(&net, dir.path(), shape, &rgb, &label);
        println!("{label}: max |Δ| over all scales = {worst:.3e}");
    }
}

#[test]
fn fresh_depth_network_matches_libtorch() {
    tch::manual_seed(11);
    let net = DepthNetwork::new(Arch::RtMonoDepthS, Device::Cpu);
    let shape = [2, 3, 64, 128];
    let rgb = random_unit(shape.iter().product(), 4);
    let save = |p: &Path| net.save_safetensors(p).unwrap();
    let (_out, dir) = export_fresh_and_run(save, "rtmonodepth-s", "depth", shape, &rgb);
    assert_initializers_are_varstore_names(&graph_json(dir.path()), net.var_store());
    let worst = compare_depth(&net, dir.path(), shape, &rgb, "fresh depth 128x64 batch 2");
    println!("fresh RT-MonoDepth-S: max |Δ| = {worst:.3e}");
}

/// Compares the pose outputs onnxruntime wrote in `dir` with those of `net`; returns the
/// largest difference.
fn compare_pose(
    net: &PoseNetwork,
    arch: Arch,
    dir: &Path,
    shape: [usize; 4],
    rgb: &[f32],
    label: &str,
) -> f32 {
    let pair = normalised(arch, shape, rgb);
    let (rot, trans) = tch::no_grad(|| net.try_forward_t(&pair, false)).unwrap();
    let mut worst = 0f32;
    for (name, ours) in [("axis_angle", &rot), ("translation", &trans)] {
        let (onnx_shape, onnx) = read_npy(&dir.join(format!("{name}.npy")));
        assert_eq!(onnx_shape, [shape[0], 3], "{label} {name} shape");
        let ours = values(ours);
        assert_finite(&onnx, &format!("{label} {name} (onnxruntime)"));
        assert_finite(&ours, &format!("{label} {name} (libtorch)"));
        let diff = max_abs_diff(&ours, &onnx);
        let magnitude = ours.iter().fold(0f32, |m, v| m.max(v.abs()));
        println!(
            "{label} {name}: max |ORT − libtorch| = {diff:.3e} (values up to {magnitude:.3e}, \
             relative {:.3e})",
            diff / magnitude
        );
        assert!(magnitude > 0.0, "{label} {name} is all zeros: the comparison would be empty");
        assert!(
            diff < 1e-4 && diff <= 1e-3 * magnitude,
            "{label} {name}: max abs difference {diff}"
        );
        worst = worst.max(diff);
    }
    worst
}

/// Saves `vs`'s network as safetensors, exports it at 128x64 with `--dynamic` and runs the
/// graph with onnxruntime on `rgb` of `shape`; returns the temporary folder (kept alive) and
/// the onnxruntime output folder.
fn export_fresh_and_run(
    save: impl FnOnce(&Path),
    arch: &str,
    network: &str,
    shape: [usize; 4],
    rgb: &[f32],
) -> (tempfile::TempDir, tempfile::TempDir) {
    let out = tempfile::tempdir().unwrap();
    let weights = out.path().join(format!("{network}.safetensors"));
    save(&weights);
    let onnx = out.path().join(format!("{network}.onnx"));
    let w = path_str(&weights);
    export(
        &[
            "--model",
            w,
            "--arch",
            arch,
            "--network",
            network,
            "--width",
            "128",
            "--height",
            "64",
            "--dynamic",
        ],
        &onnx,
    );
    let input = if network == "pose" { "frame_pair" } else { "image" };
    let dir = run_onnx(&onnx, input, shape, rgb);
    let graph = graph_json(dir.path());
    let channels = if network == "pose" { 6 } else { 3 };
    assert_eq!(graph["inputs"][input], serde_json::json!(["batch", channels, "height", "width"]));
    (out, dir)
}

#[test]
fn fresh_pose_network_matches_libtorch() {
    tch::manual_seed(7);
    let net = PoseNetwork::new(PoseArch::RtMonoDepthSPose, Device::Cpu);
    // Two frame pairs, each [first RGB, second RGB] on channels.
    let shape = [2, 6, 64, 128];
    let rgb = random_unit(shape.iter().product(), 5);
    let save = |p: &Path| net.save_safetensors(p).unwrap();
    let (_out, dir) = export_fresh_and_run(save, "rtmonodepth-s", "pose", shape, &rgb);
    let graph = graph_json(dir.path());
    assert_eq!(graph["outputs"]["axis_angle"], serde_json::json!(["batch", 3]));
    assert_initializers_are_varstore_names(&graph, net.var_store());
    let label = "fresh light pose";
    let worst = compare_pose(&net, Arch::RtMonoDepthS, dir.path(), shape, &rgb, label);
    println!("{label}: max |Δ| = {worst:.3e}");
}

/// A fresh Monodepth2 depth network of `arch` with perturbed batch norms against onnxruntime.
fn fresh_monodepth2_depth_matches_libtorch(arch: Arch, batch: usize, seed: u64, bns: usize) {
    tch::manual_seed(seed as i64);
    let net = DepthNetwork::new(arch, Device::Cpu);
    assert_eq!(perturb_batch_norms(net.var_store(), seed), bns);
    let shape = [batch, 3, 64, 128];
    let rgb = random_unit(shape.iter().product(), seed + 1);
    let save = |p: &Path| net.save_safetensors(p).unwrap();
    let (_out, dir) = export_fresh_and_run(save, arch.name(), "depth", shape, &rgb);
    let graph = graph_json(dir.path());
    assert_initializers_are_varstore_names(&graph, net.var_store());
    assert_eq!(
        graph["outputs"]["disp_3"],
        serde_json::json!(["batch", 1, "height_div8", "width_div8"])
    );
    let ops = graph["ops"].as_array().unwrap();
    for op in ["BatchNormalization", "MaxPool", "Concat", "Pad", "Resize", "Elu"] {
        assert!(ops.contains(&serde_json::json!(op)), "{op} missing from {ops:?}");
    }
    let label = format!("fresh {arch} 128x64 batch {batch}");
    let worst = compare_depth(&net, dir.path(), shape, &rgb, &label);
    println!("{label}: max |Δ| over all scales = {worst:.3e}");
}

#[test]
fn fresh_monodepth2_r18_depth_matches_libtorch() {
    // conv1 + 8 basic blocks × 2 + 3 downsamples.
    fresh_monodepth2_depth_matches_libtorch(Arch::Monodepth2R18, 2, 21, 20);
}

#[test]
fn fresh_monodepth2_r50_depth_matches_libtorch() {
    // conv1 + 16 bottlenecks × 3 + 4 downsamples.
    fresh_monodepth2_depth_matches_libtorch(Arch::Monodepth2R50, 1, 31, 53);
}

#[test]
fn fresh_monodepth2_pose_network_matches_libtorch() {
    tch::manual_seed(41);
    let net = PoseNetwork::new(PoseArch::Monodepth2R18, Device::Cpu);
    assert_eq!(perturb_batch_norms(net.var_store(), 41), 20);
    let shape = [2, 6, 64, 128];
    let rgb = random_unit(shape.iter().product(), 42);
    let save = |p: &Path| net.save_safetensors(p).unwrap();
    let (_out, dir) = export_fresh_and_run(save, "monodepth2-r18", "pose", shape, &rgb);
    let graph = graph_json(dir.path());
    assert_eq!(graph["outputs"]["translation"], serde_json::json!(["batch", 3]));
    assert_initializers_are_varstore_names(&graph, net.var_store());
    let label = "fresh Monodepth2 pose 128x64 batch 2";
    let worst = compare_pose(&net, Arch::Monodepth2R18, dir.path(), shape, &rgb, label);
    println!("{label}: max |Δ| = {worst:.3e}");
}

fn stderr_of_failed(args: &[&str]) -> String {
    let output = livedepth(args);
    assert!(!output.status.success(), "livedepth {args:?} succeeded");
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn export_flag_errors_name_the_flag_and_what_was_expected() {
    let out = std::env::temp_dir().join("livedepth-export-error-test.onnx");
    let o = path_str(&out);
    let base = |arch: &'static str, w: &'static str, model: &'static str| {
        vec![
            "export", "--model", model, "--arch", arch, "--width", w, "--height", "192", "--out", o,
        ]
    };
    let err = stderr_of_failed(&base("rtmonodepth-s", "630", "/nonexistent"));
    assert!(err.contains("--width 630: expected a positive multiple of 32"), "{err}");

    let err = stderr_of_failed(&base("monodepth2-r18", "640", "/nonexistent/md2"));
    assert!(err.contains("--model /nonexistent/md2: no such file or folder"), "{err}");
    let err = stderr_of_failed(&base("unet", "640", "/nonexistent"));
    assert!(
        err.contains("--arch `unet`")
            && err.contains("covers: rtmonodepth-s, monodepth2-r18, monodepth2-r50"),
        "{err}"
    );

    let err = stderr_of_failed(&base("rtmonodepth-s", "640", "/nonexistent/model"));
    assert!(err.contains("--model /nonexistent/model: no such file or folder"), "{err}");

    let mut args = base("rtmonodepth-s", "640", "/nonexistent");
    args.extend_from_slice(&["--network", "flow"]);
    let err = stderr_of_failed(&args);
    assert!(err.contains("--network `flow`: expected `depth` or `pose`"), "{err}");
    assert!(!out.exists(), "a failed export wrote {o}");
}
