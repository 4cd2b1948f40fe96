//! Parity of the Rust/libtorch networks with independent Python forward passes
//! (tests/python/refnets.py, torch.nn.functional only): the real RT-MonoDepth-S checkpoint at
//! its training size and a smaller one, and random Monodepth2 ResNet-18 depth + pose weights
//! saved with torch.save at test time. Disparities and poses must agree to 1e-4.
#![cfg(feature = "torch")]

mod common;
mod model_support;

use livedepth::engine::{Preprocessor, TorchDepthEngine};
use livedepth::model::network::{DepthNetwork, PoseNetwork};
use livedepth::model::{Arch, PoseArch};
use model_support::*;
use std::path::Path;
use tch::{Device, Tensor};

fn tensor(shape: &[usize], values: &[f32]) -> Tensor {
    let dims: Vec<i64> = shape.iter().map(|&d| d as i64).collect();
    Tensor::from_slice(values).reshape(dims)
}

/// A normalised input of the given size: the first KITTI frame through our preprocessor when
/// ../shared has it, else a smooth synthetic pattern.
fn rt_input(width: u32, height: u32) -> Vec<f32> {
    let (mean, std) = Arch::RtMonoDepthS.normalisation();
    let mut pre = Preprocessor::new(width, height, mean, std).unwrap();
    let mut out = vec![0f32; pre.output_len()];
    let frame = std::env::var_os("LIVEDEPTH_SHARED")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| common::repo_root().join("../shared"))
        .join("data/kitti_tiny/2011_09_26/2011_09_26_drive_0023_sync/image_02/data/0000000000.png");
    let image = if frame.exists() {
        load_rgb(&frame)
    } else {
        let mut img = livedepth::frame::RgbImage::new(300, 100);
        for (i, px) in img.data.chunks_exact_mut(3).enumerate() {
            let (x, y) = (i % 300, i / 300);
            px.copy_from_slice(&[
                (x * 255 / 300) as u8,
                (y * 255 / 100) as u8,
                ((x + y) % 256) as u8,
            ]);
        }
        img
    };
    pre.run(&image, &mut out).unwrap();
    out
}

fn check_rt_parity(model_dir: &Path, python: &Path, width: u32, height: u32) {
    let dir = tempfile::tempdir().unwrap();
    let input = rt_input(width, height);
    let shape = [1, 3, height as usize, width as usize];
    let input_path = dir.path().join("input.npy");
    write_npy(&input_path, &shape, &input);
    run_python(
        python,
        "rtmonodepth_forward.py",
        &[model_dir.to_str().unwrap(), input_path.to_str().unwrap(), dir.path().to_str().unwrap()],
    );
    let net = DepthNetwork::load(model_dir, Arch::RtMonoDepthS, Device::Cpu).unwrap();
    let disps = tch::no_grad(|| net.try_forward_t(&tensor(&shape, &input), false)).unwrap();
    assert_eq!(disps.len(), 3);
    for (s, d) in disps.iter().enumerate() {
        let (ref_shape, reference) = read_npy(&dir.path().join(format!("disp_s{s}.npy")));
        let ours: Vec<usize> = d.size().iter().map(|&v| v as usize).collect();
        assert_eq!(ours, ref_shape, "scale {s} shape");
        assert_eq!(ref_shape[2], height as usize >> s);
        let diff = max_abs_diff(&values(d), &reference);
        println!("RT-MonoDepth-S {width}x{height} scale {s}: max |Δ| = {diff:.3e}");
        assert!(diff < 1e-4, "scale {s}: max abs difference {diff}");
    }
    // The engine path (preallocated input, no_grad) gives the same scale-0 disparity.
    let mut engine = TorchDepthEngine::new(net, width, height, 1).unwrap();
    let host = engine.forward_normalised(&input, 1).unwrap().to_vec();
    let (_, reference) = read_npy(&dir.path().join("disp_s0.npy"));
    assert!(max_abs_diff(&host, &reference) < 1e-4);
}

#[test]
fn rtmonodepth_s_real_checkpoint_matches_python_reference() {
    let Some(model) = common::shared("models/rtmonodepth_s/m_640x192") else { return };
    let python = common::python();
    check_rt_parity(&model, &python, 640, 192);
    // Fully convolutional: a smaller multiple of 32 works too.
    check_rt_parity(&model, &python, 320, 96);
}

#[test]
fn monodepth2_r18_depth_and_pose_from_torch_save_match() {
    let python = common::python();
    let dir = tempfile::tempdir().unwrap();
    run_python(&python, "monodepth2_fixture.py", &[dir.path().to_str().unwrap()]);

    let net = DepthNetwork::load(dir.path(), Arch::Monodepth2R18, Device::Cpu).unwrap();
    let (shape, input) = read_npy(&dir.path().join("input.npy"));
    assert_eq!(shape[0], 2, "batched input");
    let disps = tch::no_grad(|| net.forward_t(&tensor(&shape, &input), false));
    assert_eq!(disps.len(), 4);
    for (s, d) in disps.iter().enumerate() {
        let (ref_shape, reference) = read_npy(&dir.path().join(format!("disp_s{s}.npy")));
        assert_eq!(d.size().iter().map(|&v| v as usize).collect::<Vec<_>>(), ref_shape);
        let diff = max_abs_diff(&values(d), &reference);
        println!("Monodepth2-R18 depth scale {s}: max |Δ| = {diff:.3e}");
        assert!(diff < 1e-4, "scale {s}: {diff}");
    }

    let pose = PoseNetwork::load(dir.path(), PoseArch::Monodepth2R18, Device::Cpu).unwrap();
    let (pshape, pair) = read_npy(&dir.path().join("pair.npy"));
    let (rot, trans) = tch::no_grad(|| pose.try_forward_t(&tensor(&pshape, &pair), false)).unwrap();
    let (_, ref_rot) = read_npy(&dir.path().join("axisangle.npy"));
    let (_, ref_trans) = read_npy(&dir.path().join("translation.npy"));
    let (dr, dt) =
        (max_abs_diff(&values(&rot), &ref_rot), max_abs_diff(&values(&trans), &ref_trans));
    println!("Monodepth2-R18 pose: max |Δ| axis-angle {dr:.3e}, translation {dt:.3e}");
    assert!(dr < 1e-4 && dt < 1e-4);
    // The outputs are not trivially zero (a broken load would give the same zeros on both sides).
    assert!(ref_rot.iter().any(|v| v.abs() > 1e-5));

    // Safetensors round trip: identical outputs after save + load.
    let st = dir.path().join("md2.safetensors");
    net.save_safetensors(&st).unwrap();
    let reloaded = DepthNetwork::load(&st, Arch::Monodepth2R18, Device::Cpu).unwrap();
    let again = tch::no_grad(|| reloaded.forward_t(&tensor(&shape, &input), false));
    assert_eq!(max_abs_diff(&values(&again[0]), &values(&disps[0])), 0.0);
}
