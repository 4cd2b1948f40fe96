//! `run --zenoh`: the live view's channels on a real Zenoh session. The test opens its own Zenoh
//! peer (the `zenoh` crate, TCP on a free local port, no multicast scouting), subscribes to
//! `livedepth/<device>/**`, and starts `livedepth run` on the real kitchen recording connecting
//! to it; it then decodes what arrived with Foxglove's protobuf schemas:
//! - depth images (foxglove.RawImage, 32FC1 at the network size), camera calibration and the
//!   status JSON arrive under the device's keys, with the encoding naming the schema;
//! - a device name that is not one key chunk is refused, naming the flag;
//! - shared adaptation: `run --adapt` shares its adapted weights under
//!   `livedepth/<fleet>/weights/<device>` (with the base model's hash and its accepted steps),
//!   and `livedepth fleet` merges two devices' weights (federated averaging of the deltas,
//!   weighted by accepted steps), validates the merge on held-out kitchen_val frames and
//!   republishes it under `livedepth/<fleet>/weights/merged`.

mod common;

use foxglove::messages::{CameraCalibration, RawImage};
use prost::Message;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};
use zenoh::Wait;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A Zenoh peer listening on a free local port (no scouting), and that endpoint.
fn listening_peer() -> (zenoh::Session, String) {
    let endpoint = format!("tcp/127.0.0.1:{}", free_port());
    let mut config = zenoh::Config::default();
    config.insert_json5("mode", "\"peer\"").unwrap();
    config.insert_json5("listen/endpoints", &format!("[\"{endpoint}\"]")).unwrap();
    config.insert_json5("scouting/multicast/enabled", "false").unwrap();
    (zenoh::open(config).wait().unwrap(), endpoint)
}

const KITTI_MODEL: &str = "models/rtmonodepth_s/m_640x192";

/// The KITTI model's variables as a checkpoint, and its fleet hash.
fn base_checkpoint(model: &std::path::Path) -> (livedepth::model::checkpoint::Checkpoint, String) {
    let net = livedepth::model::network::DepthNetwork::load(
        model,
        livedepth::model::Arch::RtMonoDepthS,
        tch::Device::Cpu,
    )
    .unwrap();
    let ckpt = livedepth::model::network::var_store_checkpoint(
        net.var_store(),
        model,
        &[("arch", "rtmonodepth-s")],
    )
    .unwrap();
    let hash = livedepth::fleet::base_hash(&ckpt);
    (ckpt, hash)
}

/// `checkpoint` with its decoder (`depth.*`) scaled by `factor`.
fn scaled_decoder(
    checkpoint: &livedepth::model::checkpoint::Checkpoint,
    factor: f32,
) -> livedepth::model::checkpoint::Checkpoint {
    let mut c = checkpoint.clone();
    for (name, t) in c.tensors.iter_mut() {
        if name.starts_with("depth.") {
            t.values.iter_mut().for_each(|v| *v *= factor);
        }
    }
    c
}

