//! The cxx bridge to our TensorRT shim (cpp/tensorrt_shim.{h,cc}). The shim is compiled against
//! TensorRT 10 headers and opens libnvinfer / libnvonnxparser with dlopen, so nothing here links
//! against TensorRT. C++ exceptions arrive as `cxx::Exception` (the text says what failed and
//! carries TensorRT's own last errors). TensorRT's log goes to `tracing` via [`tensorrt_log`].

#[cxx::bridge(namespace = "livedepth::trt")]
pub(crate) mod bridge {
    /// How [`Library::build_serialized`] builds an engine.
    struct BuildOptions {
        /// FP16 kernels where faster (FP32 elsewhere).
        fp16: bool,
        /// The builder's workspace memory pool limit.
        workspace_bytes: u64,
        /// 0: not refittable; 1: `kREFIT` (every weight); 2: `kREFIT_INDIVIDUAL` (`refittable`).
        refit: u8,
        /// Weights marked refittable with `kREFIT_INDIVIDUAL`.
        refittable: Vec<String>,
        /// Graph outputs kept (the others are unmarked, and what only they need is pruned).
        outputs: Vec<String>,
        /// The input the optimisation profile is for, and its NCHW shapes.
        input: String,
        min_shape: Vec<i64>,
        opt_shape: Vec<i64>,
        max_shape: Vec<i64>,
    }

    extern "Rust" {
        fn tensorrt_log(severity: i32, message: &str);
    }

    unsafe extern "C++" {
        include!("livedepth/cpp/tensorrt_shim.h");

        type Library;
        type Engine;

        fn open_library(
            nvinfer: &str,
            onnxparser: &str,
            preload: &[String],
        ) -> Result<UniquePtr<Library>>;
        fn version(self: &Library) -> i32;
        fn compute_capability(self: &Library, ordinal: i32) -> Result<i32>;
        fn build_serialized(self: &Library, onnx: &[u8], options: &BuildOptions)
        -> Result<Vec<u8>>;
        fn deserialize(self: &Library, plan: &[u8]) -> Result<UniquePtr<Engine>>;

        fn io_tensor_names(self: &Engine) -> Vec<String>;
        fn set_input_shape(self: Pin<&mut Engine>, name: &str, dims: &[i64]) -> Result<()>;
        fn set_address(self: Pin<&mut Engine>, name: &str, address: u64) -> Result<()>;
        fn enqueue(self: Pin<&mut Engine>) -> Result<()>;
        fn refittable_weights(self: Pin<&mut Engine>) -> Result<Vec<String>>;
        fn refit_weight(
            self: Pin<&mut Engine>,
            name: &str,
            address: u64,
            count: i64,
            on_device: bool,
        ) -> Result<()>;
        fn missing_weights(self: Pin<&mut Engine>) -> Result<Vec<String>>;
        fn refit_commit(self: Pin<&mut Engine>) -> Result<()>;
        fn refit_from_onnx(self: Pin<&mut Engine>, onnx: &[u8]) -> Result<()>;
    }
}

// SAFETY: a Library is immutable after open_library (its logger locks its own state), and an
// Engine is used by one thread at a time (it is only reached through `&mut` or a `Pin<&mut>`);
// TensorRT's objects may be moved between threads.
unsafe impl Send for bridge::Library {}
// SAFETY: the Library's methods take `&self` and touch only its immutable handles, the logger
// (mutex-guarded) and per-call TensorRT objects.
unsafe impl Sync for bridge::Library {}
// SAFETY: see the Send impl of Library; an engine has one owner at a time.
unsafe impl Send for bridge::Engine {}

/// TensorRT's log severities (ILogger::Severity) into `tracing`.
fn tensorrt_log(severity: i32, message: &str) {
    match severity {
        0 | 1 => tracing::error!(target: "tensorrt", "{message}"),
        2 => tracing::warn!(target: "tensorrt", "{message}"),
        3 => tracing::debug!(target: "tensorrt", "{message}"),
        _ => tracing::trace!(target: "tensorrt", "{message}"),
    }
}
