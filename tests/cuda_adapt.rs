//! The adaptation loop's loss backend: backend selection (automatic, forced, refused with a
//! named cause), the device tie-break noise (a counter-based hash whose libtorch version matches
//! its scalar twin and is deterministic per seed), the error when CUDA is asked for without a
//! driver, and (GPU only, skipped with a printed reason otherwise) a full adaptation step on
//! CUDA with our fused kernels matching the CPU step's loss, distillation and new weights.
#![cfg(feature = "torch")]

mod common;

use livedepth::adapt::LossBackend;
use livedepth::adapt::loss_backend::{
    LossBackendKind, choose_loss_backend, tie_break_noise_tensor, tie_break_noise_value,
};
use livedepth::loss::LossConfig;
use tch::Device;

/// libtorch's generator and thread pool are global: torch tests here run one at a time.
static TORCH: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn torch_exclusive() -> std::sync::MutexGuard<'static, ()> {
    TORCH.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[test]
fn backend_follows_the_device_and_the_override() {
    use LossBackendKind::{Cpu, Cuda};
    let gpu = Device::Cuda(0);
    assert_eq!(choose_loss_backend(Device::Cpu, true, None).unwrap(), Cpu);
    assert_eq!(choose_loss_backend(gpu, true, None).unwrap(), Cuda);
    assert_eq!(choose_loss_backend(gpu, true, Some("auto")).unwrap(), Cuda);
    assert_eq!(choose_loss_backend(gpu, false, None).unwrap(), Cpu, "no kernels built");
    assert_eq!(choose_loss_backend(gpu, true, Some("cpu")).unwrap(), Cpu);
    assert_eq!(choose_loss_backend(gpu, true, Some(" cuda ")).unwrap(), Cuda);
    for (device, built, why) in [(Device::Cpu, true, "CPU"), (gpu, false, "feature")] {
        let e = choose_loss_backend(device, built, Some("cuda")).unwrap_err().to_string();
        assert!(e.contains("LIVEDEPTH_ADAPT_LOSS") && e.contains(why), "{e}");
    }
    let e = choose_loss_backend(gpu, true, Some("gpu")).unwrap_err().to_string();
    assert!(e.contains("LIVEDEPTH_ADAPT_LOSS") && e.contains("gpu"), "{e}");
}

#[test]
fn device_noise_matches_its_twin_and_is_deterministic() {
    let _torch = torch_exclusive();
    let len = 5000;
    let noise = |seed, stream| -> Vec<f32> {
        let t = tie_break_noise_tensor(len, 2.0, seed, stream, Device::Cpu).expect("noise");
        Vec::<f32>::try_from(t).expect("f32 values")
    };
    let a = noise(7, 3);
    assert_eq!(a.len(), len);
    for (i, &v) in a.iter().enumerate() {
        let twin = tie_break_noise_value(2.0, 7, 3, i as u32);
        assert!((v - twin).abs() <= 1e-6 * (1.0 + twin.abs()), "index {i}: {v} vs twin {twin}");
    }
    assert_eq!(a, noise(7, 3), "same seed and stream, same noise");
    assert_ne!(a, noise(7, 4), "another stream");
    assert_ne!(a, noise(8, 3), "another seed");
    let mean = a.iter().map(|&v| f64::from(v)).sum::<f64>() / len as f64;
    let var = a.iter().map(|&v| (f64::from(v) - mean).powi(2)).sum::<f64>() / len as f64;
    assert!(mean.abs() < 0.1, "mean {mean}");
    assert!((var.sqrt() - 2.0).abs() < 0.1, "std {}", var.sqrt());
}

#[test]
fn cpu_students_use_the_cpu_loss() {
    let _torch = torch_exclusive();
    let backend = LossBackend::new(Device::Cpu, &LossConfig::default()).expect("cpu backend");
    assert_eq!(backend.kind(), LossBackendKind::Cpu);
}

#[cfg(feature = "cuda")]
#[test]
fn cuda_backend_without_a_driver_is_a_clear_error() {
    if livedepth::cuda::device::driver_present() {
        eprintln!("SKIP: a CUDA driver is present; this test checks the no-driver error");
        return;
    }
    let e = LossBackend::new(Device::Cuda(0), &LossConfig::default())
        .expect_err("no driver: the CUDA loss cannot load")
        .to_string();
    assert!(e.contains("CUDA") && e.contains("LIVEDEPTH_ADAPT_LOSS=cpu"), "{e}");
}

