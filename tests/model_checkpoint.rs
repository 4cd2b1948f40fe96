//! Weights files: the real RT-MonoDepth-S checkpoints read with their non-tensor entries;
//! strided / half / double tensors from torch.save; safetensors round trips for every
//! architecture; and clear typed errors for missing, corrupt, foreign, legacy, mismatched and
//! NaN checkpoints.
#![cfg(feature = "torch")]

mod common;
mod model_support;

use common::files::{pth_bytes, tensor_pickle};
use livedepth::model::checkpoint::{Checkpoint, MetaValue, StorageDtype};
use livedepth::model::network::{DepthNetwork, PoseNetwork};
use livedepth::model::{Arch, ModelError, PoseArch};
use model_support::*;
use std::io::Write;
use std::path::Path;
use tch::{Device, Kind, Tensor};

#[test]
fn real_rtmonodepth_checkpoint_reads_with_metadata() {
    let Some(model) = common::shared("models/rtmonodepth_s/m_640x192") else { return };
    assert_eq!(livedepth::model::trained_input_size(&model).unwrap(), Some((640, 192)));
    let enc = Checkpoint::read_pth(&model.join("encoder.pth")).unwrap();
    assert_eq!(enc.tensors.len(), 13);
    assert_eq!(enc.metadata.get("height"), Some(&MetaValue::Int(192)));
    assert_eq!(enc.metadata.get("width"), Some(&MetaValue::Int(640)));
    assert_eq!(enc.metadata.get("use_stereo"), Some(&MetaValue::Bool(false)));
    let conv1 = &enc.tensors["conv1.weight"];
    assert_eq!(conv1.shape, vec![64, 3, 7, 7]);
    assert_eq!(conv1.dtype, StorageDtype::F32);
    assert!(conv1.values.iter().all(|v| v.is_finite()) && conv1.values.iter().any(|&v| v != 0.0));
    let params: usize = enc.tensors.values().map(|t| t.values.len()).sum();
    assert_eq!(params, 858_048, "encoder parameter count from the README");
    let dec = Checkpoint::read_pth(&model.join("depth.pth")).unwrap();
    let params: usize = dec.tensors.values().map(|t| t.values.len()).sum();
    assert_eq!(params, 376_979, "decoder parameter count from the README");
}

#[test]
fn torch_save_fixtures_load_or_fail_clearly() {
    let python = common::python();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    run_python(&python, "monodepth2_fixture.py", &[d.to_str().unwrap()]);

    // Non-contiguous, half and double tensors decode to the values torch saved.
    let strided = Checkpoint::read_pth(&d.join("strided.pth")).unwrap();
    let t = &strided.tensors["t"];
    assert_eq!(t.shape, vec![6, 4]);
    assert_eq!(t.values[..5], [0.0, 6.0, 12.0, 18.0, 1.0]);
    assert_eq!(strided.tensors["h"].dtype, StorageDtype::F16);
    assert_eq!(strided.tensors["h"].values, (6..12).map(|v| v as f32).collect::<Vec<_>>());
    assert_eq!(strided.tensors["d"].values, (12..18).map(|v| v as f32).collect::<Vec<_>>());

    let enc = Checkpoint::read_pth(&d.join("encoder.pth")).unwrap();
    assert_eq!(enc.meta_int("height"), Some(64));
    assert_eq!(enc.tensors["encoder.bn1.num_batches_tracked"].dtype, StorageDtype::I64);

    let err =
        DepthNetwork::load(&d.join("bad_missing"), Arch::Monodepth2R18, Device::Cpu).unwrap_err();
    let msg = err.to_string();
    println!("{msg}");
    assert!(matches!(err, ModelError::MissingTensor { .. }));
    assert!(msg.contains("decoder.3.conv.conv.weight") && msg.contains("depth.pth"), "{msg}");

    let err =
        DepthNetwork::load(&d.join("bad_shape"), Arch::Monodepth2R18, Device::Cpu).unwrap_err();
    let msg = err.to_string();
    println!("{msg}");
    assert!(matches!(err, ModelError::ShapeMismatch { .. }));
    assert!(
        msg.contains("decoder.12.conv.weight")
            && msg.contains("[1, 32, 5, 5]")
            && msg.contains("[1, 64, 3, 3]"),
        "{msg}"
    );

    let err = DepthNetwork::load(&d.join("bad_nan"), Arch::Monodepth2R18, Device::Cpu).unwrap_err();
    println!("{err}");
    assert!(
        matches!(err, ModelError::NonFinite { ref name, .. } if name == "decoder.0.conv.conv.bias")
    );

    let err = Checkpoint::read_pth(&d.join("legacy.pth")).unwrap_err();
    println!("{err}");
    assert!(matches!(err, ModelError::NotACheckpoint { .. }));
    assert!(err.to_string().contains("legacy.pth"));

    // Right files, wrong architecture: the first missing tensor is named.
    let err = DepthNetwork::load(d, Arch::RtMonoDepthS, Device::Cpu).unwrap_err();
    println!("{err}");
    assert!(matches!(err, ModelError::MissingTensor { .. }));
    let err = DepthNetwork::load(d, Arch::Monodepth2R50, Device::Cpu).unwrap_err();
    assert!(
        matches!(err, ModelError::ShapeMismatch { .. } | ModelError::MissingTensor { .. }),
        "{err}"
    );
}

