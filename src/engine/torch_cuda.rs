//! Loads libtorch's CUDA backend at run time.
//!
//! libtorch registers its CUDA device hooks from static initialisers in `libtorch_cuda.so`.
//! Nothing in livedepth calls a symbol of that library, so the linker's `--as-needed` drops it
//! from the binary's dependencies, and without it `tch::Cuda::is_available()` is false even on a
//! GPU machine with a CUDA build of libtorch. [`torch_cuda_available`] loads it once, from the
//! folder of the `libtorch_cpu.so` this process already runs (so the two always match), then asks
//! libtorch. A CPU-only libtorch, or a machine without the CUDA libraries, simply answers false;
//! [`torch_cuda_status`] says why. Where no NVIDIA driver can be loaded (`libcuda.so.1`), the
//! 400 MB library is not loaded at all (about 1.4 s saved per process).
//!
//! libtorch decides once, at its first query of the CUDA hooks, whether CUDA exists: load the
//! backend before any other libtorch work. The CLI does so at start-up ([`preload_torch_cuda`]).

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// The outcome of loading `libtorch_cuda.so`: the path that loaded, or why none did.
static LOADED: OnceLock<Result<PathBuf, String>> = OnceLock::new();

/// The folder of the `libtorch_cpu.so` mapped into this process (Linux: read from
/// /proc/self/maps), or None where it cannot be told.
fn libtorch_cpu_dir() -> Option<PathBuf> {
    let maps = std::fs::read_to_string("/proc/self/maps").ok()?;
    maps.lines()
        .filter_map(|line| line.split_whitespace().nth(5))
        .find(|path| path.ends_with("/libtorch_cpu.so"))
        .and_then(|path| Path::new(path).parent().map(Path::to_path_buf))
}

/// Whether an NVIDIA driver library can be opened (a cheap probe; no device query).
fn nvidia_driver_present() -> bool {
    // SAFETY: opening libcuda by name runs only the driver library's initialisers.
    unsafe { libloading::Library::new("libcuda.so.1") }.is_ok()
}

fn load() -> Result<PathBuf, String> {
    if !nvidia_driver_present() {
        return Err(
            "no NVIDIA driver (libcuda.so.1) on this machine, so libtorch runs on the CPU \
                    (libtorch_cuda.so is not loaded)"
                .into(),
        );
    }
    let mut candidates = Vec::new();
    if let Some(dir) = libtorch_cpu_dir() {
        candidates.push(dir.join("libtorch_cuda.so"));
    }
    candidates.push(PathBuf::from("libtorch_cuda.so"));
    let mut failures = Vec::new();
    for candidate in candidates {
        // SAFETY: loading libtorch_cuda runs its static initialisers, which register the CUDA
        // hooks with the libtorch_cpu already loaded from the same folder (the same build); it
        // is what `import torch` does. RTLD_GLOBAL lets its symbols resolve later dlopens.
        let opened = unsafe {
            libloading::os::unix::Library::open(
                Some(&candidate),
                libloading::os::unix::RTLD_NOW | libloading::os::unix::RTLD_GLOBAL,
            )
        };
        match opened {
            Ok(lib) => {
                // The hooks it registered must stay valid for the life of the process.
                std::mem::forget(lib);
                return Ok(candidate);
            }
            Err(e) => failures.push(format!("{}: {e}", candidate.display())),
        }
    }
    Err(format!(
        "libtorch's CUDA backend could not be loaded ({}); a CPU-only libtorch, or missing CUDA \
         libraries, leave libtorch on the CPU",
        failures.join("; ")
    ))
}

/// Loads libtorch's CUDA backend once; Ok(path) where it loaded, Err(why) where it did not.
pub fn torch_cuda_status() -> &'static Result<PathBuf, String> {
    LOADED.get_or_init(load)
}

/// Loads libtorch's CUDA backend now where an NVIDIA driver is present, before any other
/// libtorch work can make libtorch settle on "no CUDA" (call first thing in `main`).
pub fn preload_torch_cuda() {
    let _ = torch_cuda_status();
}

/// Whether libtorch can run on a CUDA device, after loading its CUDA backend once.
pub fn torch_cuda_available() -> bool {
    torch_cuda_status().is_ok() && tch::Cuda::is_available()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_libtorch_of_this_process_and_answers_without_aborting() {
        // Building a tensor maps libtorch_cpu into the process.
        let _ = tch::Tensor::zeros([1], (tch::Kind::Float, tch::Device::Cpu));
        let dir = libtorch_cpu_dir().expect("libtorch_cpu.so is mapped in a torch build");
        assert!(dir.join("libtorch_cpu.so").exists(), "{}", dir.display());
        // Either outcome is valid here (the venv's wheel may or may not carry CUDA); what must
        // hold is that the answer agrees with the load status and that asking twice is stable.
        let first = torch_cuda_available();
        assert_eq!(first, torch_cuda_available());
        if first {
            assert!(torch_cuda_status().is_ok());
        }
        if let Err(why) = torch_cuda_status() {
            assert!(why.contains("libtorch_cuda.so") || why.contains("libcuda.so.1"), "{why}");
            assert_eq!(why.contains("libcuda.so.1"), !nvidia_driver_present(), "{why}");
        }
    }
}
