//! `livedepth bench loss --device cuda`: the fused loss forward + backward on the GPU against
//! PyTorch autograd composing the same formulation (scripts/bench/loss_cuda_peer.py, run with the
//! venv's Python on the same GPU in the same run), with the achieved DRAM bandwidth of our passes
//! (compulsory traffic of the byte model below) as a fraction of the device's peak.

use super::CudaError;
use super::device::{CudaKernels, DeviceLossGrads, DeviceLossInputs, FusedLossGpu};
use crate::loss::LossConfig;
use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

/// The PyTorch baseline script, written to a temporary file when the benchmark runs.
pub const TORCH_BASELINE: &str = include_str!("../../scripts/bench/loss_cuda_peer.py");

/// What to measure.
#[derive(Clone, Debug)]
pub struct BenchLossOptions {
    /// Network resolutions (W, H).
    pub sizes: Vec<(usize, usize)>,
    pub sources: usize,
    pub scales: usize,
    pub iterations: usize,
    pub warmup: usize,
    /// Python with torch for the baseline (default: `$LIVEDEPTH_PYTHON`); None skips it.
    pub python: Option<PathBuf>,
    pub device: usize,
}

impl Default for BenchLossOptions {
    fn default() -> Self {
        Self {
            sizes: vec![(640, 192), (1024, 320)],
            sources: 2,
            scales: 4,
            iterations: 50,
            warmup: 5,
            python: Some(crate::python::torch_python(None)),
            device: 0,
        }
    }
}

/// One measured configuration.
#[derive(Clone, Debug)]
pub struct BenchLossRow {
    pub width: usize,
    pub height: usize,
    pub sources: usize,
    pub scales: usize,
    /// Mean milliseconds of our fused forward + backward.
    pub fused_ms: f64,
    /// Mean milliseconds of our forward alone.
    pub forward_ms: f64,
    /// Mean milliseconds of PyTorch's forward + backward, where it ran.
    pub torch_ms: Option<f64>,
    /// Why the baseline did not run.
    pub torch_note: Option<String>,
    /// Modelled compulsory DRAM bytes of one forward + backward.
    pub bytes: f64,
    /// Device peak DRAM bandwidth (`$LIVEDEPTH_PEAK_GBPS` overrides the driver's figures).
    pub peak_bytes_per_s: Option<f64>,
}

impl BenchLossRow {
    /// PyTorch time / our time.
    pub fn speedup(&self) -> Option<f64> {
        self.torch_ms.map(|t| t / self.fused_ms)
    }
    /// Achieved bandwidth (bytes/s) of the modelled traffic.
    pub fn achieved_bytes_per_s(&self) -> f64 {
        self.bytes / (self.fused_ms * 1e-3)
    }
}

/// The benchmark's result.
#[derive(Clone, Debug)]
pub struct BenchLossReport {
    pub device: String,
    pub rows: Vec<BenchLossRow>,
}

impl fmt::Display for BenchLossReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "fused loss forward+backward on {}", self.device)?;
        writeln!(
            f,
            "{:>10} {:>3} {:>3} {:>10} {:>10} {:>10} {:>8} {:>10} {:>7}",
            "size", "src", "sc", "fwd ms", "fwd+bwd ms", "torch ms", "speedup", "GB/s", "% peak"
        )?;
        for r in &self.rows {
            let torch = r.torch_ms.map_or("-".to_string(), |t| format!("{t:.3}"));
            let speed = r.speedup().map_or("-".to_string(), |s| format!("{s:.1}x"));
            let gbs = r.achieved_bytes_per_s() / 1e9;
            let pct = r.peak_bytes_per_s.map_or("-".to_string(), |p| {
                format!("{:.1}%", 100.0 * r.achieved_bytes_per_s() / p)
            });
            writeln!(
                f,
                "{:>10} {:>3} {:>3} {:>10.3} {:>10.3} {:>10} {:>8} {:>10.1} {:>7}",
                format!("{}x{}", r.width, r.height),
                r.sources,
                r.scales,
                r.forward_ms,
                r.fused_ms,
                torch,
                speed,
                gbs,
                pct
            )?;
            if let Some(note) = &r.torch_note {
                writeln!(f, "           PyTorch baseline: {note}")?;
            }
        }
        Ok(())
    }
}

