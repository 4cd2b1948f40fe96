//! `run --zenoh`: the live view's channels on a real Zenoh session. The test opens its own Zenoh
//! peer (`common::listening_peer`: TCP on a free local port, no multicast scouting), subscribes to
//! `livedepth/<device>/**`, and starts `livedepth run` on the real kitchen recording connecting
//! to it; it then decodes what arrived with Foxglove's protobuf schemas:
//! - depth images (foxglove.RawImage, 32FC1 at the network size), camera calibration and the
//!   status JSON arrive under the device's keys, with the encoding naming the schema;
//! - a device name that is not one key chunk is refused, naming the flag;
//! - an independent client, Zenoh's own Python binding (eclipse-zenoh), receives the depth images
//!   and decodes them with Foxglove's published protobuf schemas;
//! - (shared adaptation over Zenoh is in tests/fleet.rs);
//! - live speed (`--speed-key`): a peer publishes a rendered drive's speedometer on a key;
//!   livedepth reads the sidecar's odometer from it at every frame, and `run --adapt
//!   --metric-scale speed` gives every frame a reading and names the key in its report.

mod common;

use common::listening_peer;
use foxglove::messages::{CameraCalibration, RawImage};
use prost::Message;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};
use zenoh::Wait;

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

/// The acceptance's independent client: Zenoh's own Python binding (eclipse-zenoh, installed
/// by setup) listens and subscribes to `livedepth/**`; `livedepth run --zenoh-connect` on 12
/// kitchen frames reaches it, and it decodes the depth images with Foxglove's published
/// protobuf schemas (foxglove-schemas-protobuf).
#[test]
fn a_python_zenoh_subscriber_receives_and_decodes_depth() {
    use std::io::BufRead;
    let (Some(_), Some(_)) =
        (common::shared("data/kitchen"), common::shared("models/rtmonodepth_s/m_640x192"))
    else {
        return;
    };
    let endpoint = format!("tcp/127.0.0.1:{}", common::free_port());
    let script = common::repo_root().join("tests/python/zenoh_subscribe.py");
    let mut subscriber = std::process::Command::new(common::python())
        .args([script.to_str().unwrap(), &endpoint, "livedepth/**", "120"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = std::io::BufReader::new(subscriber.stdout.take().unwrap()).lines();
    assert_eq!(lines.next().unwrap().unwrap(), "ready", "the Python subscriber started");

    let dir = tempfile::tempdir().unwrap();
    let frames = 12;
    let output = common::livedepth(&[
        "run",
        "--config",
        "configs/kitchen.toml",
        "--frames",
        &frames.to_string(),
        "--out",
        dir.path().join("out").to_str().unwrap(),
        "--zenoh-connect",
        &endpoint,
        "--device-name",
        "pycam",
    ]);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let received: serde_json::Value =
        serde_json::from_str(&lines.next().unwrap().unwrap()).unwrap();
    assert!(subscriber.wait().unwrap().success());
    println!("{received}");
    let depth_messages = received["keys"]["livedepth/pycam/depth/image"].as_u64().unwrap_or(0);
    assert!((frames as u64 - 4..=frames as u64).contains(&depth_messages), "{received}");
    let encoding = received["encodings"]["livedepth/pycam/depth/image"].as_str().unwrap();
    assert!(encoding.contains("foxglove.RawImage"), "{encoding}");
    let depth = &received["depth"];
    assert_eq!((depth["width"].as_u64(), depth["height"].as_u64()), (Some(128), Some(96)));
    assert_eq!(depth["encoding"], "32FC1");
    assert!(depth["min"].as_f64().unwrap() > 0.0, "{depth}");
    assert!(received["keys"]["livedepth/pycam/camera/calibration"].as_u64().unwrap_or(0) > 0);
    assert!(received["status"]["frame"].is_u64(), "{received}");
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

/// The `time,speed` rows of a sidecar.
fn speed_rows(path: &std::path::Path) -> Vec<(f64, f64)> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .skip(1)
        .map(|row| {
            let (t, v) = row.split_once(',').unwrap();
            (t.parse().unwrap(), v.parse().unwrap())
        })
        .collect()
}

/// A `run` config for a rendered drive at 320x96 with `model`, writing into `out` and on Zenoh
/// through `endpoint` as device `test-car`; `source` and `network` are added to those tables.
fn drive_config(
    drive: &std::path::Path,
    model: &std::path::Path,
    out: &std::path::Path,
    endpoint: &str,
    source: &str,
    network: &str,
) -> livedepth::config::Config {
    let text = format!(
        "[source]\nuri = \"kitti:{}\"\n{source}\n[network]\narch = \"rtmonodepth-s\"\nwidth = 320\n\
         height = 96\nmodel = \"{}\"\n{network}\n[outputs]\ndir = \"{}\"\n[outputs.zenoh]\n\
         connect = [\"{endpoint}\"]\ndevice = \"test-car\"\n",
        drive.display(),
        model.display(),
        out.display()
    );
    livedepth::config::Config::from_toml_str(&text, std::path::Path::new("t")).expect("config")
}

/// The vehicle: once a subscriber matches `key`, puts one malformed message and then every
/// `(time, speed)` row as JSON, in order.
fn publish_speed_when_matched(vehicle: &zenoh::Session, key: &str, rows: Vec<(f64, f64)>) {
    let messages =
        rows.iter().map(|(time, speed)| format!("{{\"time\": {time}, \"speed\": {speed}}}"));
    publish_when_matched(vehicle, key, std::iter::once("fast".to_owned()).chain(messages));
}

/// Once a subscriber matches `key`, puts `messages` in order.
fn publish_when_matched(
    vehicle: &zenoh::Session,
    key: &str,
    messages: impl IntoIterator<Item = String>,
) {
    let publisher = vehicle.declare_publisher(key.to_owned()).wait().unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    while !publisher.matching_status().wait().unwrap().matching() {
        assert!(Instant::now() < deadline, "nothing subscribed to {key}");
        std::thread::sleep(Duration::from_millis(20));
    }
    for message in messages {
        publisher.put(message).wait().unwrap();
    }
}

/// `--speed-key`, below the CLI: a real Zenoh peer publishes a rendered drive's speedometer on a
/// key, and livedepth's subscriber on another session reads the same odometer as the sidecar at
/// every frame (and between frames), reads at the newest speed for up to a second past the last
/// sample, has no reading after that, and refuses a malformed message naming the key.
#[test]
fn live_speed_on_a_zenoh_key_reads_like_the_speed_sidecar() {
    use livedepth::scale::live_speed::{LiveSpeed, MAX_EXTRAPOLATION_S, SpeedClock};
    use livedepth::scale::speed::SpeedTrack;
    let dir = tempfile::tempdir().unwrap();
    let sidecar = common::rendered_drive(dir.path(), 12, 6154).join("speed.csv");
    let rows = speed_rows(&sidecar);
    let reference = SpeedTrack::read(&sidecar).unwrap();

    let (vehicle, endpoint) = listening_peer();
    let livedepth_side =
        livedepth::sink::zenoh_live::ZenohConfig { connect: vec![endpoint], ..Default::default() }
            .open()
            .unwrap();
    let key = "vehicle/test-car/speed";
    let mut live = LiveSpeed::subscribe(&livedepth_side, key).unwrap();
    publish_speed_when_matched(&vehicle, key, rows.clone());
    let stats = live.stats();
    let deadline = Instant::now() + Duration::from_secs(60);
    while stats.report().received < rows.len() as u64 + 1 {
        assert!(Instant::now() < deadline, "messages lost: {:?}", stats.report());
        std::thread::sleep(Duration::from_millis(20));
    }

    let frame = |index: u64, timestamp: f64| {
        let rgb = livedepth::frame::RgbImage { width: 1, height: 1, data: vec![0; 3] };
        livedepth::frame::Frame::from_rgb(index, timestamp, rgb)
    };
    let (first, last) = reference.span();
    let mut index = 0;
    for (time, _) in &rows {
        for t in [*time, time + 0.03].into_iter().filter(|t| *t <= last) {
            let expected = reference.odometer(t).unwrap();
            let read = live.reading(&frame(index, t)).expect("a reading inside the samples");
            assert!((read - expected).abs() < 1e-9, "at {t} s: {read} against {expected}");
            index += 1;
        }
    }
    let (_, last_speed) = rows[rows.len() - 1];
    let ahead = live.reading(&frame(index, last + 0.5)).expect("read at the newest speed");
    let expected = reference.odometer(last).unwrap() + 0.5 * last_speed;
    assert!((ahead - expected).abs() < 1e-9, "{ahead} against {expected}");
    assert_eq!(live.reading(&frame(index + 1, last + MAX_EXTRAPOLATION_S + 0.5)), None);

    let report = stats.report();
    println!("{report:?}");
    assert_eq!(report.clock, Some(SpeedClock::Stream));
    assert_eq!((report.refused, report.frames_extrapolated, report.frames_without), (1, 1, 1));
    assert_eq!(report.frames_read, index);
    let refusal = report.last_refusal.unwrap();
    assert!(refusal.contains(key) && refusal.contains("speed `fast`"), "{refusal}");
    assert!(first <= rows[0].0);
}

/// `run --adapt --metric-scale speed --speed-key KEY` on a rendered drive, with the vehicle
/// publishing its speedometer on a real Zenoh peer: every message arrives, every frame has an
/// odometer reading, the scale source is `speed` and the report names the key; a key with a
/// wildcard is refused naming the flag.
#[test]
fn run_reads_the_vehicles_speed_from_a_zenoh_key() {
    use livedepth::app::adapt::{AdaptOptions, PoseInit};
    use livedepth::app::live::{LiveOptions, run_live};
    use livedepth::train::TrainedModel;
    let model = TrainedModel::open(&common::repo_root().join(livedepth::app::demo::BASE_MODEL_DIR))
        .expect("the committed base model opens");
    let dir = tempfile::tempdir().unwrap();
    let frames = 24;
    let drive = common::rendered_drive(dir.path(), frames, 6155);
    let rows = speed_rows(&drive.join("speed.csv"));
    let (vehicle, endpoint) = listening_peer();
    let key = "vehicle/test-car/speed";
    let out = dir.path().join("out");
    let network = format!("metric_scale = \"speed\"\nspeed_key = \"{key}\"");
    let config = drive_config(&drive, &model.depth, &out, &endpoint, "", &network);
    let publishing = {
        let rows = rows.clone();
        std::thread::spawn(move || publish_speed_when_matched(&vehicle, key, rows))
    };
    let adapt = AdaptOptions {
        pose_model: Some(model.pose.clone()),
        pose_init: PoseInit::DepthEncoder,
        ..AdaptOptions::default()
    };
    let report =
        run_live(&LiveOptions { config, model: None, max_frames: None, adapt: Some(adapt) })
            .expect("run --adapt --metric-scale speed --speed-key");
    publishing.join().expect("the vehicle published");
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("run_report.json")).unwrap())
            .unwrap();
    let speed = &json["speed_input"];
    println!("{speed}\n{}", json["metric_scale"]);
    assert_eq!(report.frames_delivered, frames as u64);
    assert_eq!(speed["key"], key, "{speed}");
    assert_eq!(speed["clock"], "stream", "{speed}");
    assert_eq!(speed["received"].as_u64(), Some(rows.len() as u64 + 1), "{speed}");
    assert_eq!(speed["refused"].as_u64(), Some(1), "{speed}");
    let read =
        speed["frames_read"].as_u64().unwrap() + speed["frames_extrapolated"].as_u64().unwrap();
    assert_eq!(read, frames as u64, "every frame has an odometer reading: {speed}");
    assert_eq!(json["metric_scale"]["source"]["source"], "speed");
    assert_eq!(json["metric_scale"]["source"]["speed_key"], key);

    let stderr = run_refused(&["--adapt", "--metric-scale", "speed", "--speed-key", "car/*/speed"]);
    assert!(stderr.contains("--speed-key") && stderr.contains("wildcard"), "{stderr}");
}