#[test]
fn run_puts_depth_calibration_and_status_on_zenoh_under_the_device_key() {
    let (Some(_), Some(_)) =
        (common::shared("data/kitchen"), common::shared("models/rtmonodepth_s/m_640x192"))
    else {
        return;
    };
    let (session, endpoint) = listening_peer();
    let subscriber = session.declare_subscriber("livedepth/testcam/**").wait().unwrap();

    let dir = tempfile::tempdir().unwrap();
    let frames = 12;
    let mut run = std::process::Command::new(env!("CARGO_BIN_EXE_livedepth"))
        .current_dir(common::repo_root())
        .args(["run", "--config", "configs/kitchen.toml", "--frames", &frames.to_string()])
        .args(["--out", dir.path().join("out").to_str().unwrap()])
        .args(["--zenoh-connect", &endpoint, "--device-name", "testcam"])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();

    let mut by_key: BTreeMap<String, Vec<(String, Vec<u8>)>> = BTreeMap::new();
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut finished = None;
    while Instant::now() < deadline {
        match subscriber.recv_timeout(Duration::from_millis(200)).unwrap() {
            Some(sample) => by_key
                .entry(sample.key_expr().as_str().to_owned())
                .or_default()
                .push((sample.encoding().to_string(), sample.payload().to_bytes().into_owned())),
            None => {
                if finished.is_some() {
                    break;
                }
                // Drain for a moment after the run ends.
                finished = run.try_wait().unwrap();
            }
        }
    }
    let output = run.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert!(stderr.contains("livedepth/testcam"), "the run says where it publishes: {stderr}");
    let counts: Vec<(&String, usize)> = by_key.iter().map(|(k, v)| (k, v.len())).collect();
    println!("received: {counts:?}");

    let depth = &by_key["livedepth/testcam/depth/image"];
    assert!(
        depth.len() >= frames - 4 && depth.len() <= frames,
        "depth messages: {} of {frames}",
        depth.len()
    );
    let (encoding, bytes) = &depth[depth.len() - 1];
    assert!(encoding.contains("protobuf") && encoding.contains("foxglove.RawImage"), "{encoding}");
    let image = RawImage::decode(bytes.as_slice()).unwrap();
    assert_eq!((image.width, image.height, image.encoding.as_str()), (128, 96, "32FC1"));
    let depths: Vec<f32> =
        image.data.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect();
    assert_eq!(depths.len(), 128 * 96);
    assert!(depths.iter().all(|d| d.is_finite() && *d > 0.0), "positive depth everywhere");

    let calibration = &by_key["livedepth/testcam/camera/calibration"];
    let k = CameraCalibration::decode(calibration[0].1.as_slice()).unwrap();
    assert_eq!((k.width, k.height), (128, 96));
    assert!((k.k[0] - 585.0 * 128.0 / 640.0).abs() < 1e-6, "fx at the network size: {:?}", k.k);

    let status = &by_key["livedepth/testcam/livedepth/status"];
    assert!(status[0].0.contains("json"), "{}", status[0].0);
    let last: serde_json::Value = serde_json::from_slice(&status[status.len() - 1].1).unwrap();
    // Live telemetry may drop a message under congestion, like the depth images above (zenoh
    // puts with congestion control `drop`): the last status is from one of the last frames.
    let last_frame = last["frame"].as_u64().unwrap_or(0) as usize;
    assert!((frames - 4..frames).contains(&last_frame), "{last}");
    for key in ["camera/image", "depth/colour", "depth/points"] {
        assert!(by_key.contains_key(&format!("livedepth/testcam/{key}")), "{key}: {counts:?}");
    }
}

