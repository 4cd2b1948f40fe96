//! GPU tests: every kernel against its CPU twin on random and real inputs (preprocessing of
//! RGB / RGBA / NV12 frames, upsampling and its adjoint, the fused loss forward and backward
//! including ties and out-of-image warps). Each test prints SKIP and returns when no CUDA driver
//! or device is present. Run with `cargo test --features bench,cuda --test cuda_gpu`.
#![cfg(feature = "cuda")]

mod common;
mod cuda_scenes;

use cuda_scenes::{Rng, Scene, max_rel_diff, with_loss_inputs};
use livedepth::cuda::CudaError;
use livedepth::cuda::device::{
    CudaKernels, DeviceFrame, DeviceLossGrads, DeviceLossInputs, FusedLossGpu,
};
use livedepth::cuda::twin;
use livedepth::cuda::{Normalization, PackedFrame, PixelFormat, Resize};
use livedepth::loss::LossConfig;
use std::sync::Arc;

fn kernels_or_skip() -> Option<Arc<CudaKernels>> {
    match CudaKernels::new(0) {
        Ok(k) => {
            eprintln!("GPU: {} ({}), NVRTC {:?}", k.device_name, k.arch, k.nvrtc.version);
            Some(Arc::new(k))
        }
        Err(e @ (CudaError::NoDriver { .. } | CudaError::NoDevice { .. })) => {
            eprintln!("SKIP: {e}");
            None
        }
        Err(e) => panic!("CUDA present but the kernels failed to load: {e}"),
    }
}

fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter().zip(b).fold(0.0f32, |m, (x, y)| m.max((x - y).abs()))
}

#[test]
fn preprocess_matches_twin() {
    let Some(k) = kernels_or_skip() else { return };
    let mut rng = Rng(5);
    let (w, h) = (333, 250);
    let norm = Normalization { mean: [0.485, 0.456, 0.406], std: [0.229, 0.224, 0.225] };
    for format in [PixelFormat::Rgb, PixelFormat::Rgba, PixelFormat::Nv12 { uv_pitch: 352 }] {
        let (w, h) = if matches!(format, PixelFormat::Nv12 { .. }) { (w + 1, h) } else { (w, h) };
        let (pitch, len) = match format {
            PixelFormat::Rgb => (w * 3 + 5, (w * 3 + 5) * h),
            PixelFormat::Rgba => (w * 4 + 16, (w * 4 + 16) * h),
            PixelFormat::Nv12 { uv_pitch } => (352, 352 * h + uv_pitch * h / 2),
        };
        let data: Vec<u8> = (0..len).map(|_| (rng.next() * 255.0) as u8).collect();
        let host = PackedFrame { data: &data, width: w, height: h, pitch, format };
        let dev = k.upload(&data).expect("upload");
        let base = k.ptr(&dev);
        let frame = DeviceFrame {
            data: base,
            width: w,
            height: h,
            pitch,
            format,
            uv: base + (pitch * h) as u64,
        };
        for (dw, dh) in [(128, 96), (640, 192), (w, h)] {
            for resize in [Resize::Bilinear, Resize::Area] {
                let mut expected = vec![0.0; 3 * dw * dh];
                twin::preprocess(&host, dw, dh, resize, &norm, &mut expected).expect("twin");
                let out = k.zeros::<f32>(3 * dw * dh).expect("alloc");
                // SAFETY: buffers sized as documented.
                unsafe { k.preprocess(&frame, k.ptr(&out), dw, dh, resize, &norm) }
                    .expect("launch");
                let got = k.download(&out).expect("download");
                let d = max_abs_diff(&got, &expected);
                eprintln!("{format:?} {w}x{h} -> {dw}x{dh} {resize:?}: max |diff| {d:.2e}");
                assert!(d < 1e-4, "{format:?} {resize:?} {dw}x{dh}: {d}");
            }
        }
    }
}

#[test]
fn upsample_and_adjoint_match_twin() {
    let Some(k) = kernels_or_skip() else { return };
    let mut rng = Rng(9);
    for &(lw, lh, hw, hh) in
        &[(80, 24, 640, 192), (160, 48, 640, 192), (5, 3, 13, 7), (320, 96, 320, 96)]
    {
        let planes = 2;
        let lo = rng.vec(lw * lh * planes, 0.0, 1.0);
        let g = rng.vec(hw * hh * planes, -1.0, 1.0);
        let mut up = vec![0.0; hw * hh * planes];
        twin::upsample_bilinear(&lo, (lw, lh), &mut up, (hw, hh), planes).expect("twin");
        let mut adj = vec![0.5; lw * lh * planes];
        twin::upsample_bilinear_adjoint(&g, (hw, hh), &mut adj, (lw, lh), planes, true)
            .expect("twin");
        let (dlo, dg) = (k.upload(&lo).expect("up"), k.upload(&g).expect("up"));
        let dup = k.zeros::<f32>(hw * hh * planes).expect("alloc");
        let dadj = k.upload(&vec![0.5f32; lw * lh * planes]).expect("up");
        // SAFETY: buffers sized as documented.
        unsafe {
            k.upsample_bilinear(k.ptr(&dlo), (lw, lh), k.ptr(&dup), (hw, hh), planes)
                .expect("launch");
            k.upsample_bilinear_adjoint(k.ptr(&dg), (hw, hh), k.ptr(&dadj), (lw, lh), planes, true)
                .expect("launch");
        }
        assert!(max_abs_diff(&k.download(&dup).expect("down"), &up) < 1e-6);
        let d = max_rel_diff(&k.download(&dadj).expect("down"), &adj);
        assert!(d < 1e-5, "adjoint {lw}x{lh}: {d}");
    }
}

