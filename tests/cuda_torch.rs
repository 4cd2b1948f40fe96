//! The fused CUDA loss on libtorch CUDA tensors (features `cuda` + `torch`): the loss matches the
//! CPU reference and `surrogate.backward()` deposits the kernels' gradients into the disparity
//! and pose tensors, as one adaptation step does. Prints SKIP and returns without a CUDA device.
#![cfg(all(feature = "cuda", feature = "torch"))]

mod common;
mod cuda_scenes;

use cuda_scenes::{max_rel_diff, with_loss_inputs};
use livedepth::cuda::torch::{TorchFusedLoss, TorchLossInputs};
use livedepth::loss::{LossConfig, SelfSupervisedLoss};
use tch::{Device, Kind, Tensor};

#[test]
fn torch_step_matches_the_cpu_loss_and_backpropagates_its_gradients() {
    if !livedepth::engine::torch_cuda_available() {
        eprintln!("SKIP: libtorch sees no CUDA device");
        return;
    }
    let config = LossConfig::default();
    let sc = cuda_scenes::random_scene(320, 96, 3, 2, 8, 0.1);
    let dev = Device::Cuda(0);
    let t = |v: &[f32], shape: &[i64]| Tensor::from_slice(v).reshape(shape).to_device(dev);
    let (w, h) = (sc.w as i64, sc.h as i64);
    let target = t(&sc.target, &[1, 3, h, w]);
    let sources: Vec<Tensor> = sc.sources.iter().map(|s| t(s, &[1, 3, h, w])).collect();
    let disparities: Vec<Tensor> = sc
        .disparities
        .iter()
        .enumerate()
        .map(|(s, d)| t(d, &[1, 1, h >> s, w >> s]).set_requires_grad(true))
        .collect();
    let pyramid: Vec<Tensor> =
        sc.pyramid.iter().enumerate().map(|(s, p)| t(p, &[1, 3, h >> s, w >> s])).collect();
    let flat: Vec<f32> = sc.poses.iter().flatten().copied().collect();
    let poses = t(&flat, &[2, 6]).set_requires_grad(true);
    let noise = t(&sc.noise, &[2, h, w]);
    let mut loss = match TorchFusedLoss::new(0, config) {
        Ok(l) => l,
        Err(e) => panic!("CUDA visible to libtorch but the kernels failed to load: {e}"),
    };
    let step = loss
        .step(&TorchLossInputs {
            target: &target,
            sources: &sources,
            disparities: &disparities,
            target_pyramid: &pyramid,
            poses: &poses,
            invert: &sc.invert,
            intrinsics: sc.intrinsics,
            tie_break_noise: Some(&noise),
        })
        .expect("step");
    step.surrogate.backward();
    let total = step.scalars.get(0).double_value(&[]) as f32;
    let mut cpu = SelfSupervisedLoss::<f32>::new(config);
    let reference = with_loss_inputs(&sc, |i| cpu.forward_backward(i).cloned()).expect("cpu");
    eprintln!("CUDA total {total} vs CPU {}", reference.total);
    assert!((total - reference.total).abs() <= 1e-5 * reference.total.abs() + 1e-7);
    let host = |t: &Tensor| {
        Vec::<f32>::try_from(t.to_device(Device::Cpu).to_kind(Kind::Float).reshape([-1]))
            .expect("to host")
    };
    for (s, d) in disparities.iter().enumerate() {
        let g = host(&d.grad());
        assert_eq!(g, host(&step.grad_disparities[s]), "backward must deposit the kernel gradient");
        let diff = max_rel_diff(&g, &reference.grad_disparities[s]);
        eprintln!("scale {s}: grad vs CPU {diff:.2e}");
        assert!(diff < 1e-3, "scale {s}: {diff}");
    }
    let gp = host(&poses.grad());
    let reference_poses: Vec<f32> = reference.grad_poses.iter().flatten().copied().collect();
    assert!(max_rel_diff(&gp, &reference_poses) < 1e-3);
}