/// Compulsory DRAM bytes of one forward + backward (each pass's inputs read once, outputs
/// written once; halo and 3x3 re-reads are assumed to hit the caches).
pub fn modelled_bytes(w: usize, h: usize, n: usize, scales: usize, automask: bool) -> f64 {
    let hw = (w * h) as f64;
    let n = n as f64;
    let mut b = 0.0;
    if automask {
        b += (n + 1.0) * 12.0 * hw + n * 4.0 * hw + 5.0 * hw; // identity errors
    }
    for s in 0..scales {
        let low = hw / 4f64.powi(s as i32);
        b += 4.0 * low; // smooth_sum
        b += 12.0 * hw
            + n * (12.0 * hw + 4.0 * low)
            + 5.0 * hw
            + hw
            + if s == 0 { 4.0 * hw } else { 0.0 }; // forward
        b += 16.0 * low; // smooth_forward
        b += 12.0 * hw + n * (12.0 * hw + 4.0 * low) + hw + 4.0 * hw; // backward
        b += 4.0 * hw + 4.0 * low + 12.0 * low + 4.0 * low; // disparity backward
    }
    b
}

fn torch_baseline(
    python: &PathBuf,
    w: usize,
    h: usize,
    o: &BenchLossOptions,
) -> Result<f64, String> {
    let dir = std::env::temp_dir().join(format!("livedepth-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let script = dir.join("loss_cuda_peer.py");
    std::fs::write(&script, TORCH_BASELINE).map_err(|e| format!("{}: {e}", script.display()))?;
    let out = std::process::Command::new(python)
        .arg(&script)
        .args([w, h, o.sources, o.scales, o.iterations, o.warmup].map(|v| v.to_string()))
        .output()
        .map_err(|e| format!("{}: {e}", python.display()))?;
    let _ = std::fs::remove_dir_all(&dir);
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        return Err(format!("{} failed: {}", python.display(), err.lines().last().unwrap_or("")));
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let v: serde_json::Value =
        serde_json::from_str(text.trim()).map_err(|e| format!("bad output {text:?}: {e}"))?;
    v["ms"].as_f64().ok_or_else(|| format!("no `ms` in {text:?}"))
}

/// Runs the benchmark; [`CudaError::NoDriver`] / [`CudaError::NoDevice`] without a GPU.
pub fn bench_loss(o: &BenchLossOptions) -> Result<BenchLossReport, CudaError> {
    let k = Arc::new(CudaKernels::new(o.device)?);
    let peak = std::env::var("LIVEDEPTH_PEAK_GBPS")
        .ok()
        .and_then(|v| v.parse::<f64>().ok())
        .map(|gbps| gbps * 1e9)
        .or_else(|| k.peak_bandwidth().ok().filter(|p| *p > 0.0));
    let config = LossConfig::default();
    let mut rows = Vec::new();
    for &(w, h) in &o.sizes {
        let sc = super::twin::synthetic::synthetic_inputs(w, h, o.sources, o.scales, 1);
        let up = |v: &[f32]| k.upload(v);
        let target = up(&sc.target)?;
        let sources = sc.sources.iter().map(|v| up(v)).collect::<Result<Vec<_>, _>>()?;
        let disparities = sc.disparities.iter().map(|v| up(v)).collect::<Result<Vec<_>, _>>()?;
        let pyramid = sc.pyramid.iter().map(|v| up(v)).collect::<Result<Vec<_>, _>>()?;
        let poses = up(&sc.poses.iter().flatten().copied().collect::<Vec<f32>>())?;
        let noise = up(&sc.noise)?;
        let grads = sc
            .disparities
            .iter()
            .map(|v| k.zeros::<f32>(v.len()))
            .collect::<Result<Vec<_>, _>>()?;
        let inputs = DeviceLossInputs {
            width: w,
            height: h,
            target: k.ptr(&target),
            sources: sources.iter().map(|s| k.ptr(s)).collect(),
            disparities: disparities.iter().map(|s| k.ptr(s)).collect(),
            target_pyramid: pyramid.iter().map(|s| k.ptr(s)).collect(),
            poses: k.ptr(&poses),
            invert: sc.invert.clone(),
            intrinsics: sc.intrinsics,
            tie_break_noise: Some(k.ptr(&noise)),
        };
        let out = DeviceLossGrads {
            grad_disparities: grads.iter().map(|s| k.ptr(s)).collect(),
            grad_poses: None,
        };
        let mut loss = FusedLossGpu::new(k.clone(), config)?;
        // Host clock around `iterations` asynchronous launches, synchronised at both ends.
        let clock = |loss: &mut FusedLossGpu, backward: bool| -> Result<f64, CudaError> {
            let mut run = || -> Result<(), CudaError> {
                // SAFETY: all buffers above are alive and sized as documented.
                unsafe {
                    if backward {
                        loss.forward_backward(&inputs, &out)
                    } else {
                        loss.forward(&inputs)
                    }
                }
            };
            for _ in 0..o.warmup {
                run()?;
            }
            k.synchronize()?;
            let start = std::time::Instant::now();
            for _ in 0..o.iterations.max(1) {
                run()?;
            }
            k.synchronize()?;
            Ok(start.elapsed().as_secs_f64() * 1e3 / o.iterations.max(1) as f64)
        };
        let forward_ms = clock(&mut loss, false)?;
        let fused_ms = clock(&mut loss, true)?;
        let (torch_ms, torch_note) = match &o.python {
            None => (None, Some("no Python (set LIVEDEPTH_PYTHON)".to_string())),
            Some(py) => match torch_baseline(py, w, h, o) {
                Ok(ms) => (Some(ms), None),
                Err(e) => (None, Some(e)),
            },
        };
        rows.push(BenchLossRow {
            width: w,
            height: h,
            sources: o.sources,
            scales: o.scales,
            fused_ms,
            forward_ms,
            torch_ms,
            torch_note,
            bytes: modelled_bytes(w, h, o.sources, o.scales, config.automask),
            peak_bytes_per_s: peak,
        });
    }
    Ok(BenchLossReport { device: format!("{} ({})", k.device_name, k.arch), rows })
}

/// Live-frame preprocessing latency: one host frame -> network input, on the GPU (upload +
/// kernel, synchronised) and with the CPU twin.
#[derive(Clone, Debug)]
pub struct BenchPreprocessReport {
    pub device: String,
    pub frame: (usize, usize),
    pub network: (usize, usize),
    pub gpu_ms: f64,
    pub cpu_ms: f64,
}

impl fmt::Display for BenchPreprocessReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "preprocess RGBA {}x{} -> {}x{} (area): GPU {:.3} ms (upload + kernel, {}), CPU twin {:.3} ms",
            self.frame.0,
            self.frame.1,
            self.network.0,
            self.network.1,
            self.gpu_ms,
            self.device,
            self.cpu_ms
        )
    }
}