/// Runs the fused loss on the GPU and compares every output with the twin.
fn compare_loss(k: &Arc<CudaKernels>, sc: &Scene, config: &LossConfig) {
    let expected =
        with_loss_inputs(sc, |inputs| twin::fused_loss(config, inputs, true)).expect("twin");
    let up = |v: &[f32]| k.upload(v).expect("upload");
    let target = up(&sc.target);
    let sources: Vec<_> = sc.sources.iter().map(|v| up(v)).collect();
    let disparities: Vec<_> = sc.disparities.iter().map(|v| up(v)).collect();
    let pyramid: Vec<_> = sc.pyramid.iter().map(|v| up(v)).collect();
    let poses = up(&sc.poses.iter().flatten().copied().collect::<Vec<f32>>());
    let noise = up(&sc.noise);
    let grads: Vec<_> =
        sc.disparities.iter().map(|v| k.zeros::<f32>(v.len()).expect("alloc")).collect();
    let inputs = DeviceLossInputs {
        width: sc.w,
        height: sc.h,
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
    let mut loss = FusedLossGpu::new(k.clone(), *config).expect("loss");
    // SAFETY: every buffer above is alive and sized as documented.
    unsafe { loss.forward_backward(&inputs, &out) }.expect("launch");
    let scalars = loss.scalars().expect("scalars");
    let name = format!("{} (automask {})", sc.name, config.automask);
    let rel = |a: f32, b: f32| (a - b).abs() / b.abs().max(1e-12);
    eprintln!(
        "{name}: GPU total {} vs twin {} (rel {:.2e})",
        scalars.total,
        expected.total,
        rel(scalars.total, expected.total)
    );
    assert!(rel(scalars.total, expected.total) < 1e-5, "{name}: total");
    for s in 0..sc.disparities.len() {
        assert!(rel(scalars.per_scale[s].photometric, expected.per_scale[s].photometric) < 1e-5);
        assert!(
            (scalars.per_scale[s].smoothness - expected.per_scale[s].smoothness).abs()
                <= 1e-5 * expected.per_scale[s].smoothness.abs() + 1e-9
        );
    }
    assert!((scalars.masked_fraction - expected.masked_fraction).abs() < 1e-3);
    let (min_error, winners) = loss.maps().expect("maps");
    let flips = winners.iter().zip(&expected.winner).filter(|(a, b)| a != b).count();
    eprintln!("  winners differing: {flips} of {}", winners.len());
    assert!(flips * 1000 <= winners.len(), "{name}: {flips} winners differ");
    let tol = 1e-4 + flips as f64 / winners.len() as f64 * 10.0;
    assert!(max_rel_diff(&min_error, &expected.min_error) < tol, "{name}: min_error");
    for (s, g) in grads.iter().enumerate() {
        let d = max_rel_diff(&k.download(g).expect("down"), &expected.grad_disparities[s]);
        eprintln!("  grad disparity scale {s}: {d:.2e}");
        assert!(d < tol, "{name}: grad disparity scale {s}: {d:e}");
    }
    let gp = loss.grad_poses().expect("poses");
    let d = max_rel_diff(&gp, &expected.grad_poses.iter().flatten().copied().collect::<Vec<f32>>());
    eprintln!("  grad poses: {d:.2e}");
    assert!(d < tol, "{name}: grad poses {d:e}");
    let gi = loss.grad_intrinsics().expect("intrinsics");
    assert!(max_rel_diff(&gi, &expected.grad_intrinsics) < 1e-3, "{name}: grad intrinsics");
    // Forward only gives the same loss.
    // SAFETY: as above.
    unsafe { loss.forward(&inputs) }.expect("launch");
    assert!(rel(loss.scalars().expect("scalars").total, expected.total) < 1e-5);
}

#[test]
fn fused_loss_matches_twin_on_random_scenes() {
    let Some(k) = kernels_or_skip() else { return };
    for automask in [true, false] {
        let config = LossConfig { automask, ..Default::default() };
        compare_loss(&k, &cuda_scenes::random_scene(640, 192, 4, 2, 1, 0.05), &config);
        compare_loss(&k, &cuda_scenes::random_scene(200, 72, 3, 3, 2, 2.0), &config);
    }
}

#[test]
fn fused_loss_matches_twin_on_ties() {
    let Some(k) = kernels_or_skip() else { return };
    compare_loss(&k, &cuda_scenes::static_scene(128, 64, 2, 3), &LossConfig::default());
}

#[test]
fn fused_loss_matches_twin_on_real_kitchen_frames() {
    let Some(k) = kernels_or_skip() else { return };
    let Some(dir) = common::shared("data/kitchen") else { return };
    let config = LossConfig { max_depth: 10.0, ..Default::default() };
    let sc =
        cuda_scenes::kitchen_scene(&dir, 100, 5, 320, 240, 4, &config).expect("kitchen frames");
    compare_loss(&k, &sc, &config);
}

#[test]
fn bad_device_inputs_are_typed_errors() {
    let Some(k) = kernels_or_skip() else { return };
    let mut loss = FusedLossGpu::new(k, LossConfig::default()).expect("loss");
    let inputs = DeviceLossInputs { width: 64, height: 32, ..Default::default() };
    // SAFETY: rejected before any launch.
    let err = unsafe { loss.forward(&inputs) }.unwrap_err();
    assert!(matches!(err, CudaError::InvalidInput { .. }), "{err}");
}

#[test]
fn bench_loss_runs_or_says_there_is_no_gpu() {
    use livedepth::cuda::bench::{BenchLossOptions, bench_loss, modelled_bytes};
    // The byte model grows with sources and scales.
    assert!(modelled_bytes(640, 192, 2, 4, true) > modelled_bytes(640, 192, 1, 4, true));
    assert!(modelled_bytes(640, 192, 2, 4, true) > modelled_bytes(640, 192, 2, 1, true));
    match livedepth::cuda::bench::bench_preprocess((1280, 720), (640, 192), 3, 0) {
        Ok(report) => {
            eprintln!("{report}");
            assert!(report.gpu_ms > 0.0 && report.cpu_ms > 0.0);
        }
        Err(e) => {
            assert!(matches!(e, CudaError::NoDriver { .. } | CudaError::NoDevice { .. }), "{e}")
        }
    }
    let options = BenchLossOptions {
        sizes: vec![(128, 64)],
        iterations: 3,
        warmup: 1,
        python: None,
        ..Default::default()
    };
    match bench_loss(&options) {
        Ok(report) => {
            eprintln!("{report}");
            let row = &report.rows[0];
            assert!(row.fused_ms > 0.0 && row.fused_ms.is_finite());
            assert!(row.torch_ms.is_none() && row.torch_note.is_some());
        }
        Err(e @ (CudaError::NoDriver { .. } | CudaError::NoDevice { .. })) => {
            let msg = e.to_string();
            assert!(msg.contains("no CUDA"), "{msg}");
            eprintln!("SKIP (as expected without a GPU): {msg}");
        }
        Err(e) => panic!("{e}"),
    }
}

#[test]
fn frame_preprocessor_uploads_and_matches_twin_on_a_real_frame() {
    use livedepth::cuda::device::FramePreprocessor;
    let Some(k) = kernels_or_skip() else { return };
    let Some(dir) = common::shared("data/kitchen") else { return };
    let path = dir.join("frame-000000.color.jpg");
    let img = image::open(&path).expect("kitchen frame").to_rgb8();
    let (w, h) = (img.width() as usize, img.height() as usize);
    let frame = PackedFrame {
        data: img.as_raw(),
        width: w,
        height: h,
        pitch: w * 3,
        format: PixelFormat::Rgb,
    };
    let mut pre = FramePreprocessor::new(k.clone());
    for resize in [Resize::Bilinear, Resize::Area] {
        let mut expected = vec![0.0; 3 * 640 * 192];
        twin::preprocess(&frame, 640, 192, resize, &Normalization::default(), &mut expected)
            .expect("twin");
        let out = k.zeros::<f32>(3 * 640 * 192).expect("alloc");
        // SAFETY: `out` holds 3 x 192 x 640 floats.
        unsafe { pre.run(&frame, k.ptr(&out), 640, 192, resize, &Normalization::default()) }
            .expect("run");
        let d = max_abs_diff(&k.download(&out).expect("download"), &expected);
        assert!(d < 1e-5, "{resize:?}: {d}");
    }
}

#[test]
fn handles_can_move_to_pipeline_threads() {
    fn send_sync<T: Send + Sync>() {}
    fn send<T: Send>() {}
    send_sync::<CudaKernels>();
    send::<FusedLossGpu>();
    send::<livedepth::cuda::device::FramePreprocessor>();
}
