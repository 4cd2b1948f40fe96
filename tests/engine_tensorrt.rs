//! The TensorRT engine (feature `tensorrt`: our cxx shim, compiled against TensorRT 10 headers,
//! loading libnvinfer at run time). What runs without TensorRT, on every machine:
//! - the engine-cache key: stable, and changed by each of its fields (ONNX hash, TensorRT
//!   version, compute capability, precision, refit flags, profile, workspace); cache files
//!   round-trip, and a truncated or foreign file is a miss, never a plan;
//! - the refit mapping: every variable of every depth network in the zoo, and every adaptable
//!   one for each `adapt.layers` choice, has the ONNX initializer TensorRT will name it by (real
//!   KITTI checkpoint included); a graph without one is refused, naming the variable;
//! - without TensorRT, `--engine tensorrt` fails naming the library, the variable that points
//!   at it and the engines that serve without it, and `auto` goes on without it.
//!
//! The TensorRT run itself (parity with libtorch on a real KITTI frame, the engine cache hit,
//! a refit of adapted weights) needs a GPU and TensorRT; it skips with the reason otherwise.
#![cfg(feature = "tensorrt")]

mod common;
mod model_support;

use livedepth::adapt::{AdaptLayers, weights_exchange};
use livedepth::engine::tensorrt::cache::{
    CacheLookup, EngineCache, EngineCacheKey, Precision, RefitMode,
};
use livedepth::engine::tensorrt::refit::RefitPlan;
use livedepth::engine::tensorrt::{self, TensorRtDepthEngine, TensorRtOptions};
use livedepth::engine::{DepthEngine, TorchDepthEngine};
use livedepth::export::{self, InputShape};
use livedepth::model::Arch;
use livedepth::model::network::DepthNetwork;
use model_support::{load_rgb, max_abs_diff};
use tch::Device;

const KITTI_MODEL: &str = "models/rtmonodepth_s/m_640x192";

fn key() -> EngineCacheKey {
    EngineCacheKey {
        onnx_sha256: tensorrt::cache::sha256_hex(b"graph"),
        tensorrt_version: 100300,
        compute_capability: 87,
        precision: Precision::Fp16,
        refit: RefitMode::All,
        profile: [[1, 3, 192, 640]; 3],
        workspace_bytes: 1 << 30,
    }
}

#[test]
fn the_engine_cache_key_is_stable_and_changed_by_every_field() {
    let base = key();
    assert_eq!(base.file_name(), key().file_name(), "the same inputs give the same file");
    assert!(base.file_name().ends_with(".engine") && base.file_name().len() == 32 + 7);
    let variants: Vec<(&str, EngineCacheKey)> = vec![
        (
            "onnx hash",
            EngineCacheKey { onnx_sha256: tensorrt::cache::sha256_hex(b"graph2"), ..key() },
        ),
        ("tensorrt version", EngineCacheKey { tensorrt_version: 100301, ..key() }),
        ("compute capability", EngineCacheKey { compute_capability: 90, ..key() }),
        ("precision", EngineCacheKey { precision: Precision::Fp32, ..key() }),
        ("refit none", EngineCacheKey { refit: RefitMode::None, ..key() }),
        (
            "refit individual",
            EngineCacheKey { refit: RefitMode::Individual(vec!["depth.a".into()]), ..key() },
        ),
        (
            "other individual weights",
            EngineCacheKey { refit: RefitMode::Individual(vec!["depth.b".into()]), ..key() },
        ),
        ("profile", EngineCacheKey { profile: [[1, 3, 96, 320]; 3], ..key() }),
        ("workspace", EngineCacheKey { workspace_bytes: 1 << 29, ..key() }),
    ];
    let mut names = std::collections::HashSet::new();
    names.insert(base.file_name());
    for (field, variant) in &variants {
        assert!(names.insert(variant.file_name()), "changing the {field} must change the file");
    }
    let text = base.describe();
    for part in ["tensorrt=100300", "sm=87", "precision=fp16", "refit=all", "1x3x192x640"] {
        assert!(text.contains(part), "{text} names {part}");
    }
}

