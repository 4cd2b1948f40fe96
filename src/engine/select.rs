//! Which backend serves depth (`--engine torch|onnxruntime|tensorrt|auto`, or `network.engine`
//! in a config), and opening it: [`open_depth_engine`] returns the live path's engine behind
//! the [`DepthEngine`] trait. `auto` builds every backend available here, times each on the
//! same frame at the network size, keeps the fastest and says which it picked and why.

use super::{DepthEngine, EngineError, TorchDepthEngine, default_device};
use crate::frame::RgbImage;
use crate::model::Arch;
use serde::{Deserialize, Serialize};
use std::path::Path;
use std::time::Instant;

/// A depth backend, or `auto`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum EngineKind {
    /// libtorch (CPU, or CUDA where libtorch sees a GPU); the one that adapts in place.
    #[default]
    #[serde(rename = "torch")]
    Torch,
    /// ONNX Runtime over our ONNX export (CPU, or CUDA / TensorRT execution providers).
    #[serde(rename = "onnxruntime")]
    OnnxRuntime,
    /// TensorRT through our own shim.
    #[serde(rename = "tensorrt")]
    TensorRt,
    /// The fastest backend available, measured at start-up.
    #[serde(rename = "auto")]
    Auto,
}

/// The `--engine` values, for messages.
pub const ENGINE_KINDS: &str = "torch, onnxruntime, tensorrt, auto";

impl EngineKind {
    pub fn name(self) -> &'static str {
        match self {
            EngineKind::Torch => "torch",
            EngineKind::OnnxRuntime => "onnxruntime",
            EngineKind::TensorRt => "tensorrt",
            EngineKind::Auto => "auto",
        }
    }
}

impl std::fmt::Display for EngineKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for EngineKind {
    type Err = EngineError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "torch" | "libtorch" => Ok(EngineKind::Torch),
            "onnxruntime" | "ort" => Ok(EngineKind::OnnxRuntime),
            "tensorrt" | "trt" => Ok(EngineKind::TensorRt),
            "auto" => Ok(EngineKind::Auto),
            _ => Err(EngineError::UnknownEngine { value: s.to_owned() }),
        }
    }
}

/// What to open.
#[derive(Clone, Copy, Debug)]
pub struct EngineRequest<'a> {
    pub kind: EngineKind,
    /// Checkpoint folder or safetensors file.
    pub model: &'a Path,
    pub arch: Arch,
    pub width: u32,
    pub height: u32,
    /// Intra-op threads for the backends that take them per session (0: the backend's default).
    pub threads: usize,
}

/// The live path's engine: any backend behind the trait.
pub type LiveDepthEngine = Box<dyn DepthEngine + Send>;

/// An opened engine and how it was chosen.
pub struct OpenedEngine {
    pub engine: LiveDepthEngine,
    pub backend: EngineKind,
    /// For `auto`: the measured time per frame of each candidate, and why others were skipped.
    pub choice: String,
}

impl std::fmt::Debug for OpenedEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpenedEngine")
            .field("backend", &self.backend)
            .field("choice", &self.choice)
            .finish_non_exhaustive()
    }
}

/// Why TensorRT cannot serve here, or None when its libraries load (this build has the
/// `tensorrt` feature and the machine has TensorRT 10).
pub fn tensorrt_status() -> Option<String> {
    #[cfg(feature = "tensorrt")]
    {
        super::tensorrt::status()
    }
    #[cfg(not(feature = "tensorrt"))]
    {
        Some(
            "this build has no TensorRT backend: rebuild with `--features tensorrt` (TensorRT 10 \
             headers from scripts/setup.sh; the library is loaded at run time)"
                .to_owned(),
        )
    }
}

/// Opens one backend (not `auto`).
fn open_one(request: &EngineRequest, kind: EngineKind) -> Result<LiveDepthEngine, EngineError> {
    let EngineRequest { model, arch, width, height, .. } = *request;
    match kind {
        EngineKind::Torch => {
            Ok(Box::new(TorchDepthEngine::load(model, arch, width, height, default_device())?))
        }
        #[cfg(feature = "onnxruntime")]
        EngineKind::OnnxRuntime => {
            let device = match default_device() {
                tch::Device::Cuda(ordinal) => super::OrtDevice::Cuda(ordinal),
                _ => super::OrtDevice::Cpu,
            };
            let options =
                super::OrtOptions { device, threads: request.threads, ..Default::default() };
            Ok(Box::new(super::OrtDepthEngine::load(model, arch, width, height, options)?))
        }
        #[cfg(not(feature = "onnxruntime"))]
        EngineKind::OnnxRuntime => Err(EngineError::Unavailable {
            engine: "onnxruntime",
            reason: "this build has no onnxruntime feature".into(),
        }),
        #[cfg(feature = "tensorrt")]
        EngineKind::TensorRt => {
            if let Some(reason) = tensorrt_status() {
                return Err(EngineError::Unavailable { engine: "tensorrt", reason });
            }
            let tch::Device::Cuda(ordinal) = default_device() else {
                return Err(EngineError::Unavailable {
                    engine: "tensorrt",
                    reason: "TensorRT serves on a CUDA device, and libtorch sees none".into(),
                });
            };
            let options = super::TensorRtOptions::default();
            Ok(Box::new(super::TensorRtDepthEngine::load(
                model, arch, width, height, ordinal, &options,
            )?))
        }
        #[cfg(not(feature = "tensorrt"))]
        EngineKind::TensorRt => Err(EngineError::Unavailable {
            engine: "tensorrt",
            reason: tensorrt_status().unwrap_or_default(),
        }),
        EngineKind::Auto => Err(EngineError::Internal("open_one(auto)".into())),
    }
}

