//! Finding and loading libnvrtc at run time, compiling our kernels to PTX, and the on-disk PTX
//! cache keyed by sha256(program text, options, architecture, NVRTC version).
//!
//! libnvrtc is looked up in this order: `$LIVEDEPTH_NVRTC` (a file), the venv named by
//! `$LIVEDEPTH_PYTHON` (`lib/python*/site-packages/nvidia/*/lib/libnvrtc.so*`, the PyPI
//! `nvidia-cuda-nvrtc` wheel), then the system library path (cudarc's own name list). A file found
//! by path is opened first so that cudarc's by-name lookup resolves to the already loaded library
//! (the dynamic loader matches it by its soname, e.g. `libnvrtc.so.13` or `libnvrtc.so.12`).

use super::error::CudaError;
use super::sources::KernelModule;
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// NVRTC options every module is compiled with (besides the architecture). `--fmad=false` keeps
/// the rounding of each multiply-add the same as the CPU twins, so parity tolerances stay tight.
pub const COMPILE_OPTIONS: &[&str] = &["--std=c++17", "--fmad=false"];

/// The NVRTC library in use.
#[derive(Clone, Debug)]
pub struct NvrtcInfo {
    /// Where it was loaded from (`None`: by name from the system library path).
    pub path: Option<PathBuf>,
    /// NVRTC's (major, minor) version.
    pub version: (i32, i32),
}

struct Loaded {
    info: NvrtcInfo,
    // Keeps the explicitly opened libraries mapped for the life of the process.
    _library: Vec<libloading::Library>,
}

// SAFETY: the library handle is never used after loading; it only keeps the mapping alive.
unsafe impl Sync for Loaded {}
unsafe impl Send for Loaded {}

/// Candidate library files, in search order, and a description of every place searched.
pub fn nvrtc_candidates() -> (Vec<PathBuf>, Vec<String>) {
    let mut found = Vec::new();
    let mut searched = Vec::new();
    if let Some(path) = std::env::var_os("LIVEDEPTH_NVRTC").map(PathBuf::from) {
        searched.push(format!("LIVEDEPTH_NVRTC={}", path.display()));
        if path.is_file() {
            found.push(path);
        }
    }
    if let Some(python) = std::env::var_os("LIVEDEPTH_PYTHON").map(PathBuf::from) {
        // <venv>/bin/python -> <venv>
        if let Some(venv) = python.parent().and_then(Path::parent) {
            searched.push(format!("{}/lib/python*/site-packages/nvidia/*/lib", venv.display()));
            found.extend(venv_nvrtc(venv));
        }
    }
    searched.push("the system library path (libnvrtc.so, libnvrtc.so.13, .so.12, ...)".into());
    (found, searched)
}

fn sorted_dir(path: &Path) -> Vec<PathBuf> {
    let mut entries: Vec<PathBuf> = match std::fs::read_dir(path) {
        Ok(rd) => rd.filter_map(|e| e.ok().map(|e| e.path())).collect(),
        Err(_) => return Vec::new(),
    };
    entries.sort();
    entries
}

fn venv_nvrtc(venv: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for py in sorted_dir(&venv.join("lib")) {
        let nvidia = py.join("site-packages").join("nvidia");
        for pkg in sorted_dir(&nvidia) {
            for lib in sorted_dir(&pkg.join("lib")) {
                let name = lib.file_name().and_then(|n| n.to_str()).unwrap_or("");
                // libnvrtc.so.13 / libnvrtc.so.12 (not the builtins or the .alt variant).
                if name.starts_with("libnvrtc.so") {
                    out.push(lib);
                }
            }
        }
    }
    // Newest major first.
    out.sort_by(|a, b| b.cmp(a));
    out
}

/// Opens `libnvrtc-builtins.so*` from the directory of `nvrtc` (not the `.alt` variant).
fn builtins_beside(nvrtc: &Path) -> Vec<libloading::Library> {
    let Some(dir) = nvrtc.parent() else { return Vec::new() };
    sorted_dir(dir)
        .into_iter()
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("libnvrtc-builtins.so"))
        })
        // SAFETY: NVRTC's own builtins library; loading runs only its initialisers.
        .filter_map(|p| unsafe { libloading::Library::new(&p) }.ok())
        .collect()
}