/// Measures [`BenchPreprocessReport`] over `iterations` frames.
pub fn bench_preprocess(
    frame: (usize, usize),
    network: (usize, usize),
    iterations: usize,
    device: usize,
) -> Result<BenchPreprocessReport, CudaError> {
    use super::device::FramePreprocessor;
    use super::{Normalization, PackedFrame, PixelFormat, Resize};
    let k = Arc::new(CudaKernels::new(device)?);
    let (fw, fh) = frame;
    let (nw, nh) = network;
    let data: Vec<u8> = (0..fw * fh * 4).map(|i| (i * 31 % 251) as u8).collect();
    let packed = PackedFrame {
        data: &data,
        width: fw,
        height: fh,
        pitch: fw * 4,
        format: PixelFormat::Rgba,
    };
    let norm = Normalization::default();
    let out = k.zeros::<f32>(3 * nw * nh)?;
    let dst = k.ptr(&out);
    let mut pre = FramePreprocessor::new(k.clone());
    let n = iterations.max(1);
    // SAFETY: `out` holds 3 x nh x nw floats.
    unsafe { pre.run(&packed, dst, nw, nh, Resize::Area, &norm)? };
    k.synchronize()?;
    let start = std::time::Instant::now();
    for _ in 0..n {
        // SAFETY: as above.
        unsafe { pre.run(&packed, dst, nw, nh, Resize::Area, &norm)? };
        k.synchronize()?;
    }
    let gpu_ms = start.elapsed().as_secs_f64() * 1e3 / n as f64;
    let mut host = vec![0.0f32; 3 * nw * nh];
    let start = std::time::Instant::now();
    for _ in 0..n {
        super::twin::preprocess(&packed, nw, nh, Resize::Area, &norm, &mut host)?;
    }
    let cpu_ms = start.elapsed().as_secs_f64() * 1e3 / n as f64;
    Ok(BenchPreprocessReport { device: k.device_name.clone(), frame, network, gpu_ms, cpu_ms })
}