/// Median milliseconds per frame of `engine` on a mid-grey frame at its input size, after two
/// warm-up frames.
pub fn time_per_frame(engine: &mut LiveDepthEngine, runs: usize) -> Result<f64, EngineError> {
    let (w, h) = engine.input_size();
    let mut frame = RgbImage::new(w, h);
    frame.data.fill(128);
    let mut out = super::Disparity::new(w, h);
    for _ in 0..2 {
        engine.predict_disparity_into(&frame, &mut out)?;
    }
    let mut times = Vec::with_capacity(runs);
    for _ in 0..runs.max(1) {
        let t = Instant::now();
        engine.predict_disparity_into(&frame, &mut out)?;
        times.push(t.elapsed().as_secs_f64() * 1e3);
    }
    times.sort_by(f64::total_cmp);
    Ok(times[times.len() / 2])
}

/// Opens the engine `request` asks for. With `auto`, every available backend is built and timed
/// (see [`time_per_frame`]) and the fastest is kept; `choice` says what was measured.
pub fn open_depth_engine(request: &EngineRequest) -> Result<OpenedEngine, EngineError> {
    if request.kind != EngineKind::Auto {
        let engine = open_one(request, request.kind)?;
        let choice = format!("{} (asked for)", request.kind);
        return Ok(OpenedEngine { engine, backend: request.kind, choice });
    }
    let mut best: Option<(LiveDepthEngine, EngineKind, f64)> = None;
    let mut notes = Vec::new();
    for kind in [EngineKind::TensorRt, EngineKind::OnnxRuntime, EngineKind::Torch] {
        let mut engine = match open_one(request, kind) {
            Ok(engine) => engine,
            Err(EngineError::Unavailable { reason, .. }) => {
                notes.push(format!("{kind} unavailable: {reason}"));
                continue;
            }
            Err(e) => {
                notes.push(format!("{kind} unavailable: {e}"));
                continue;
            }
        };
        let ms = time_per_frame(&mut engine, 7)?;
        notes.push(format!("{kind} {ms:.1} ms/frame"));
        if best.as_ref().is_none_or(|(_, _, best_ms)| ms < *best_ms) {
            best = Some((engine, kind, ms));
        }
    }
    let (engine, backend, _) = best.ok_or_else(|| EngineError::Unavailable {
        engine: "auto",
        reason: format!("no backend could be opened: {}", notes.join("; ")),
    })?;
    let choice = format!("{backend}, the fastest here: {}", notes.join(", "));
    Ok(OpenedEngine { engine, backend, choice })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn engine_kinds_parse_and_print() {
        for kind in
            [EngineKind::Torch, EngineKind::OnnxRuntime, EngineKind::TensorRt, EngineKind::Auto]
        {
            assert_eq!(kind.name().parse::<EngineKind>().unwrap(), kind);
            assert!(ENGINE_KINDS.contains(kind.name()));
        }
        let err = "tflite".parse::<EngineKind>().unwrap_err().to_string();
        assert!(
            err.contains("--engine") && err.contains("tflite") && err.contains("auto"),
            "{err}"
        );
    }

    #[test]
    fn tensorrt_says_why_it_cannot_serve() {
        let request = EngineRequest {
            kind: EngineKind::TensorRt,
            model: Path::new("/nonexistent"),
            arch: Arch::RtMonoDepthS,
            width: 64,
            height: 64,
            threads: 1,
        };
        let err = open_depth_engine(&request).unwrap_err().to_string();
        if tensorrt_status().is_none() {
            // TensorRT loads here: what fails is the missing model (or the missing GPU), and the
            // error does not blame TensorRT.
            assert!(!err.contains("LIVEDEPTH_TENSORRT_LIB"), "{err}");
            return;
        }
        // No TensorRT on this machine (or not in this build): the error says what to do.
        assert!(err.contains("--engine tensorrt"), "{err}");
        assert!(
            err.contains("LIVEDEPTH_TENSORRT_LIB") || err.contains("--features tensorrt"),
            "{err}"
        );
    }
}
