//! `run --zenoh`: the live view's channels on a real Zenoh session. The test opens its own Zenoh
//! peer (the `zenoh` crate, TCP on a free local port, no multicast scouting), subscribes to
//! `livedepth/<device>/**`, and starts `livedepth run` on the real kitchen recording connecting
//! to it; it then decodes what arrived with Foxglove's protobuf schemas:
//! - depth images (foxglove.RawImage, 32FC1 at the network size), camera calibration and the
//!   status JSON arrive under the device's keys, with the encoding naming the schema;
//! - a device name that is not one key chunk is refused, naming the flag.

mod common;

use foxglove::messages::{CameraCalibration, RawImage};
use prost::Message;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};
use zenoh::Wait;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

#[test]
fn run_puts_depth_calibration_and_status_on_zenoh_under_the_device_key() {
    let (Some(_), Some(_)) =
        (common::shared("data/kitchen"), common::shared("models/rtmonodepth_s/m_640x192"))
    else {
        return;
    };
    let endpoint = format!("tcp/127.0.0.1:{}", free_port());
    let mut config = zenoh::Config::default();
    config.insert_json5("mode", "\"peer\"").unwrap();
    config.insert_json5("listen/endpoints", &format!("[\"{endpoint}\"]")).unwrap();
    config.insert_json5("scouting/multicast/enabled", "false").unwrap();
    let session = zenoh::open(config).wait().unwrap();
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
    assert_eq!(last["frame"].as_u64(), Some(frames as u64 - 1), "{last}");
    for key in ["camera/image", "depth/colour", "depth/points"] {
        assert!(by_key.contains_key(&format!("livedepth/testcam/{key}")), "{key}: {counts:?}");
    }
}

#[test]
fn a_device_name_that_is_not_one_key_chunk_is_refused_by_flag() {
    let output = common::livedepth(&[
        "run",
        "--config",
        "configs/kitchen.toml",
        "--zenoh",
        "--device-name",
        "car/1",
    ]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(stderr.contains("--device-name") && stderr.contains("car/1"), "{stderr}");
    let output = common::livedepth(&[
        "run",
        "--config",
        "configs/kitchen.toml",
        "--zenoh-connect",
        "192.168.1.2:7447",
    ]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(stderr.contains("--zenoh-connect") && stderr.contains("tcp/HOST:PORT"), "{stderr}");
}