/// `run --adapt --gyro zenoh:KEY` on a rendered drive, with the vehicle publishing the camera's
/// attitude (the renderer's camera orientations, as an attitude estimator would) on a real
/// Zenoh peer: every message but a malformed one is taken, every frame is read between two
/// samples, and every triplet the adapter forms carries the rotation prior. The replay is paced
/// at 5 fps, so that the adapter, built while the first frames play, sees frames to form
/// triplets from. A key with a
/// wildcard, and a Zenoh key for the lock-step `eval`, are refused naming the flag.
#[test]
fn run_reads_the_cameras_attitude_from_a_zenoh_key() {
    use livedepth::app::adapt::{AdaptOptions, PoseInit};
    use livedepth::app::gyro::GyroSource;
    use livedepth::app::live::{LiveOptions, run_live};
    use livedepth::train::TrainedModel;
    let model = TrainedModel::open(&common::repo_root().join(livedepth::app::demo::BASE_MODEL_DIR))
        .expect("the committed base model opens");
    let dir = tempfile::tempdir().unwrap();
    let frames = 40;
    let drive = common::rendered_drive(dir.path(), frames, 6156);
    let dataset = livedepth::source::dataset::open_dataset(&format!("kitti:{}", drive.display()))
        .expect("the rendered drive opens");
    let attitude: Vec<String> = (0..frames)
        .map(|i| {
            let frame = dataset.frame(i).expect("a rendered frame");
            let q = frame.gt_pose.expect("the renderer's camera pose").rotation;
            let time = frame.timestamp;
            format!(
                "{{\"time\": {time}, \"qw\": {}, \"qx\": {}, \"qy\": {}, \"qz\": {}}}",
                q.w, q.i, q.j, q.k
            )
        })
        .collect();
    let (vehicle, endpoint) = listening_peer();
    let key = "vehicle/test-car/attitude";
    let out = dir.path().join("out");
    let config = drive_config(&drive, &model.depth, &out, &endpoint, "fps = 5.0", "");
    let publishing = {
        let messages = std::iter::once("1.0,2,0,0,0".to_owned()).chain(attitude.clone());
        std::thread::spawn(move || publish_when_matched(&vehicle, key, messages))
    };
    let adapt = AdaptOptions {
        pose_model: Some(model.pose.clone()),
        pose_init: PoseInit::DepthEncoder,
        gyro: Some(GyroSource::from_flag(&format!("zenoh:{key}"))),
        ..AdaptOptions::default()
    };
    let report =
        run_live(&LiveOptions { config, model: None, max_frames: None, adapt: Some(adapt) })
            .expect("run --adapt --gyro zenoh:KEY");
    publishing.join().expect("the vehicle published");
    let read = |name: &str| -> serde_json::Value {
        serde_json::from_str(&std::fs::read_to_string(out.join(name)).unwrap()).unwrap()
    };
    let gyro = &read("run_report.json")["gyro_input"];
    println!("{gyro}");
    assert_eq!(report.frames_delivered, frames as u64);
    assert_eq!(gyro["key"], key, "{gyro}");
    assert_eq!(gyro["received"].as_u64(), Some(frames as u64 + 1), "{gyro}");
    assert_eq!(gyro["refused"].as_u64(), Some(1), "{gyro}");
    let refusal = gyro["last_refusal"].as_str().unwrap_or_default();
    assert!(refusal.contains(key) && refusal.contains("unit quaternion"), "{gyro}");
    assert_eq!(gyro["frames_read"].as_u64(), Some(frames as u64), "{gyro}");
    assert_eq!(gyro["frames_without"].as_u64(), Some(0), "{gyro}");
    let adapt = read("adapt_report.json");
    let (triplets, priors) = (adapt["triplets"].as_u64(), adapt["rotation_priors"].as_u64());
    println!("adapter: {triplets:?} triplets, {priors:?} with the rotation prior");
    assert!(triplets.is_some_and(|t| t > 0) && priors == triplets, "{adapt}");

    let stderr = run_refused(&["--adapt", "--gyro", "zenoh:car/*/attitude"]);
    assert!(
        stderr.contains("--gyro zenoh:car/*/attitude") && stderr.contains("wildcard"),
        "{stderr}"
    );
    let output = common::livedepth(&[
        "eval",
        "--dataset",
        &format!("kitti:{}", drive.display()),
        "--model",
        model.depth.to_str().unwrap(),
        "--adapt",
        "--gyro",
        "zenoh:car/attitude",
    ]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success() && stderr.contains("run --adapt"), "{stderr}");
}
