//! The typed error of the CUDA module: missing driver or NVRTC, compilation failures, bad
//! shapes or buffers handed to a kernel, and PTX-cache I/O.

use std::path::PathBuf;

/// Everything that can go wrong loading, compiling or launching our kernels (and the bad inputs
/// their CPU twins reject).
#[derive(Debug, thiserror::Error)]
pub enum CudaError {
    /// The CUDA driver library (libcuda) could not be loaded: no GPU driver on this machine.
    #[error(
        "no CUDA driver: libcuda could not be loaded ({detail}); this build runs without a GPU, \
         use the CPU path (device = \"cpu\") or install the NVIDIA driver"
    )]
    NoDriver { detail: String },
    /// The driver loaded but reports no device with this ordinal.
    #[error("no CUDA device with ordinal {ordinal} ({count} present)")]
    NoDevice { ordinal: usize, count: usize },
    /// libnvrtc was not found anywhere we looked.
    #[error(
        "libnvrtc not found; searched: {searched}. Set LIVEDEPTH_NVRTC to the library file, or \
         install it (`pip install nvidia-cuda-nvrtc` into the venv named by LIVEDEPTH_PYTHON, or \
         the CUDA toolkit so that libnvrtc.so is on the library path)"
    )]
    NoNvrtc { searched: String },
    /// NVRTC rejected a kernel source.
    #[error("NVRTC failed to compile kernels/{kernel}.cu for {arch}: {log}")]
    Compile { kernel: String, arch: String, log: String },
    /// A CUDA driver call failed.
    #[error("CUDA driver error during {during}: {detail}")]
    Driver { during: String, detail: String },
    /// Reading or writing the PTX cache failed.
    #[error("PTX cache {}: {source}", path.display())]
    Cache { path: PathBuf, source: std::io::Error },
    /// A kernel argument is unusable (shape, size, count, value).
    #[error("invalid {what}: {detail}")]
    InvalidInput { what: String, detail: String },
}

impl CudaError {
    /// An [`CudaError::InvalidInput`] naming the argument and what was expected.
    pub fn invalid(what: impl Into<String>, detail: impl Into<String>) -> Self {
        Self::InvalidInput { what: what.into(), detail: detail.into() }
    }
}