#[test]
fn cache_files_round_trip_and_bad_ones_are_misses() {
    let dir = tempfile::tempdir().unwrap();
    let cache = EngineCache::new(dir.path().join("engines"));
    let k = key();
    assert_eq!(cache.load(&k).unwrap(), CacheLookup::Miss);
    let plan: Vec<u8> = (0..=255u8).cycle().take(10_000).collect();
    let path = cache.store(&k, &plan).unwrap();
    assert_eq!(path, cache.path(&k));
    assert_eq!(cache.load(&k).unwrap(), CacheLookup::Hit(plan.clone()));
    // No temporary file is left beside it.
    let files: Vec<_> = std::fs::read_dir(cache.dir()).unwrap().flatten().collect();
    assert_eq!(files.len(), 1);

    // Truncated (a crash while copying it by hand, a full disk): a miss that says why.
    let bytes = std::fs::read(&path).unwrap();
    std::fs::write(&path, &bytes[..bytes.len() - 100]).unwrap();
    match cache.load(&k).unwrap() {
        CacheLookup::Invalid(why) => {
            assert!(why.contains("plan holds") && why.contains(&*path.to_string_lossy()), "{why}")
        }
        other => panic!("a truncated plan must not load: {other:?}"),
    }
    // Another key's file under this name (a digest collision), and a file that is not ours.
    let other = EngineCacheKey { compute_capability: 72, ..key() };
    let foreign = EngineCache::new(dir.path().join("other"));
    let foreign_path = foreign.store(&other, &plan).unwrap();
    std::fs::copy(&foreign_path, &path).unwrap();
    assert!(
        matches!(cache.load(&k).unwrap(), CacheLookup::Invalid(w) if w.contains("another key"))
    );
    std::fs::write(&path, b"not a plan").unwrap();
    assert!(
        matches!(cache.load(&k).unwrap(), CacheLookup::Invalid(w) if w.contains("not a livedepth"))
    );
    // Storing again repairs it.
    cache.store(&k, &plan).unwrap();
    assert_eq!(cache.load(&k).unwrap(), CacheLookup::Hit(plan));
}

fn check_plan(network: &DepthNetwork, label: &str) {
    let shape = InputShape { width: 128, height: 96, dynamic: true };
    let model = export::depth_model(network, shape).unwrap();
    let initializers: std::collections::HashMap<&str, i64> = model
        .graph
        .initializers
        .iter()
        .map(|t| (t.name.as_str(), t.dims.iter().product()))
        .collect();
    let variables = network.var_store().variables();
    for layers in [AdaptLayers::All, AdaptLayers::Decoder, AdaptLayers::NormBias] {
        let plan = RefitPlan::new(network, &model, layers).unwrap();
        assert_eq!(plan.weights.len(), variables.len(), "{label}: every variable is refitted");
        let adaptable: Vec<&str> = plan.adaptable().collect();
        assert!(!adaptable.is_empty(), "{label} {layers:?}: something adapts");
        for name in &adaptable {
            let var = &variables[*name];
            assert!(layers.adapts(name, var.dim()) && var.requires_grad(), "{label}: {name}");
            assert_eq!(
                initializers.get(name).copied(),
                Some(var.numel() as i64),
                "{label} {layers:?}: adaptable `{name}` has a same-sized initializer"
            );
        }
        // Exactly the trainer's choice: every trainable variable it would update is in the plan.
        let trained = variables
            .iter()
            .filter(|(n, v)| v.requires_grad() && layers.adapts(n, v.dim()))
            .count();
        assert_eq!(adaptable.len(), trained, "{label} {layers:?}");
        // The constants TensorRT may ask for are the exporter's own, never a variable.
        for name in plan.constants.keys() {
            assert!(!variables.contains_key(name), "{label}: {name}");
        }
    }
    let decoder: Vec<String> = RefitPlan::new(network, &model, AdaptLayers::Decoder)
        .unwrap()
        .adaptable()
        .map(str::to_owned)
        .collect();
    assert!(decoder.iter().all(|n| n.starts_with("depth.")), "{label}: {decoder:?}");
}

