//! `livedepth bench adapt`: one end-to-end adaptation step (depth + pose forward with autograd,
//! the self-supervised loss and its gradients, backward, Adam) on a live + replayed triplet at
//! the network size, and the live-frame latency (preprocessing + depth forward + disparity read
//! back), on the CPU and, where one is present and the binary has the `cuda` feature, on the GPU
//! (our fused loss and preprocessing kernels), printing the GPU / CPU ratio. Without a GPU it
//! prints the CPU figures and says why the GPU peer was not measured.

use clap::Args as ClapArgs;
use livedepth::adapt::{AdaptConfig, Adapter, StepOutcome, Triplet};
use livedepth::engine::TorchDepthEngine;
use livedepth::eval::median;
use livedepth::frame::RgbImage;
use livedepth::model::network::{DepthNetwork, PoseNetwork};
use livedepth::model::{Arch, PoseArch};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;
use tch::Device;

#[derive(ClapArgs, Debug)]
pub struct AdaptBenchArgs {
    /// Network input width (multiple of 32).
    #[arg(long, default_value_t = 640)]
    pub width: usize,
    /// Network input height (multiple of 32).
    #[arg(long, default_value_t = 192)]
    pub height: usize,
    /// Timed adaptation steps (after one warm-up step).
    #[arg(long, default_value_t = 3)]
    pub steps: usize,
    /// Timed live frames (after two warm-up frames).
    #[arg(long, default_value_t = 10)]
    pub frames: usize,
    /// `cpu` (CPU only) or `cuda` (CPU and GPU, with the ratio; says why when no GPU is there).
    #[arg(long, default_value = "cuda")]
    pub device: String,
    /// RT-MonoDepth-S checkpoint (folder or safetensors); default: the shared KITTI model when
    /// present, else random weights (timings do not depend on the values).
    #[arg(long)]
    pub model: Option<PathBuf>,
}

/// A textured planar RGB image in [0, 1], shifted by `shift` pixels.
fn texture(w: usize, h: usize, shift: f32) -> Vec<f32> {
    let mut out = vec![0f32; 3 * w * h];
    for c in 0..3 {
        for y in 0..h {
            for x in 0..w {
                let u = x as f32 + shift;
                let v = 0.5
                    + 0.25 * (0.11 * u + 0.7 * c as f32).sin() * (0.07 * y as f32).cos()
                    + 0.2 * (0.03 * (u + 2.0 * y as f32) + c as f32).sin();
                out[c * w * h + y * w + x] = v.clamp(0.0, 1.0);
            }
        }
    }
    out
}

fn triplet(w: usize, h: usize, shift: f32) -> Arc<Triplet> {
    Arc::new(Triplet {
        target_index: 1,
        k: 1,
        width: w,
        height: h,
        prev: Arc::new(texture(w, h, shift - 3.0)),
        target: Arc::new(texture(w, h, shift)),
        next: Arc::new(texture(w, h, shift + 3.0)),
        intrinsics: [0.58 * w as f32, 1.92 * h as f32, w as f32 / 2.0, h as f32 / 2.0],
        travel: None,
        rotation_prior: None,
    })
}

/// A camera frame at twice the network size (packed RGB8).
fn camera_frame(w: usize, h: usize) -> RgbImage {
    let planar = texture(2 * w, 2 * h, 0.0);
    let plane = 4 * w * h;
    let mut image = RgbImage::new(2 * w as u32, 2 * h as u32);
    for (i, px) in image.data.chunks_exact_mut(3).enumerate() {
        for (c, v) in px.iter_mut().enumerate() {
            *v = (planar[c * plane + i] * 255.0).round() as u8;
        }
    }
    image
}

/// Median times in milliseconds of one device's measurements.
struct DeviceFigures {
    step_ms: f64,
    live_ms: f64,
    backend: String,
}

fn networks(args: &AdaptBenchArgs, device: Device) -> livedepth::Result<(DepthNetwork, String)> {
    let model = args.model.clone().or_else(|| {
        let shared = PathBuf::from("../shared/models/rtmonodepth_s/m_640x192");
        shared.exists().then_some(shared)
    });
    Ok(match model {
        Some(path) => {
            (DepthNetwork::load(&path, Arch::RtMonoDepthS, device)?, path.display().to_string())
        }
        None => {
            tch::manual_seed(0);
            (DepthNetwork::new(Arch::RtMonoDepthS, device), "random weights".into())
        }
    })
}

fn synchronize(device: Device) {
    if let Device::Cuda(ordinal) = device {
        tch::Cuda::synchronize(ordinal as i64);
    }
}