/// Loads libnvrtc once per process (see the module doc for the search order).
pub fn load_nvrtc() -> Result<NvrtcInfo, CudaError> {
    static LOADED: OnceLock<Result<Loaded, String>> = OnceLock::new();
    let loaded = LOADED.get_or_init(|| {
        let (candidates, searched) = nvrtc_candidates();
        let mut library = Vec::new();
        let mut path = None;
        let mut failures = Vec::new();
        for candidate in candidates {
            // SAFETY: loading libnvrtc runs only its (trusted, NVIDIA) initialisers.
            match unsafe { libloading::Library::new(&candidate) } {
                Ok(lib) => {
                    // libnvrtc opens its builtins library by name at compile time: load the one
                    // beside it first so that lookup finds it too.
                    library.extend(builtins_beside(&candidate));
                    library.push(lib);
                    path = Some(candidate);
                    break;
                }
                Err(e) => failures.push(format!("{}: {e}", candidate.display())),
            }
        }
        // SAFETY: probing only opens and closes the library by name.
        if !unsafe { cudarc::nvrtc::sys::is_culib_present() } {
            let mut msg = searched.join("; ");
            if !failures.is_empty() {
                msg.push_str(&format!(" (failed to open: {})", failures.join("; ")));
            }
            return Err(msg);
        }
        let (mut major, mut minor) = (0, 0);
        // SAFETY: plain out-parameters.
        let status = unsafe { cudarc::nvrtc::sys::nvrtcVersion(&mut major, &mut minor) };
        if status != cudarc::nvrtc::sys::nvrtcResult::NVRTC_SUCCESS {
            return Err(format!("nvrtcVersion failed: {status:?}"));
        }
        Ok(Loaded { info: NvrtcInfo { path, version: (major, minor) }, _library: library })
    });
    match loaded {
        Ok(l) => Ok(l.info.clone()),
        Err(searched) => Err(CudaError::NoNvrtc { searched: searched.clone() }),
    }
}

/// Compiles one module to PTX for `arch` (e.g. `compute_87`, `compute_90`, `sm_90`).
pub fn compile_ptx(module: &KernelModule, arch: &str) -> Result<String, CudaError> {
    load_nvrtc()?;
    let options: Vec<String> = COMPILE_OPTIONS
        .iter()
        .map(|s| s.to_string())
        .chain(std::iter::once(format!("--gpu-architecture={arch}")))
        .collect();
    let opts = cudarc::nvrtc::CompileOptions {
        options,
        name: Some(format!("{}.cu", module.name)),
        ..Default::default()
    };
    let ptx = cudarc::nvrtc::compile_ptx_with_opts(module.program_text(), opts).map_err(|e| {
        let log = match &e {
            cudarc::nvrtc::CompileError::CompileError { log, .. } => {
                log.to_string_lossy().into_owned()
            }
            other => format!("{other:?}"),
        };
        CudaError::Compile { kernel: module.name.into(), arch: arch.into(), log }
    })?;
    Ok(ptx.to_src())
}

/// The PTX cache directory: `$LIVEDEPTH_PTX_CACHE`, else `$XDG_CACHE_HOME/livedepth/ptx`, else
/// `~/.cache/livedepth/ptx`.
pub fn cache_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("LIVEDEPTH_PTX_CACHE") {
        return PathBuf::from(dir);
    }
    let base = std::env::var_os("XDG_CACHE_HOME").map(PathBuf::from).unwrap_or_else(|| {
        std::env::var_os("HOME")
            .map(PathBuf::from)
            .unwrap_or_else(std::env::temp_dir)
            .join(".cache")
    });
    base.join("livedepth").join("ptx")
}

/// The cache key of a module for an architecture and NVRTC version (hex sha256).
pub fn cache_key(module: &KernelModule, arch: &str, nvrtc_version: (i32, i32)) -> String {
    let mut h = Sha256::new();
    h.update(module.program_text().as_bytes());
    for opt in COMPILE_OPTIONS {
        h.update(b"\0");
        h.update(opt.as_bytes());
    }
    h.update(format!("\0{arch}\0nvrtc {}.{}", nvrtc_version.0, nvrtc_version.1).as_bytes());
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// PTX of `module` for `arch`, from the cache in `dir` or compiled (and then cached atomically).
/// Returns the PTX and whether it came from the cache.
pub fn cached_ptx(
    module: &KernelModule,
    arch: &str,
    dir: &Path,
) -> Result<(String, bool), CudaError> {
    let info = load_nvrtc()?;
    let path = dir.join(format!("{}-{}.ptx", module.name, cache_key(module, arch, info.version)));
    if let Ok(text) = std::fs::read_to_string(&path)
        && text.contains(".entry")
    {
        return Ok((text, true));
    }
    let ptx = compile_ptx(module, arch)?;
    write_atomic(&path, ptx.as_bytes())?;
    Ok((ptx, false))
}

/// Writes `bytes` to `path` atomically ([`crate::tempfiles::write_atomic`]), creating its folder.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), CudaError> {
    let cache_err = |source| CudaError::Cache { path: path.to_path_buf(), source };
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(cache_err)?;
    crate::tempfiles::write_atomic(
        path,
        |temp| std::fs::write(temp, bytes).map_err(cache_err),
        cache_err,
    )
}
