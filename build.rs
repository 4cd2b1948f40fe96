//! Build script: gives every binary, test and bench an rpath to libtorch's lib directory so they
//! start without LD_LIBRARY_PATH, rebuilds when the CUDA kernel sources change, and turns the
//! `cuda` code on for the `jetpack6` feature (the same code on cudarc's CUDA 12.6 bindings).

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
}