fn write(path: &Path, bytes: &[u8]) {
    std::fs::File::create(path).unwrap().write_all(bytes).unwrap();
}

#[test]
fn missing_corrupt_and_foreign_files_are_typed_errors() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();

    let err = Checkpoint::read_pth(&d.join("nope.pth")).unwrap_err();
    assert!(matches!(err, ModelError::Io { .. }) && err.to_string().contains("nope.pth"), "{err}");

    let err = DepthNetwork::load(d, Arch::RtMonoDepthS, Device::Cpu).unwrap_err();
    assert!(
        matches!(err, ModelError::NoWeights { .. }) && err.to_string().contains("encoder.pth"),
        "{err}"
    );

    write(&d.join("garbage.pth"), b"\x89PNG\r\n\x1a\n this is not a checkpoint");
    let err = Checkpoint::read_pth(&d.join("garbage.pth")).unwrap_err();
    assert!(matches!(err, ModelError::NotACheckpoint { .. }), "{err}");
    assert!(err.to_string().contains("garbage.pth") && err.to_string().contains("zip"), "{err}");

    // A zip without data.pkl.
    let make_zip = |path: &Path, entries: &[(&str, &[u8])]| {
        let mut zip = zip::ZipWriter::new(std::fs::File::create(path).unwrap());
        for (name, bytes) in entries {
            zip.start_file(*name, zip::write::SimpleFileOptions::default()).unwrap();
            zip.write_all(bytes).unwrap();
        }
        zip.finish().unwrap();
    };
    make_zip(&d.join("other.pth"), &[("readme.txt", b"hello")]);
    let err = Checkpoint::read_pth(&d.join("other.pth")).unwrap_err();
    assert!(
        matches!(err, ModelError::NotACheckpoint { .. }) && err.to_string().contains("data.pkl"),
        "{err}"
    );

    // A truncated / corrupt pickle.
    make_zip(
        &d.join("corrupt.pth"),
        &[
            ("archive/data.pkl", b"\x80\x02}q\x00(X\x05\x00\x00\x00ab"),
            ("archive/byteorder", b"little"),
        ],
    );
    let err = Checkpoint::read_pth(&d.join("corrupt.pth")).unwrap_err();
    println!("{err}");
    assert!(
        matches!(err, ModelError::Pickle { .. }) && err.to_string().contains("corrupt.pth"),
        "{err}"
    );

    // A pickle whose tensor storage file is missing from the archive.
    let Some(model) = common::shared("models/rtmonodepth_s/m_640x192") else { return };
    let mut src =
        zip::ZipArchive::new(std::fs::File::open(model.join("depth.pth")).unwrap()).unwrap();
    let mut pkl = Vec::new();
    std::io::Read::read_to_end(&mut src.by_name("archive/data.pkl").unwrap(), &mut pkl).unwrap();
    make_zip(&d.join("nostorage.pth"), &[("archive/data.pkl", &pkl)]);
    let err = Checkpoint::read_pth(&d.join("nostorage.pth")).unwrap_err();
    println!("{err}");
    assert!(err.to_string().contains("archive/data/"), "{err}");

    let err = DepthNetwork::load(&d.join("garbage.safetensors"), Arch::RtMonoDepthS, Device::Cpu)
        .unwrap_err();
    assert!(matches!(err, ModelError::Io { .. }), "{err}");
    write(&d.join("bad.safetensors"), b"\x10\x00\x00\x00\x00\x00\x00\x00{not json}");
    let err = DepthNetwork::load(&d.join("bad.safetensors"), Arch::RtMonoDepthS, Device::Cpu)
        .unwrap_err();
    assert!(
        matches!(err, ModelError::Safetensors { .. })
            && err.to_string().contains("bad.safetensors"),
        "{err}"
    );
}

fn same_outputs(a: &[Tensor], b: &[Tensor]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| max_abs_diff(&values(x), &values(y)) == 0.0)
}