#[test]
fn every_adaptable_layer_maps_to_an_onnx_initializer() {
    for arch in [Arch::RtMonoDepthS, Arch::Monodepth2R18, Arch::Monodepth2R50] {
        tch::manual_seed(7);
        let network = DepthNetwork::new(arch, Device::Cpu);
        check_plan(&network, arch.name());
    }
    let Some(model) = common::shared(KITTI_MODEL) else { return };
    let network = DepthNetwork::load(&model, Arch::RtMonoDepthS, Device::Cpu).unwrap();
    check_plan(&network, "the KITTI RT-MonoDepth-S checkpoint");
}

#[test]
fn a_graph_without_a_variables_initializer_is_refused_by_name() {
    tch::manual_seed(3);
    let network = DepthNetwork::new(Arch::RtMonoDepthS, Device::Cpu);
    let shape = InputShape { width: 64, height: 64, dynamic: false };
    let mut model = export::depth_model(&network, shape).unwrap();
    let victim = model
        .graph
        .initializers
        .iter_mut()
        .find(|t| t.name.starts_with("depth.") && t.name.ends_with("weight"))
        .unwrap();
    let name = victim.name.clone();
    victim.name = format!("{name}_renamed");
    let err = RefitPlan::new(&network, &model, AdaptLayers::Decoder).unwrap_err().to_string();
    assert!(err.contains(&format!("`{name}`")) && err.contains("no ONNX initializer"), "{err}");
    // A size mismatch is named too.
    let mut model = export::depth_model(&network, shape).unwrap();
    let victim = model.graph.initializers.iter_mut().find(|t| t.name == name).unwrap();
    victim.dims[0] += 1;
    let err = RefitPlan::new(&network, &model, AdaptLayers::All).unwrap_err().to_string();
    assert!(err.contains(&name) && err.contains("floats"), "{err}");
}

fn eval_with(engine: &str, lib: &str) -> Option<(std::process::Output, std::path::PathBuf)> {
    let model = common::shared(KITTI_MODEL)?;
    let kitti = common::shared("data/kitti_tiny")?;
    let dir = tempfile::tempdir().unwrap().keep();
    let json = dir.join("eval.json");
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_livedepth"))
        .args(["eval", "--quiet", "--engine", engine, "--dataset"])
        .arg(format!("kitti:{}", kitti.display()))
        .arg("--model")
        .arg(&model)
        .arg("--json")
        .arg(&json)
        .env(tensorrt::LIBRARY_VAR, lib)
        .output()
        .unwrap();
    Some((output, json))
}

#[test]
fn without_tensorrt_the_engine_says_why_and_what_to_do() {
    let missing = "/nonexistent/tensorrt/lib";
    let Some((output, _)) = eval_with("tensorrt", missing) else { return };
    let stderr = String::from_utf8_lossy(&output.stderr);
    println!("{stderr}");
    assert!(!output.status.success(), "no TensorRT there: --engine tensorrt must fail");
    for part in [
        "--engine tensorrt",
        "/nonexistent/tensorrt/lib/libnvinfer.so.10",
        tensorrt::LIBRARY_VAR,
        "--engine onnxruntime",
    ] {
        assert!(stderr.contains(part), "the error names {part}: {stderr}");
    }
    // `auto` goes on without it, and says why.
    let Some((output, json)) = eval_with("auto", missing) else { return };
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert!(stderr.contains("tensorrt unavailable") && stderr.contains(missing), "{stderr}");
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert_ne!(report["engine"], "tensorrt");
}