fn measure(args: &AdaptBenchArgs, device: Device) -> livedepth::Result<DeviceFigures> {
    let (w, h) = (args.width, args.height);
    let (student, _) = networks(args, device)?;
    let mut live_net = DepthNetwork::new(Arch::RtMonoDepthS, device);
    live_net.copy_weights_from(&student)?;
    tch::manual_seed(1);
    let pose = PoseNetwork::new(PoseArch::RtMonoDepthSPose, device);
    let mut config = AdaptConfig {
        stationary_masked_fraction: 1.0,
        stationary_translation: 0.0,
        checkpoint_every: 0,
        ..AdaptConfig::default()
    };
    config.guards.rollback = false;
    let mut adapter = Adapter::new(config, student, pose)?;
    let backend = adapter.loss_backend().to_string();
    let batch = [triplet(w, h, 0.0), triplet(w, h, 7.0)];
    let mut step_ms = Vec::with_capacity(args.steps);
    for i in 0..=args.steps {
        let started = Instant::now();
        let outcome = adapter.step_on(&batch)?;
        synchronize(device);
        if outcome != StepOutcome::Accepted {
            return Err(livedepth::Error::Other(format!("adaptation step {i}: {outcome:?}")));
        }
        if i > 0 {
            step_ms.push(started.elapsed().as_secs_f64() * 1e3);
        }
    }

    let frame = camera_frame(w, h);
    let mut live_ms = Vec::with_capacity(args.frames);
    let mut engine = TorchDepthEngine::new(live_net, w as u32, h as u32, 1)?;
    #[cfg(feature = "cuda")]
    let mut gpu = match device {
        Device::Cuda(ordinal) => Some(
            livedepth::stages::gpu_preprocess::GpuPreprocess::new(
                ordinal,
                (w as u32, h as u32),
                Arch::RtMonoDepthS.normalisation(),
            )
            .map_err(|e| livedepth::Error::Other(format!("CUDA preprocessing: {e}")))?,
        ),
        _ => None,
    };
    let mut out = livedepth::engine::Disparity::new(w as u32, h as u32);
    #[cfg(feature = "cuda")]
    let mut resized = livedepth::frame::RgbImage::new(w as u32, h as u32);
    for i in 0..args.frames + 2 {
        let started = Instant::now();
        #[cfg(feature = "cuda")]
        if let Some(gpu) = gpu.as_mut() {
            let input = gpu.run(&frame, &mut resized)?;
            livedepth::engine::DepthEngine::forward_device_tensor(
                &mut engine,
                &input,
                &mut out.data,
            )?;
        } else {
            livedepth::engine::DepthEngine::predict_disparity_into(&mut engine, &frame, &mut out)?;
        }
        #[cfg(not(feature = "cuda"))]
        livedepth::engine::DepthEngine::predict_disparity_into(&mut engine, &frame, &mut out)?;
        if i >= 2 {
            live_ms.push(started.elapsed().as_secs_f64() * 1e3);
        }
    }
    if !out.data.iter().all(|v| v.is_finite()) {
        return Err(livedepth::Error::Other("non-finite disparity in the live benchmark".into()));
    }
    let (step_ms, live_ms) = (median(&mut step_ms), median(&mut live_ms));
    Ok(DeviceFigures { step_ms, live_ms, backend })
}

/// Why no GPU figures can be taken here, or None when they can.
fn gpu_unavailable() -> Option<String> {
    if !cfg!(feature = "cuda") {
        return Some("this binary was built without the `cuda` feature".into());
    }
    if !livedepth::engine::torch_cuda_available() {
        return Some("libtorch sees no CUDA device on this machine".into());
    }
    None
}

pub fn bench_adapt(args: AdaptBenchArgs) -> livedepth::Result<()> {
    let want_gpu = match args.device.as_str() {
        "cpu" => false,
        "cuda" => true,
        other => {
            return Err(livedepth::Error::Other(format!(
                "--device: expected cpu or cuda, got `{other}`"
            )));
        }
    };
    if !args.width.is_multiple_of(32)
        || !args.height.is_multiple_of(32)
        || args.width == 0
        || args.height == 0
    {
        return Err(livedepth::Error::Other(format!(
            "--width/--height: expected positive multiples of 32, got {}x{}",
            args.width, args.height
        )));
    }
    // Asked before any libtorch work (libtorch settles once whether CUDA exists).
    let gpu_missing = want_gpu.then(gpu_unavailable).flatten();
    let (_, model) = networks(&args, Device::Cpu)?;
    println!(
        "bench adapt: {}x{}, RT-MonoDepth-S + light pose ({model}), batch = live + 1 replayed \
         triplet, {} timed steps, {} timed live frames ({}x{} camera frames)",
        args.width,
        args.height,
        args.steps,
        args.frames,
        2 * args.width,
        2 * args.height
    );
    let cpu = measure(&args, Device::Cpu)?;
    println!(
        "  CPU ({} libtorch threads): adaptation step {:.1} ms (loss: {}), live frame {:.1} ms \
         (Lanczos preprocess + depth forward)",
        tch::get_num_threads(),
        cpu.step_ms,
        cpu.backend,
        cpu.live_ms
    );
    if !want_gpu {
        println!("  GPU: not measured (--device cpu)");
        return Ok(());
    }
    if let Some(reason) = gpu_missing {
        println!("  GPU: NOT MEASURED: {reason}; no GPU / CPU ratio in this run");
        return Ok(());
    }
    let gpu = measure(&args, Device::Cuda(0))?;
    println!(
        "  GPU: adaptation step {:.2} ms (loss: {}), live frame {:.2} ms (CUDA preprocess + depth \
         forward)",
        gpu.step_ms, gpu.backend, gpu.live_ms
    );
    println!(
        "  CPU / GPU: adaptation step {:.1}x faster on the GPU, live frame {:.1}x",
        cpu.step_ms / gpu.step_ms,
        cpu.live_ms / gpu.live_ms
    );
    Ok(())
}
