//! The libtorch engines: batched inference equals one-by-one inference, outputs have the
//! network size whatever the input image size, weights copied into a live engine take effect,
//! the pose engine returns finite motion, and bad inputs are typed errors.

#![cfg(feature = "torch")]

mod common;

use livedepth::engine::{
    DepthEngine, Disparity, EngineError, PoseEngine, TorchDepthEngine, TorchPoseEngine,
};
use livedepth::frame::RgbImage;
use livedepth::model::network::{DepthNetwork, PoseNetwork};
use livedepth::model::{Arch, PoseArch};
use tch::Device;

fn pattern(width: u32, height: u32, phase: u32) -> RgbImage {
    let mut img = RgbImage::new(width, height);
    for (i, px) in img.data.chunks_exact_mut(3).enumerate() {
        let (x, y) = (i as u32 % width, i as u32 / width);
        px.copy_from_slice(&[
            ((x * 7 + phase) % 256) as u8,
            ((y * 5) % 256) as u8,
            ((x ^ y) % 256) as u8,
        ]);
    }
    img
}

#[test]
fn batched_and_single_predictions_agree() {
    tch::manual_seed(3);
    let net = DepthNetwork::new(Arch::RtMonoDepthS, Device::Cpu);
    let mut engine = TorchDepthEngine::new(net, 128, 64, 2).unwrap();
    assert_eq!(engine.input_size(), (128, 64));
    let (a, b) = (pattern(300, 100, 0), pattern(64, 32, 40));
    let batch = engine.predict_disparity_batch(&[&a, &b]).unwrap();
    let single_a = engine.predict_disparity(&a).unwrap();
    let mut single_b = Disparity::new(1, 1);
    engine.predict_disparity_into(&b, &mut single_b).unwrap();
    assert_eq!((single_b.width, single_b.height), (128, 64));
    let diff = |x: &Disparity, y: &Disparity| {
        x.data.iter().zip(&y.data).map(|(p, q)| (p - q).abs()).fold(0.0, f32::max)
    };
    assert!(diff(&batch[0], &single_a) < 1e-5);
    assert!(diff(&batch[1], &single_b) < 1e-5);

    assert!(single_a.data.iter().all(|&d| (0.0..=1.0).contains(&d)));

    let err = engine.predict_disparity_batch(&[&a, &b, &a]).unwrap_err();
    assert!(matches!(err, EngineError::BatchTooLarge { found: 3, capacity: 2 }), "{err}");
    let broken = RgbImage { width: 10, height: 10, data: vec![0; 12] };
    assert!(matches!(engine.predict_disparity(&broken), Err(EngineError::ImageBuffer { .. })));

    // Trained weights copied into the live engine (as adaptation does) take effect.
    let Some(model) = common::shared("models/rtmonodepth_s/m_640x192") else { return };
    let trained = DepthNetwork::load(&model, Arch::RtMonoDepthS, Device::Cpu).unwrap();
    engine.network_mut().copy_weights_from(&trained).unwrap();
    let after = engine.predict_disparity(&a).unwrap();
    assert!(diff(&after, &single_a) > 1e-3);
    let mut reference = TorchDepthEngine::new(trained, 128, 64, 1).unwrap();
    assert!(diff(&after, &reference.predict_disparity(&a).unwrap()) < 1e-6);
    let other = reference.predict_disparity(&b).unwrap();
    assert!(diff(&after, &other) > 1e-3, "different images should give different disparities");
}

#[test]
fn engine_rejects_sizes_that_are_not_multiples_of_32() {
    let err = TorchDepthEngine::new(DepthNetwork::new(Arch::RtMonoDepthS, Device::Cpu), 100, 64, 1)
        .unwrap_err();
    assert!(err.to_string().contains("100x64"), "{err}");
}

#[test]
fn pose_engines_return_finite_motion() {
    for arch in [PoseArch::RtMonoDepthSPose, PoseArch::Monodepth2R18] {
        let mut engine = TorchPoseEngine::new(PoseNetwork::new(arch, Device::Cpu), 96, 64).unwrap();
        let pose = engine.predict_pose(&pattern(200, 120, 0), &pattern(200, 120, 9)).unwrap();
        assert!(pose.axis_angle.iter().chain(&pose.translation).all(|v| v.is_finite()));
        let swapped = engine.predict_pose(&pattern(200, 120, 9), &pattern(200, 120, 0)).unwrap();
        assert_ne!(pose, swapped, "{arch}: frame order must matter");
        let iso = pose.to_isometry();
        assert!(iso.translation.vector.iter().all(|v| v.is_finite()));
    }
}