#[test]
fn safetensors_round_trip_and_weight_copy_for_every_architecture() {
    let dir = tempfile::tempdir().unwrap();
    tch::manual_seed(7);
    let x = Tensor::randn([1, 3, 64, 96], (Kind::Float, Device::Cpu));
    for arch in [Arch::RtMonoDepthS, Arch::Monodepth2R18, Arch::Monodepth2R50] {
        let net = DepthNetwork::new(arch, Device::Cpu);
        let path = dir.path().join(format!("{arch}.safetensors"));
        net.save_safetensors(&path).unwrap();
        let loaded = DepthNetwork::load(&path, arch, Device::Cpu).unwrap();
        let (a, b) = tch::no_grad(|| (net.forward_t(&x, false), loaded.forward_t(&x, false)));
        assert_eq!(a.len(), arch.num_scales());
        assert_eq!(a[0].size(), vec![1, 1, 64, 96], "{arch}: scale 0 at input resolution");
        assert!(same_outputs(&a, &b), "{arch}: reloaded weights differ");
        // A fresh network differs until the weights are copied in.
        let mut other = DepthNetwork::new(arch, Device::Cpu);
        let c = tch::no_grad(|| other.forward_t(&x, false));
        assert!(!same_outputs(&a, &c), "{arch}: two random inits gave identical outputs");
        other.copy_weights_from(&net).unwrap();
        let c = tch::no_grad(|| other.forward_t(&x, false));
        assert!(same_outputs(&a, &c), "{arch}: copy_weights_from");
    }
    let pair = Tensor::randn([2, 6, 64, 96], (Kind::Float, Device::Cpu));
    for arch in [PoseArch::Monodepth2R18, PoseArch::RtMonoDepthSPose] {
        let net = PoseNetwork::new(arch, Device::Cpu);
        let path = dir.path().join(format!("{arch}.safetensors"));
        net.save_safetensors(&path).unwrap();
        let loaded = PoseNetwork::load(&path, arch, Device::Cpu).unwrap();
        let ((r1, t1), (r2, t2)) =
            tch::no_grad(|| (net.forward_t(&pair, false), loaded.forward_t(&pair, false)));
        assert_eq!(r1.size(), vec![2, 3]);
        assert_eq!(t1.size(), vec![2, 3]);
        assert!(same_outputs(&[r1, t1], &[r2, t2]), "{arch}");
    }
    // Loading one architecture's file as another names the problem.
    let err = DepthNetwork::load(
        &dir.path().join("rtmonodepth-s.safetensors"),
        Arch::Monodepth2R18,
        Device::Cpu,
    )
    .unwrap_err();
    assert!(matches!(err, ModelError::MissingTensor { .. }), "{err}");
    // Bad input shapes are typed errors.
    let net = DepthNetwork::new(Arch::RtMonoDepthS, Device::Cpu);
    let err = net
        .try_forward_t(&Tensor::zeros([1, 3, 50, 96], (Kind::Float, Device::Cpu)), false)
        .unwrap_err();
    assert!(matches!(err, ModelError::InputShape { .. }), "{err}");
}

#[test]
fn light_pose_network_trains_with_autograd() {
    // One SGD step on the light pose network changes its output: the modules are trainable.
    let net = PoseNetwork::new(PoseArch::RtMonoDepthSPose, Device::Cpu);
    let pair = Tensor::randn([1, 6, 64, 64], (Kind::Float, Device::Cpu));
    let (r0, _) = net.forward_t(&pair, true);
    let before = values(&r0);
    let mut opt =
        tch::nn::OptimizerConfig::build(tch::nn::Sgd::default(), net.var_store(), 1.0).unwrap();
    let (r, t) = net.forward_t(&pair, true);
    let loss = (r.square().sum(Kind::Float) + t.square().sum(Kind::Float)) * 1e4;
    opt.backward_step(&loss);
    let (r1, _) = net.forward_t(&pair, true);
    assert!(max_abs_diff(&before, &values(&r1)) > 0.0);
}

#[test]
fn crafted_tensor_shapes_are_errors_and_never_an_allocation_abort() {
    let dir = tempfile::tempdir().unwrap();
    let write_pth = |name: &str, pickle: &[u8], storage: &[u8]| {
        let path = dir.path().join(name);
        std::fs::write(&path, pth_bytes(pickle, storage)).unwrap();
        path
    };
    let one_float = 1.5f32.to_le_bytes();
    // The honest file reads back.
    let ok = write_pth("ok.pth", &tensor_pickle(&[1], &[1], 0, 1), &one_float);
    assert_eq!(Checkpoint::read_pth(&ok).unwrap().tensors["t"].values, [1.5]);
    // Before issue #13: 2^46 elements with stride 0 passed the bounds check and aborted the
    // process allocating them; a shape whose product overflows wrapped around.
    /// File name, shape, stride, offset and what the error must say.
    type Case<'a> = (&'a str, &'a [u64], &'a [u64], u64, &'a str);
    let cases: [Case; 5] = [
        ("broadcast.pth", &[1 << 46], &[0], 0, "elements"),
        ("overflow.pth", &[1 << 40, 1 << 40], &[1, 1], 0, "overflows"),
        ("far_stride.pth", &[5], &[1 << 62], 0, "overflows"),
        ("far_offset.pth", &[4], &[1 << 62], 1 << 62, "overflows"),
        ("past_storage.pth", &[2], &[1], 0, "reads past"),
    ];
    for (name, shape, stride, offset, expected) in cases {
        let path = write_pth(name, &tensor_pickle(shape, stride, offset, 1), &one_float);
        let err = Checkpoint::read_pth(&path).unwrap_err();
        let msg = err.to_string();
        assert!(matches!(err, ModelError::Pickle { .. }), "{name}: {msg}");
        assert!(msg.contains(name) && msg.contains("`t`") && msg.contains(expected), "{msg}");
    }
}
