//! Build script: gives every binary, test and bench an rpath to libtorch's lib directory so they
//! start without LD_LIBRARY_PATH, rebuilds when the CUDA kernel sources change, and turns the
//! `cuda` code on for the `jetpack6` feature (the same code on cudarc's CUDA 12.6 bindings), and,
//! with the `tensorrt` feature, compiles our TensorRT shim (cpp/) against TensorRT 10 headers.
//! The shim opens libnvinfer at run time, so the build needs the headers only.

#[cfg(feature = "tensorrt")]
use std::path::{Path, PathBuf};

fn main() {
    let cuda = std::env::var_os("CARGO_FEATURE_CUDA").is_some();
    let jetpack6 = std::env::var_os("CARGO_FEATURE_JETPACK6").is_some();
    if cuda && jetpack6 {
        panic!(
            "features `cuda` (CUDA 13.0 API) and `jetpack6` (CUDA 12.6 API) exclude each other: \
             build with one of them (`--features jetpack6` for a Jetson on JetPack 6)"
        );
    }
    if jetpack6 {
        println!("cargo:rustc-cfg=feature=\"cuda\"");
    }
    println!("cargo:rerun-if-changed=kernels");
    println!("cargo:rerun-if-env-changed=DEP_TCH_LIBTORCH_LIB");
    // torch-sys (links = "tch") exports the libtorch lib dir to its direct dependents.
    if let Ok(lib_dir) = std::env::var("DEP_TCH_LIBTORCH_LIB") {
        println!("cargo:rustc-link-arg=-Wl,-rpath,{lib_dir}");
    }
    #[cfg(feature = "tensorrt")]
    build_tensorrt_shim();
}

#[cfg(feature = "tensorrt")]
/// Where TensorRT 10's headers are, in order: `$TENSORRT_INCLUDE_DIR`; the system's own (JetPack
/// puts them in /usr/include/aarch64-linux-gnu), whose declarations match the installed library
/// exactly; `$LIVEDEPTH_TENSORRT_HEADERS` (written into .cargo/config.toml by scripts/setup.sh);
/// the folder scripts/setup.sh fills from the crates.io package trtx-sys 0.5.0.
fn tensorrt_headers() -> PathBuf {
    for var in ["TENSORRT_INCLUDE_DIR", "LIVEDEPTH_TENSORRT_HEADERS"] {
        println!("cargo:rerun-if-env-changed={var}");
    }
    let arch = std::env::var("CARGO_CFG_TARGET_ARCH").unwrap_or_default();
    let mut candidates: Vec<PathBuf> = Vec::new();
    if let Some(dir) = std::env::var_os("TENSORRT_INCLUDE_DIR") {
        candidates.push(dir.into());
    }
    candidates.push(format!("/usr/include/{arch}-linux-gnu").into());
    candidates.push("/usr/include".into());
    candidates.push("/usr/local/tensorrt/include".into());
    if let Some(dir) = std::env::var_os("LIVEDEPTH_TENSORRT_HEADERS") {
        candidates.push(dir.into());
    }
    if let Some(home) = std::env::var_os("HOME") {
        let cache = std::env::var_os("XDG_CACHE_HOME")
            .map_or_else(|| Path::new(&home).join(".cache"), PathBuf::from);
        candidates.push(cache.join("livedepth/tensorrt-headers-10.16/include"));
    }
    for dir in &candidates {
        let version = dir.join("NvInferVersion.h");
        if dir.join("NvInfer.h").is_file() && dir.join("NvOnnxParser.h").is_file() {
            let text = std::fs::read_to_string(&version).unwrap_or_default();
            let major_10 = text.lines().any(|l| {
                let words: Vec<&str> = l.split_whitespace().collect();
                matches!(
                    words.as_slice(),
                    ["#define", "NV_TENSORRT_MAJOR" | "TRT_MAJOR_ENTERPRISE", "10", ..]
                )
            });
            if !major_10 {
                panic!(
                    "feature `tensorrt`: {} is not TensorRT 10 (livedepth targets TensorRT 10.3 \
                     and later 10.x); point $TENSORRT_INCLUDE_DIR at TensorRT 10 headers",
                    version.display()
                );
            }
            return dir.clone();
        }
    }
    panic!(
        "feature `tensorrt` needs TensorRT 10 headers (NvInfer.h, NvOnnxParser.h) and found none \
         in {}: run `bash scripts/setup.sh` (fetches them from crates.io), or set \
         $TENSORRT_INCLUDE_DIR",
        candidates.iter().map(|c| c.display().to_string()).collect::<Vec<_>>().join(", ")
    );
}

#[cfg(feature = "tensorrt")]
/// Compiles cpp/tensorrt_shim.cc and the cxx bridge of src/engine/tensorrt/ffi.rs.
fn build_tensorrt_shim() {
    let headers = tensorrt_headers();
    println!("cargo:rerun-if-changed=cpp");
    println!("cargo:rerun-if-changed=src/engine/tensorrt/ffi.rs");
    cxx_build::bridge("src/engine/tensorrt/ffi.rs")
        .file("cpp/tensorrt_shim.cc")
        // System headers to the compiler: their own deprecation notes are not our warnings.
        .flag("-isystem")
        .flag(headers.display().to_string())
        // cuda_runtime_api.h: the two handle types TensorRT's headers need, without a toolkit.
        .flag("-isystem")
        .flag(
            Path::new(&std::env::var("CARGO_MANIFEST_DIR").unwrap_or_default())
                .join("cpp/compat")
                .display()
                .to_string(),
        )
        .std("c++17")
        .flag_if_supported("-Wno-unused-parameter")
        .compile("livedepth_tensorrt_shim");
    println!("cargo:rustc-link-lib=dl");
}
