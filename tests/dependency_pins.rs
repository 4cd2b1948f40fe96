//! The versions JetPack 6 (Jetson Orin) fixes, checked in Cargo.toml on every CI run:
//! GStreamer 1.20 API only (no `v1_2x` feature on any gstreamer crate), and our CUDA code built
//! against the CUDA 13.0 API by `cuda` and against the CUDA 12.6 API of JetPack 6 by `jetpack6`,
//! with the CUDA version chosen only by those two features.

use std::path::Path;

fn manifest() -> toml::Table {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml");
    let text = std::fs::read_to_string(&path).expect("Cargo.toml");
    text.parse::<toml::Table>().expect("Cargo.toml is TOML")
}

fn string_list(value: Option<&toml::Value>) -> Vec<String> {
    value
        .and_then(toml::Value::as_array)
        .map(|a| a.iter().filter_map(|v| v.as_str().map(str::to_owned)).collect())
        .unwrap_or_default()
}

#[test]
fn gstreamer_crates_use_only_the_1_20_api() {
    let manifest = manifest();
    let mut seen = 0;
    for section in ["dependencies", "dev-dependencies"] {
        let Some(deps) = manifest.get(section).and_then(toml::Value::as_table) else { continue };
        for (name, spec) in deps.iter().filter(|(name, _)| name.starts_with("gstreamer")) {
            seen += 1;
            let features = string_list(spec.get("features"));
            let newer: Vec<&String> = features.iter().filter(|f| f.starts_with("v1_2")).collect();
            assert!(
                newer.is_empty(),
                "{section}.{name} enables {newer:?}: JetPack 6 ships GStreamer 1.20, so no \
                 `v1_2x` feature may be on"
            );
        }
    }
    // Features can also be switched on from [features].
    let features = manifest.get("features").and_then(toml::Value::as_table).expect("[features]");
    for (feature, enables) in features {
        for item in string_list(Some(enables)) {
            assert!(
                !(item.starts_with("gstreamer") && item.contains("/v1_2")),
                "feature `{feature}` enables `{item}` (GStreamer newer than 1.20)"
            );
        }
    }
    assert!(seen >= 3, "expected the gstreamer, -app and -video crates, saw {seen}");
}

#[test]
fn the_cuda_api_version_comes_from_our_two_features() {
    let manifest = manifest();
    let deps = manifest["dependencies"].as_table().expect("[dependencies]");
    let cudarc = string_list(deps["cudarc"].get("features"));
    assert!(
        cudarc.iter().all(|f| !f.starts_with("cuda-1")),
        "the cudarc dependency pins a CUDA version ({cudarc:?}); the `cuda` / `jetpack6` features must choose it"
    );
    let features = manifest["features"].as_table().expect("[features]");
    let enables = |name: &str| string_list(features.get(name));
    assert!(enables("cuda").contains(&"cudarc/cuda-13000".to_owned()), "{:?}", enables("cuda"));
    assert!(
        enables("jetpack6").contains(&"cudarc/cuda-12060".to_owned()),
        "JetPack 6 is CUDA 12.6: {:?}",
        enables("jetpack6")
    );
}

#[test]
fn onnxruntime_is_loaded_at_run_time_with_an_api_jetpack_6_builds_have() {
    let manifest = manifest();
    let ort = manifest["dependencies"].get("ort").expect("ort is a dependency");
    assert_eq!(ort.get("default-features").and_then(toml::Value::as_bool), Some(false));
    let features = string_list(ort.get("features"));
    assert!(
        features.iter().any(|f| f == "load-dynamic"),
        "ort must load libonnxruntime at run time (load-dynamic): CI has no ONNX Runtime to link"
    );
    assert!(
        !features.iter().any(|f| f == "download-binaries" || f == "copy-dylibs"),
        "ort must not download binaries at build time (no internet in CI): {features:?}"
    );
    // The newest ONNX Runtime C API the crate may call: 1.20, which JetPack 6 builds have.
    let newest_api = features
        .iter()
        .filter_map(|f| f.strip_prefix("api-")?.parse::<u32>().ok())
        .max()
        .unwrap_or(17);
    assert!(newest_api <= 20, "ort asks for the 1.{newest_api} API; JetPack 6 builds have 1.20");
}

#[test]
fn tensorrt_links_nothing_and_zenoh_is_the_chosen_version_with_tcp_only() {
    let manifest = manifest();
    let features = manifest["features"].as_table().unwrap();
    let tensorrt = string_list(features.get("tensorrt"));
    assert!(
        tensorrt.contains(&"dep:cxx".to_owned()) && tensorrt.contains(&"dep:cxx-build".to_owned()),
        "the TensorRT backend is our cxx shim: {tensorrt:?}"
    );
    assert!(!manifest["dependencies"].as_table().unwrap().contains_key("trtx-sys"));
    let zenoh = manifest["dependencies"].get("zenoh").expect("zenoh is a dependency");
    let version = zenoh.get("version").and_then(toml::Value::as_str).unwrap();
    assert!(version.starts_with("1.10"), "zenoh {version}: the brief chose 1.10");
    assert_eq!(zenoh.get("default-features").and_then(toml::Value::as_bool), Some(false));
    assert_eq!(string_list(zenoh.get("features")), ["transport_tcp"], "TCP links only");
}
