//! Build script: gives every binary, test and bench an rpath to libtorch's lib directory so they
//! start without LD_LIBRARY_PATH, and rebuilds when the CUDA kernel sources change.

fn main() {
    println!("cargo:rerun-if-changed=kernels");
    println!("cargo:rerun-if-env-changed=DEP_TCH_LIBTORCH_LIB");
    // torch-sys (links = "tch") exports the libtorch lib dir to its direct dependents.
    if let Ok(lib_dir) = std::env::var("DEP_TCH_LIBTORCH_LIB") {
        println!("cargo:rustc-link-arg=-Wl,-rpath,{lib_dir}");
    }
}