#[test]
fn the_libraries_are_looked_up_where_the_docs_say_with_the_builder_resource_preloaded() {
    let dir = tempfile::tempdir().unwrap();
    let lib = dir.path().join("trt");
    std::fs::create_dir_all(&lib).unwrap();
    for name in ["libnvinfer.so.10", "libnvinfer_builder_resource.so.10.3.0", "unrelated.so"] {
        std::fs::write(lib.join(name), b"").unwrap();
    }
    // $LIVEDEPTH_TENSORRT_LIB as a folder, and as the library's path: only that place.
    for explicit in [lib.clone(), lib.join("libnvinfer.so.10")] {
        let found = tensorrt::candidates_for(Some(explicit), None);
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].nvinfer, lib.join("libnvinfer.so.10"));
        assert_eq!(found[0].onnxparser, lib.join("libnvonnxparser.so.10"));
        assert_eq!(found[0].preload, vec![lib.join("libnvinfer_builder_resource.so.10.3.0")]);
    }
    // A wheel's tensorrt_libs folder in the venv, then the sonames for the loader's search.
    let venv = dir.path().join("venv");
    let wheel = venv.join("lib/python3.11/site-packages/tensorrt_libs");
    std::fs::create_dir_all(&wheel).unwrap();
    std::fs::write(wheel.join("libnvinfer.so.10"), b"").unwrap();
    let found = tensorrt::candidates_for(None, Some(venv));
    assert_eq!(found.len(), 2);
    assert_eq!(found[0].nvinfer, wheel.join("libnvinfer.so.10"));
    assert_eq!(found[1].nvinfer, std::path::PathBuf::from("libnvinfer.so.10"));
    assert!(found[1].preload.is_empty());
}

#[test]
fn a_file_that_is_not_tensorrt_is_named_with_the_loaders_reason() {
    let dir = tempfile::tempdir().unwrap();
    let fake = dir.path().join("libnvinfer.so.10");
    std::fs::write(&fake, b"not a shared library").unwrap();
    let Some((output, _)) = eval_with("tensorrt", fake.to_str().unwrap()) else { return };
    let stderr = String::from_utf8_lossy(&output.stderr);
    println!("{stderr}");
    assert!(!output.status.success());
    assert!(stderr.contains(&*fake.to_string_lossy()), "names the file: {stderr}");
    assert!(stderr.contains("cannot load"), "{stderr}");
}

/// The TensorRT libraries and a CUDA device, or None after printing why the test skips.
fn tensorrt_and_gpu() -> Option<()> {
    if let Some(why) = tensorrt::status() {
        println!("skipped: TensorRT is not available here: {why}");
        return None;
    }
    if !tch::Cuda::is_available() {
        println!("skipped: TensorRT loads, but libtorch sees no CUDA device");
        return None;
    }
    println!("{}", tensorrt::version().unwrap_or_default());
    Some(())
}