/// `run` on the kitchen config with `flags`: it must fail, and its stderr.
fn run_refused(flags: &[&str]) -> String {
    let mut args = vec!["run", "--config", "configs/kitchen.toml"];
    args.extend_from_slice(flags);
    let output = common::livedepth(&args);
    assert!(!output.status.success(), "run {flags:?} must be refused");
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn a_device_name_that_is_not_one_key_chunk_is_refused_by_flag() {
    let stderr = run_refused(&["--zenoh", "--device-name", "car/1"]);
    assert!(stderr.contains("--device-name") && stderr.contains("car/1"), "{stderr}");
    let stderr = run_refused(&["--zenoh-connect", "192.168.1.2:7447"]);
    assert!(stderr.contains("--zenoh-connect") && stderr.contains("tcp/HOST:PORT"), "{stderr}");
    let stderr = run_refused(&["--fleet", "a b"]);
    assert!(stderr.contains("--fleet") && stderr.contains("a b"), "{stderr}");
}

#[test]
fn run_with_adapt_shares_its_weights_and_continues_from_the_fleets_merge() {
    let (Some(model), Some(_)) = (common::shared(KITTI_MODEL), common::shared("data/kitchen"))
    else {
        return;
    };
    // This time the device listens (the live view and the fleet share its one session) and the
    // test's peer connects to it.
    let endpoint = format!("tcp/127.0.0.1:{}", free_port());
    let dir = tempfile::tempdir().unwrap();
    // The kitchen config on a live 30 fps test camera: 300 frames last 10 s.
    let config = std::fs::read_to_string(common::repo_root().join("configs/kitchen.toml"))
        .unwrap()
        .replace("uri = \"kitchen:../shared/data/kitchen\"", "uri = \"test://ball\"");
    assert!(config.contains("test://ball"));
    let config_path = dir.path().join("live.toml");
    std::fs::write(&config_path, config).unwrap();
    let out = dir.path().join("out");
    let run = std::process::Command::new(env!("CARGO_BIN_EXE_livedepth"))
        .current_dir(common::repo_root())
        .args(["run", "--config", config_path.to_str().unwrap(), "--frames", "300", "--adapt"])
        .args(["--out", out.to_str().unwrap()])
        .args(["--zenoh-listen", &endpoint, "--device-name", "cam1", "--fleet", "testfleet"])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut config = zenoh::Config::default();
    config.insert_json5("mode", "\"peer\"").unwrap();
    config.insert_json5("connect/endpoints", &format!("[\"{endpoint}\"]")).unwrap();
    config.insert_json5("scouting/multicast/enabled", "false").unwrap();
    let session = zenoh::open(config).wait().unwrap();
    let subscriber = session.declare_subscriber("livedepth/testfleet/weights/cam1").wait().unwrap();
    let merged = session.declare_publisher("livedepth/testfleet/weights/merged").wait().unwrap();

    // The fleet's merge: the base with its decoder scaled by 1.01, sent once the device listens.
    let (base, hash) = base_checkpoint(&model);
    let merge = scaled_decoder(&base, 1.01);
    let deadline = Instant::now() + Duration::from_secs(120);
    while !merged.matching_status().wait().unwrap().matching() {
        assert!(Instant::now() < deadline, "the device never subscribed to the fleet's merges");
        std::thread::sleep(Duration::from_millis(50));
    }
    let bytes = livedepth::fleet::encode_weights(&merge, "merged", &hash, 99).unwrap();
    merged.put(bytes).wait().unwrap();

    let output = run.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert!(stderr.contains("continuing from the merge"), "{stderr}");
    let report: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(out.join(livedepth::app::replay::ADAPT_REPORT_FILE)).unwrap(),
    )
    .unwrap();
    assert_eq!(report["fleet_merges_adopted"].as_u64(), Some(1), "{report}");

    let mut shared = Vec::new();
    while let Some(sample) = subscriber.recv_timeout(Duration::from_secs(5)).unwrap() {
        shared.push((
            sample.key_expr().as_str().to_owned(),
            sample.payload().to_bytes().into_owned(),
        ));
    }
    assert!(!shared.is_empty(), "the adapter shares at least once, when it ends: {stderr}");
    let (key, bytes) = shared.last().unwrap();
    let weights = livedepth::fleet::decode_weights(bytes, key).unwrap();
    assert_eq!((weights.device.as_str(), weights.base.as_str()), ("cam1", hash.as_str()));
    assert_eq!(Some(weights.accepted_steps), report["steps"].as_u64(), "{report}");
    assert_eq!(weights.checkpoint.tensors.len(), base.tensors.len(), "every variable is shared");
    // It continued from the merge: a decoder weight is nearer the merge's than the base's.
    let name = base.tensors.keys().find(|n| n.starts_with("depth.") && n.ends_with("weight"));
    let name = name.unwrap();
    let distance = |a: &[f32], b: &[f32]| -> f64 {
        a.iter().zip(b).map(|(x, y)| f64::from(x - y).powi(2)).sum::<f64>().sqrt()
    };
    let ours = &weights.checkpoint.tensors[name].values;
    let (to_merge, to_base) =
        (distance(ours, &merge.tensors[name].values), distance(ours, &base.tensors[name].values));
    assert!(to_merge < to_base, "{name}: {to_merge} from the merge, {to_base} from the base");
}