/// The GPU tests (feature `cuda`; each skips with a printed reason without a GPU).
#[cfg(feature = "cuda")]
mod gpu {
    use super::torch_exclusive;
    use livedepth::adapt::loss_backend::LossBackendKind;
    use livedepth::adapt::{AdaptConfig, Adapter, StepOutcome, Triplet};
    use livedepth::model::network::{DepthNetwork, PoseNetwork};
    use livedepth::model::{Arch, PoseArch};
    use std::sync::Arc;
    use tch::{Device, Tensor};

    const W: usize = 96;
    const H: usize = 64;

    /// The torch lock, or None (after printing SKIP and why `needs` was not run) where libtorch
    /// sees no CUDA device.
    fn gpu_exclusive(needs: &str) -> Option<std::sync::MutexGuard<'static, ()>> {
        let torch = torch_exclusive();
        if !livedepth::engine::torch_cuda_available() {
            eprintln!("SKIP: libtorch sees no CUDA device; {needs}");
            return None;
        }
        Some(torch)
    }

    fn texture(shift: f32) -> Vec<f32> {
        super::common::texture(W, H, shift)
    }

    fn triplet(shift: f32) -> Arc<Triplet> {
        Arc::new(Triplet {
            target_index: 1,
            k: 1,
            width: W,
            height: H,
            prev: Arc::new(texture(shift - 2.0)),
            target: Arc::new(texture(shift)),
            next: Arc::new(texture(shift + 2.0)),
            intrinsics: [0.6 * W as f32, 0.9 * H as f32, W as f32 / 2.0, H as f32 / 2.0],
            travel: None,
            rotation_prior: None,
        })
    }

    fn weights(adapter: &Adapter) -> Vec<f32> {
        let mut out = Vec::new();
        for vs in [adapter.student().var_store(), adapter.pose().var_store()] {
            let mut vars: Vec<(String, Tensor)> = vs.variables().into_iter().collect();
            vars.sort_by(|a, b| a.0.cmp(&b.0));
            for (_, t) in vars {
                let t = t.detach().to_device(Device::Cpu).flatten(0, -1).contiguous();
                out.extend(Vec::<f32>::try_from(t).expect("f32 weights"));
            }
        }
        out
    }

    /// Two adaptation steps on the CPU and on CUDA from the same weights, with
    /// `pose_refine_iterations` of test-time pose refinement (0: off).
    fn compare_cpu_and_cuda_steps(pose_refine_iterations: usize) {
        let Some(_torch) = gpu_exclusive("the CUDA adaptation step needs a GPU") else {
            return;
        };
        let mut config = AdaptConfig { seed: 7, pose_refine_iterations, ..AdaptConfig::default() };
        config.stationary_masked_fraction = 1.0;
        config.stationary_translation = 0.0;
        config.guards.rollback = false;
        config.loss.tie_break_std = 0.0;
        tch::manual_seed(3);
        let student = DepthNetwork::new(Arch::RtMonoDepthS, Device::Cpu);
        let pose = PoseNetwork::new(PoseArch::RtMonoDepthSPose, Device::Cpu);
        let mut gpu_student = DepthNetwork::new(Arch::RtMonoDepthS, Device::Cuda(0));
        let mut gpu_pose = PoseNetwork::new(PoseArch::RtMonoDepthSPose, Device::Cuda(0));
        gpu_student.copy_weights_from(&student).expect("copy depth");
        gpu_pose.copy_weights_from(&pose).expect("copy pose");
        let mut cpu = Adapter::new(config.clone(), student, pose).expect("cpu adapter");
        let mut gpu = Adapter::new(config, gpu_student, gpu_pose).expect("cuda adapter");
        assert_eq!(cpu.loss_backend(), LossBackendKind::Cpu);
        assert_eq!(gpu.loss_backend(), LossBackendKind::Cuda);
        let batch = [triplet(0.0), triplet(5.0)];
        for step in 0..2 {
            let a = cpu.step_on(&batch).expect("cpu step");
            let b = gpu.step_on(&batch).expect("cuda step");
            assert_eq!((&a, &b), (&StepOutcome::Accepted, &StepOutcome::Accepted), "step {step}");
            let (c, g) = (cpu.stats(), gpu.stats());
            let rel = |x: f64, y: f64| (x - y).abs() / x.abs().max(1e-12);
            eprintln!("step {step}: total cpu {} cuda {}", c.last_total, g.last_total);
            assert!(rel(c.last_total, g.last_total) < 1e-4, "total {c:?} vs {g:?}");
            let (cp, gp) = (c.last_photometric, g.last_photometric);
            assert!(rel(cp, gp) < 1e-4, "photometric {cp} vs {gp}");
            let (cm, gm) = (c.last_masked_fraction, g.last_masked_fraction);
            assert!((cm - gm).abs() < 1e-3, "masked fraction {cm} vs {gm}");
            let (cf, gf) = (c.last_distill_fraction, g.last_distill_fraction);
            assert!((cf - gf).abs() < 1e-3, "distillation mask coverage {cf} vs {gf}");
            // The scale-invariant distillation term is a variance of log-depth differences
            // between a student one step away from its teacher and that teacher: a tiny number
            // (a difference of nearly equal sums), compared with an absolute floor as well.
            let (cd, gd) = (c.last_distill, g.last_distill);
            eprintln!("step {step}: distill cpu {cd:e} cuda {gd:e}");
            assert!((cd - gd).abs() <= 1e-3 * cd.abs() + 1e-6, "distillation {cd:e} vs {gd:e}");
            let (rc, rg) = (c.fresh.refined_motion, g.fresh.refined_motion);
            let moved = rc.iter().flatten().zip(rg.iter().flatten());
            let worst = moved.map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
            assert!(worst < 1e-4, "refined motion differs by {worst}: {rc:?} vs {rg:?}");
            if pose_refine_iterations > 0 {
                assert!(rc.iter().flatten().any(|v| *v != 0.0), "refinement ran: {rc:?}");
                assert!((c.fresh.refine_loss[1] - g.fresh.refine_loss[1]).abs() < 1e-4);
            }
        }
        let (wc, wg) = (weights(&cpu), weights(&gpu));
        let worst = wc.iter().zip(&wg).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
        assert!(worst < 1e-3, "weights after two steps differ by up to {worst}");
    }

    /// A seed means the same start on every device: the pose network's fresh layers are drawn
    /// on the CPU even for a CUDA adapter (the CUDA generator draws other numbers, which made
    /// GPU seeds other runs than the CPU seeds of the same number).
    #[test]
    fn a_seed_gives_the_same_start_weights_on_cuda_as_on_the_cpu() {
        use livedepth::app::adapt::{AdaptOptions, build_adapter};
        let Some(_torch) = gpu_exclusive("this compares CPU and CUDA adapters") else {
            return;
        };
        let Some(model) = super::common::shared("models/rtmonodepth_s/m_640x192") else {
            return;
        };
        let mut options = AdaptOptions::default();
        options.config.seed = 2;
        let build = |device| build_adapter(&model, Arch::RtMonoDepthS, &options, device);
        let (cpu, gpu) = (build(Device::Cpu).expect("cpu"), build(Device::Cuda(0)).expect("cuda"));
        let (wc, wg) = (weights(&cpu), weights(&gpu));
        assert_eq!(wc.len(), wg.len());
        let worst = wc.iter().zip(&wg).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
        eprintln!("start weights, CPU vs CUDA adapter, seed 2: max abs difference {worst:e}");
        assert_eq!(worst, 0.0, "seed 2 starts from other weights on CUDA");
        // And the CUDA adapter runs with them (every weight on the device).
        let mut gpu = gpu;
        let outcome = gpu.step_on(&[triplet(0.0)]).expect("a CUDA step with those weights");
        assert_eq!(outcome, StepOutcome::Accepted);
    }

    #[test]
    fn adaptation_step_on_cuda_matches_the_cpu_step() {
        compare_cpu_and_cuda_steps(0);
    }

    #[test]
    fn adaptation_step_with_pose_refinement_on_cuda_matches_the_cpu_step() {
        compare_cpu_and_cuda_steps(AdaptConfig::default().pose_refine_iterations);
    }

    #[test]
    fn live_cuda_preprocessing_matches_the_twin_and_feeds_the_network() {
        use livedepth::cuda::twin;
        use livedepth::cuda::{Normalization, PackedFrame, PixelFormat, Resize};
        use livedepth::frame::RgbImage;
        use livedepth::stages::gpu_preprocess::GpuPreprocess;
        let Some(_torch) = gpu_exclusive("the live CUDA preprocessing needs a GPU") else {
            return;
        };
        let (src_w, src_h, w, h) = (200usize, 90usize, 96usize, 64usize);
        let mut image = RgbImage::new(src_w as u32, src_h as u32);
        for (i, v) in image.data.iter_mut().enumerate() {
            *v = ((i * 37 + i / 7) % 251) as u8;
        }
        let normalisation = Arch::RtMonoDepthS.normalisation();
        let mut gpu =
            GpuPreprocess::new(0, (w as u32, h as u32), normalisation).expect("CUDA preprocessing");
        let mut resized = RgbImage::new(0, 0);
        let input = gpu.run(&image, &mut resized).expect("preprocess");
        assert_eq!(input.size(), vec![1, 3, h as i64, w as i64]);
        assert_eq!(input.device(), Device::Cuda(0));
        let got = Vec::<f32>::try_from(input.to_device(Device::Cpu).flatten(0, -1)).unwrap();
        let frame = PackedFrame {
            data: &image.data,
            width: src_w,
            height: src_h,
            pitch: 3 * src_w,
            format: PixelFormat::Rgb,
        };
        let norm = Normalization { mean: normalisation.0, std: normalisation.1 };
        let mut want = vec![0f32; 3 * w * h];
        twin::preprocess(&frame, w, h, Resize::Area, &norm, &mut want).expect("twin");
        let worst = got.iter().zip(&want).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
        assert!(worst < 1e-4, "GPU preprocessing differs from its twin by {worst}");
        // The 8-bit image for the outputs is the de-normalised input, rounded.
        assert_eq!((resized.width, resized.height), (w as u32, h as u32));
        let (mean, std) = (normalisation.0[0], normalisation.1[0]);
        for (i, &byte) in resized.data.iter().enumerate().step_by(97) {
            let (pixel, c) = (i / 3, i % 3);
            let value = (want[c * w * h + pixel] * std + mean) * 255.0;
            assert!((f32::from(byte) - value).abs() <= 1.0, "byte {i}: {byte} vs {value}");
        }
    }

    /// `livedepth train` on a GPU runs the self-supervised loss on our CUDA kernels (the
    /// adapter's backend) and its first step's loss matches the CPU loss's on the same networks.
    #[test]
    fn train_on_cuda_runs_the_fused_loss_and_matches_the_cpu_loss() {
        use livedepth::train::{TrainOptions, TrainSidecar, train};
        let Some(_torch) = gpu_exclusive("`train` runs the CUDA loss on a GPU") else {
            return;
        };
        let tmp = tempfile::tempdir().expect("temp dir");
        let drive = super::common::rendered_drive(tmp.path(), 8, 23);
        let run = |backend: LossBackendKind| -> TrainSidecar {
            let options = TrainOptions {
                datasets: vec![format!("kitti:{}", drive.display())],
                out: tmp.path().join(backend.name()),
                width: 64,
                height: 32,
                epochs: 1,
                batch_size: 2,
                max_steps: Some(3),
                seed: 11,
                progress: false,
                loss_backend: Some(backend),
                ..TrainOptions::default()
            };
            train(&options).unwrap_or_else(|e| panic!("train with the {backend} loss: {e}"))
        };
        let (cpu, cuda) = (run(LossBackendKind::Cpu), run(LossBackendKind::Cuda));
        assert_eq!(cpu.loss_backend, Some(LossBackendKind::Cpu));
        assert_eq!(cuda.loss_backend, Some(LossBackendKind::Cuda));
        for sidecar in [&cpu, &cuda] {
            assert_eq!((sidecar.steps, sidecar.rejected_steps), (3, 0), "{sidecar:?}");
            assert!(sidecar.final_losses.total.is_finite(), "{sidecar:?}");
        }
        // The first step (same seed, same fresh networks on the GPU): the same loss.
        let (c, g) = (&cpu.first_losses, &cuda.first_losses);
        eprintln!(
            "first step, CPU loss vs CUDA loss: photometric {} / {}, smoothness {} / {}",
            c.photometric, g.photometric, c.smoothness, g.smoothness
        );
        assert!((c.photometric - g.photometric).abs() <= 1e-3 * c.photometric.abs(), "{c:?} {g:?}");
        assert!(
            (c.smoothness - g.smoothness).abs() <= 1e-3 * c.smoothness.abs() + 1e-6,
            "{c:?} {g:?}"
        );
    }
}