#[test]
fn tensorrt_matches_libtorch_caches_its_plan_and_refits_adapted_weights() {
    let Some(()) = tensorrt_and_gpu() else { return };
    let (Some(model), Some(frame)) = (
        common::shared(KITTI_MODEL),
        common::shared(
            "data/kitti_tiny/2011_09_26/2011_09_26_drive_0023_sync/image_02/data/0000000000.png",
        ),
    ) else {
        return;
    };
    let image = load_rgb(&frame);
    let gpu = Device::Cuda(0);
    let load = || DepthNetwork::load(&model, Arch::RtMonoDepthS, gpu).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let options = TensorRtOptions {
        precision: Precision::Fp32,
        cache: Some(EngineCache::new(dir.path())),
        ..TensorRtOptions::default()
    };
    let mut engine = TensorRtDepthEngine::new(load(), 640, 192, &options).unwrap();
    assert!(engine.built_now && engine.cache_path.as_ref().is_some_and(|p| p.is_file()));
    let ours = engine.predict_disparity(&image).unwrap();
    let mut torch = TorchDepthEngine::new(load(), 640, 192, 1).unwrap();
    let reference = torch.predict_disparity(&image).unwrap();
    let diff = max_abs_diff(&ours.data, &reference.data);
    println!("KITTI frame 0, 640x192 FP32: max |Δdisp| TensorRT vs libtorch {diff:.2e}");
    assert!(diff < 1e-3, "max |Δdisp| {diff}");

    // The second engine comes from the cache and serves the same disparity.
    let mut cached = TensorRtDepthEngine::new(load(), 640, 192, &options).unwrap();
    assert!(!cached.built_now, "the plan must come from the cache");
    let again = cached.predict_disparity(&image).unwrap();
    assert!(max_abs_diff(&again.data, &ours.data) < 1e-6);
    let refittable = cached.refittable_weights().unwrap();
    assert!(refittable.iter().any(|n| n.starts_with("depth.")), "{refittable:?}");
    // RT-MonoDepth-S has no batch normalisation: every refittable weight is a variable.
    assert_eq!(cached.refit_path(), tensorrt::RefitPath::Device);

    // Adapted weights (decoder weights × 1.05) go live by refit, and then serve exactly them.
    let mut adapted = load();
    model_support::scale_decoder_weights(&mut adapted, 1.05);
    let (mut publisher, receiver) = weights_exchange();
    assert!(!engine.refresh_weights(&receiver).unwrap(), "nothing published yet");
    publisher.publish(&adapted).unwrap();
    assert!(engine.refresh_weights(&receiver).unwrap(), "a refit goes live on the call");
    let after = engine.predict_disparity(&image).unwrap();
    let mut expected_engine = TorchDepthEngine::new(adapted, 640, 192, 1).unwrap();
    let expected = expected_engine.predict_disparity(&image).unwrap();
    let diff = max_abs_diff(&after.data, &expected.data);
    let change = max_abs_diff(&after.data, &ours.data);
    let swaps = engine.weight_swaps();
    println!(
        "refit: install {:.3} ms on the live thread, publish → live {:.1} ms; max |Δ| vs \
         libtorch with the adapted weights {diff:.2e}, change {change:.2e}",
        swaps.install_ms[0], swaps.publish_to_live_ms[0]
    );
    assert!(diff < 1e-3 && change > 1e-3, "diff {diff}, change {change}");
    assert_eq!(swaps.swaps, 1);
}

#[test]
fn tensorrt_refits_a_batch_norm_network_through_the_onnx_parser_refitter() {
    let Some(()) = tensorrt_and_gpu() else { return };
    let Some(frame) = common::shared(
        "data/kitti_tiny/2011_09_26/2011_09_26_drive_0023_sync/image_02/data/0000000001.png",
    ) else {
        return;
    };
    let image = load_rgb(&frame);
    let gpu = Device::Cuda(0);
    tch::manual_seed(11);
    let network = DepthNetwork::new(Arch::Monodepth2R18, gpu);
    let fresh = || {
        let mut copy = DepthNetwork::new(Arch::Monodepth2R18, gpu);
        copy.copy_weights_from(&network).unwrap();
        copy
    };
    let options =
        TensorRtOptions { precision: Precision::Fp32, cache: None, ..TensorRtOptions::default() };
    let mut engine = TensorRtDepthEngine::new(fresh(), 128, 96, &options).unwrap();
    assert_eq!(engine.refit_path(), tensorrt::RefitPath::OnnxParser, "BN folds into convs");
    let before = engine.predict_disparity(&image).unwrap();
    let mut adapted = fresh();
    model_support::scale_decoder_weights(&mut adapted, 1.1);
    let (mut publisher, receiver) = weights_exchange();
    publisher.publish(&adapted).unwrap();
    assert!(engine.refresh_weights(&receiver).unwrap());
    let after = engine.predict_disparity(&image).unwrap();
    let expected = TorchDepthEngine::new(adapted, 128, 96, 1).unwrap().predict_disparity(&image);
    let diff = max_abs_diff(&after.data, &expected.unwrap().data);
    let change = max_abs_diff(&after.data, &before.data);
    println!("BN network refit: max |Δ| vs libtorch {diff:.2e}, change {change:.2e}");
    assert!(diff < 1e-3 && change > 1e-4, "diff {diff}, change {change}");
}