#[test]
fn fleet_merges_two_devices_validates_on_held_out_frames_and_republishes() {
    let (Some(model), Some(val)) =
        (common::shared(KITTI_MODEL), common::shared("data/kitchen_val"))
    else {
        return;
    };
    let (session, endpoint) = listening_peer();
    let merged_sub =
        session.declare_subscriber("livedepth/testfleet2/weights/merged").wait().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("fleet");
    let mut fleet = std::process::Command::new(env!("CARGO_BIN_EXE_livedepth"))
        .current_dir(common::repo_root())
        .args(["fleet", "--model", model.to_str().unwrap(), "--fleet", "testfleet2"])
        .args(["--zenoh-connect", &endpoint, "--min-devices", "2", "--rounds", "1"])
        .args(["--timeout-s", "300", "--frames", "8", "--out", out.to_str().unwrap()])
        .arg("--validate")
        .arg(format!("kitchen:{}", val.display()))
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();

    // Two devices' "adapted" weights: the base's decoder scaled by 1.02 (30 steps) and by 0.99
    // (10 steps).
    let (base, hash) = base_checkpoint(&model);
    let scaled = |factor: f32| scaled_decoder(&base, factor);
    let devices = [("car-a", 1.02f32, 30u64), ("car-b", 0.99, 10)];
    let publishers: Vec<_> = devices
        .iter()
        .map(|(device, factor, steps)| {
            let key = format!("livedepth/testfleet2/weights/{device}");
            let publisher = session.declare_publisher(key).wait().unwrap();
            let bytes = livedepth::fleet::encode_weights(&scaled(*factor), device, &hash, *steps);
            (publisher, bytes.unwrap())
        })
        .collect();
    // Publish once the fleet process subscribes (it loads the model and scores the base first).
    let deadline = Instant::now() + Duration::from_secs(300);
    while !publishers[0].0.matching_status().wait().unwrap().matching() {
        assert!(Instant::now() < deadline, "the fleet never subscribed");
        assert!(fleet.try_wait().unwrap().is_none(), "the fleet process ended early");
        std::thread::sleep(Duration::from_millis(100));
    }
    for (publisher, bytes) in &publishers {
        publisher.put(bytes.clone()).wait().unwrap();
    }
    let output = fleet.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("fleet_report.json")).unwrap())
            .unwrap();
    println!("{report:#}");
    let round = &report["rounds"][0];
    assert_eq!(round["devices"], serde_json::json!(["car-a", "car-b"]));
    assert_eq!(round["accepted_steps"], serde_json::json!([30, 10]));
    let path = std::path::PathBuf::from(round["weights"].as_str().unwrap());
    let file = std::fs::read(&path).unwrap();
    let weights = livedepth::fleet::decode_weights(&file, &path.display().to_string()).unwrap();
    assert_eq!((weights.device.as_str(), weights.base.as_str()), ("merged", hash.as_str()));
    assert_eq!(weights.accepted_steps, 40);
    // θ = θ0 + 0.75·(0.02·θ0) + 0.25·(−0.01·θ0) = 1.0125·θ0 on the decoder, θ0 elsewhere.
    for (name, t) in &weights.checkpoint.tensors {
        let b = &base.tensors[name];
        let factor = if name.starts_with("depth.") { 1.0125 } else { 1.0 };
        for (m, v) in t.values.iter().zip(&b.values) {
            let expected = v * factor;
            assert!((m - expected).abs() <= 1e-6 * (1.0 + v.abs()), "{name}: {m} vs {expected}");
        }
    }
    // Republished exactly when the merge scores no worse than the base on the held-out frames.
    let (b, m) =
        (round["base_abs_rel"].as_f64().unwrap(), round["merged_abs_rel"].as_f64().unwrap());
    assert!(b > 0.0 && b < 1.0 && m > 0.0 && m < 1.0, "held-out abs_rel base {b}, merged {m}");
    let republished = round["republished"].as_bool().unwrap();
    assert_eq!(republished, m <= b, "{round}");
    let sample = merged_sub.recv_timeout(Duration::from_secs(5)).unwrap();
    if republished {
        let sample = sample.expect("a republished merge arrives on …/weights/merged");
        assert_eq!(sample.payload().to_bytes().as_ref(), file.as_slice());
    } else {
        assert!(sample.is_none(), "a held-back merge is not republished");
        assert!(round["held_back"].as_str().unwrap().contains("worse than the base"), "{round}");
    }

    // Without a held-out replay every merge is republished: the same two devices again.
    let out2 = dir.path().join("fleet2");
    let fleet = std::process::Command::new(env!("CARGO_BIN_EXE_livedepth"))
        .current_dir(common::repo_root())
        .args(["fleet", "--model", model.to_str().unwrap(), "--fleet", "testfleet2"])
        .args(["--zenoh-connect", &endpoint, "--rounds", "1", "--timeout-s", "300"])
        .args(["--out", out2.to_str().unwrap()])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(300);
    while !publishers[0].0.matching_status().wait().unwrap().matching() {
        assert!(Instant::now() < deadline, "the second fleet never subscribed");
        std::thread::sleep(Duration::from_millis(100));
    }
    for (publisher, bytes) in &publishers {
        publisher.put(bytes.clone()).wait().unwrap();
    }
    let output = fleet.wait_with_output().unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let sample = merged_sub.recv_timeout(Duration::from_secs(10)).unwrap().expect("republished");
    let file = std::fs::read(out2.join("merged-round-1.safetensors")).unwrap();
    assert_eq!(sample.payload().to_bytes().as_ref(), file.as_slice());
}
