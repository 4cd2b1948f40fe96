//! Shared adaptation over Zenoh, with real `livedepth` processes and a real Zenoh session:
//! - `run --adapt --zenoh-pull-weights` shares its adapted weights under
//!   `livedepth/<fleet>/weights/<device>` (with the base model's hash and its accepted steps)
//!   and continues from a merge the fleet republishes;
//! - `livedepth fleet` merges two devices' weights (federated averaging of the deltas,
//!   weighted by accepted steps), validates the merge on held-out kitchen_val frames and
//!   republishes it under `livedepth/<fleet>/weights/merged`;
//! - a fleet of three device processes and a fleet process on loopback (the fleet listens, the
//!   devices and the test connect to it): the merge reaches every device, and a device
//!   restarted after the merge catches up by asking the fleet for its newest merge.

mod common;

use common::{free_port, listening_peer};
use std::process::{Child, Command};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use zenoh::Wait;

const KITTI_MODEL: &str = "models/rtmonodepth_s/m_640x192";

/// The tests of this file run one at a time: each starts device or fleet processes, and together
/// they would put up to four live devices and three fleets on this machine's cores.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

/// The device processes' camera: the test pattern at 10 fps, so that three devices and the fleet
/// fit on a small machine beside their adapters.
const TEN_FPS_CAMERA: (&str, &str) = (
    "uri = \"test://ball\"",
    "uri = \"gst://videotestsrc is-live=true pattern=ball ! \
     video/x-raw,width=320,height=240,framerate=10/1 ! videoconvert ! appsink name=sink\"",
);

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
fn run_with_adapt_shares_its_weights_and_continues_from_the_fleets_merge() {
    let (Some(model), Some(_)) = (common::shared(KITTI_MODEL), common::shared("data/kitchen"))
    else {
        return;
    };
    let _one_at_a_time = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    // This time the device listens (the live view and the fleet share its one session) and the
    // test's peer connects to it.
    let endpoint = format!("tcp/127.0.0.1:{}", free_port());
    let dir = tempfile::tempdir().unwrap();
    // The kitchen config on a live 30 fps test camera: 300 frames last 10 s.
    let config_path = common::kitchen_config_on_test_camera(dir.path(), &[]);
    let out = dir.path().join("out");
    let run = std::process::Command::new(env!("CARGO_BIN_EXE_livedepth"))
        .current_dir(common::repo_root())
        .args(["run", "--config", config_path.to_str().unwrap(), "--frames", "300", "--adapt"])
        .args(["--out", out.to_str().unwrap()])
        .args(["--zenoh-listen", &endpoint, "--device-name", "cam1", "--fleet", "testfleet"])
        .arg("--zenoh-pull-weights")
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let session = common::connecting_peer(&endpoint);
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
    // With the scene it adapted on.
    let scene = match weights.checkpoint.metadata.get(livedepth::app::fleet::SCENE_KEY) {
        Some(livedepth::model::checkpoint::MetaValue::Str(scene)) => scene.clone(),
        other => panic!("no scene statistics: {other:?}"),
    };
    let scene: serde_json::Value = serde_json::from_str(&scene).unwrap();
    assert_eq!(scene["steps"].as_u64(), report["steps"].as_u64(), "{scene}");
    assert!(scene["triplets"].as_u64().unwrap() >= scene["steps"].as_u64().unwrap(), "{scene}");
    // A loss is measured by a step: a loaded machine may give the device none in 300 frames.
    let loss = scene["photometric_loss"].as_f64().unwrap();
    let steps = scene["steps"].as_u64().unwrap();
    assert!(loss.is_finite() && (loss > 0.0 || steps == 0), "{scene}");
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
    let _one_at_a_time = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
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

/// A `livedepth` process whose stderr lines are collected as they come.
struct Device {
    name: &'static str,
    child: Child,
    stderr: Arc<Mutex<String>>,
    out: std::path::PathBuf,
}

impl Device {
    /// `livedepth run` on the live test camera config, as device `name` of `fleet`, connected
    /// to `endpoint`, with `extra` flags.
    fn start(
        name: &'static str,
        config: &std::path::Path,
        dir: &std::path::Path,
        endpoint: &str,
        extra: &[&str],
    ) -> Self {
        let out = dir.join(name);
        let (child, stderr) = common::spawn_collecting_stderr(
            Command::new(env!("CARGO_BIN_EXE_livedepth"))
                .current_dir(common::repo_root())
                .args(["run", "--config", config.to_str().unwrap(), "--frames", "100000"])
                .args(["--out", out.to_str().unwrap(), "--zenoh-connect", endpoint])
                .args(["--device-name", name, "--fleet", "fleet3", "--zenoh-pull-weights"])
                .args(extra),
        );
        Self { name, child, stderr, out }
    }

    fn said(&self, what: &str) -> bool {
        self.stderr.lock().unwrap().contains(what)
    }

    /// Waits until the device says `what` (panics at `deadline`, or if it ended).
    fn wait_for(&mut self, what: &str, deadline: Instant) {
        while !self.said(what) {
            let ended = self.child.try_wait().unwrap();
            assert!(
                ended.is_none() && Instant::now() < deadline,
                "{} never said {what:?} (ended: {ended:?}):\n{}",
                self.name,
                self.stderr.lock().unwrap()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Ctrl-C, then the run's report (run_report.json) once it ended well.
    fn stop(&mut self) -> serde_json::Value {
        Command::new("kill").args(["-INT", &self.child.id().to_string()]).status().unwrap();
        let status = self.child.wait().unwrap();
        std::thread::sleep(Duration::from_millis(200));
        let stderr = self.stderr.lock().unwrap().clone();
        assert!(status.success(), "{}: {status}\n{stderr}", self.name);
        let report = std::fs::read_to_string(self.out.join("run_report.json")).unwrap();
        serde_json::from_str(&report).unwrap()
    }
}

impl Drop for Device {
    fn drop(&mut self) {
        // A failed test leaves no process behind.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Lets a live device serve a few frames (a merge handed over is installed before the next
/// frame of its 10 fps camera).
fn settle() {
    std::thread::sleep(Duration::from_secs(5));
}

/// The fleet end to end on loopback: a `livedepth fleet` process and three device processes
/// on live 10 fps test cameras, all connected to a Zenoh router the test runs. Two devices adapt and
/// share (`run --adapt --zenoh-pull-weights`), one only pulls (`run --zenoh-pull-weights`).
/// Once both adapters shared, the fleet merges and republishes, and the merge reaches all three:
/// the adapters continue from it and the puller's engine serves it. The puller is then stopped
/// and started again: it asks the fleet for its newest merge at start and serves it too.
#[test]
fn a_fleet_of_three_devices_gets_the_merge_and_a_restarted_device_catches_up() {
    let Some(model) = common::shared(KITTI_MODEL) else { return };
    let _one_at_a_time = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let config_path = common::kitchen_config_on_test_camera(dir.path(), &[TEN_FPS_CAMERA]);

    // The fleet process listens; the devices and the test connect to it.
    let port = free_port();
    let endpoint = format!("tcp/127.0.0.1:{port}");
    let fleet_log = dir.path().join("fleet.log");
    let fleet = Command::new(env!("CARGO_BIN_EXE_livedepth"))
        .current_dir(common::repo_root())
        .args(["fleet", "--model", model.to_str().unwrap(), "--fleet", "fleet3"])
        .args(["--zenoh-listen", &endpoint, "--min-devices", "2", "--rounds", "0"])
        .args(["--out", dir.path().join("fleet").to_str().unwrap()])
        .stderr(std::fs::File::create(&fleet_log).unwrap())
        .spawn()
        .unwrap();
    let mut fleet = KillOnDrop(fleet);
    let listening = Instant::now() + Duration::from_secs(120);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < listening, "the fleet process never listened");
        std::thread::sleep(Duration::from_millis(100));
    }
    let session = common::connecting_peer(&endpoint);
    let merges = session.declare_subscriber("livedepth/fleet3/weights/merged").wait().unwrap();
    let at = (config_path.as_path(), dir.path(), endpoint.as_str());
    let mut car_a = Device::start("car-a", at.0, at.1, at.2, &["--adapt"]);
    let mut car_b = Device::start("car-b", at.0, at.1, at.2, &["--adapt"]);
    let mut viewer = Device::start("viewer", at.0, at.1, at.2, &[]);

    // A hang guard, not a timing: three live devices and the fleet share this machine's cores.
    let deadline = Instant::now() + Duration::from_secs(900);
    let merge = loop {
        let log = || std::fs::read_to_string(&fleet_log).unwrap_or_default();
        assert!(Instant::now() < deadline, "no merge was republished; the fleet:\n{}", log());
        assert!(fleet.0.try_wait().unwrap().is_none(), "the fleet ended early:\n{}", log());
        if let Some(sample) = merges.recv_timeout(Duration::from_millis(200)).unwrap() {
            break sample.payload().to_bytes().into_owned();
        }
    };
    let merge = livedepth::fleet::decode_weights(&merge, "merged").unwrap();
    println!("merge of {} steps", merge.accepted_steps);
    car_a.wait_for("continuing from the merge", deadline);
    car_b.wait_for("continuing from the merge", deadline);
    viewer.wait_for("installing the merge", deadline);

    // Restarted after the merge: it catches up from the fleet's answer.
    settle();
    let first_run = viewer.stop();
    drop(viewer);
    let mut restarted = Device::start("viewer-again", at.0, at.1, at.2, &[]);
    restarted.wait_for("installing the newest merge the fleet holds (catching up)", deadline);
    settle();
    let second_run = restarted.stop();
    for (name, report) in [("viewer", &first_run), ("viewer-again", &second_run)] {
        let swaps = report["weight_swaps"]["swaps"].as_u64().unwrap_or(0);
        assert!(swaps >= 1, "{name} served the merge: {}", report["weight_swaps"]);
    }
    for mut car in [car_a, car_b] {
        let out = car.out.clone();
        car.stop();
        let adapt: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(out.join(livedepth::app::replay::ADAPT_REPORT_FILE)).unwrap(),
        )
        .unwrap();
        let adopted = adapt["fleet_merges_adopted"].as_u64().unwrap_or(0);
        assert!(adopted >= 1, "{}: {adapt}", out.display());
    }
    drop(fleet);
}

/// A child process killed when the test ends, however it ends.
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `livedepth fleet --merge-checkpoints` (offline, no Zenoh): two adapter checkpoints of our
/// base model, written by `eval --adapt --checkpoint` on two halves of a rendered drive, merge
/// into the accepted-steps-weighted average of their changes; the base, each device and the
/// merge are scored on the held-out frames; a file that is not an adapter checkpoint is refused,
/// naming it.
#[test]
fn an_offline_merge_weights_each_devices_change_by_its_steps_and_scores_all() {
    let _one_at_a_time = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    use livedepth::model::checkpoint::Checkpoint;
    let dir = tempfile::tempdir().unwrap();
    let drive = common::rendered_drive(dir.path(), 24, 6157);
    let dataset = format!("kitti:{}", drive.display());
    let base = common::repo_root().join(livedepth::app::demo::BASE_MODEL_DIR);
    let base_arg = base.to_str().unwrap();
    let mut checkpoints = Vec::new();
    for (device, frames) in [("car-a", "0..12"), ("car-b", "12..24")] {
        let checkpoint = dir.path().join(format!("{device}.safetensors"));
        let output = common::livedepth(&[
            "eval",
            "--quiet",
            "--dataset",
            &dataset,
            "--model",
            base_arg,
            "--width",
            "320",
            "--height",
            "96",
            "--frames",
            frames,
            "--adapt",
            "--checkpoint",
            checkpoint.to_str().unwrap(),
        ]);
        assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
        checkpoints.push(checkpoint);
    }
    let out = dir.path().join("fleet");
    let merge = |files: &[&str]| {
        let mut args = vec!["fleet", "--model", base_arg, "--validate", &dataset, "--frames"];
        args.extend(["24", "--width", "320", "--height", "96", "--out", out.to_str().unwrap()]);
        args.push("--merge-checkpoints");
        args.extend_from_slice(files);
        common::livedepth(&args)
    };
    let files: Vec<&str> = checkpoints.iter().map(|p| p.to_str().unwrap()).collect();
    let output = merge(&files);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("fleet_report.json")).unwrap())
            .unwrap();
    println!("{}", String::from_utf8_lossy(&output.stdout));
    let scores = report["device_scores"].as_array().unwrap();
    assert_eq!(scores.len(), 2, "{report}");
    let steps: Vec<f64> = scores.iter().map(|d| d["accepted_steps"].as_f64().unwrap()).collect();
    assert!(scores.iter().all(|d| d["abs_rel"].as_f64().is_some_and(f64::is_finite)));
    let round = &report["rounds"][0];
    assert!(round["merged_abs_rel"].as_f64().is_some_and(f64::is_finite), "{round}");
    assert!(round["base_abs_rel"].as_f64().is_some_and(f64::is_finite), "{round}");

    // The merge is base + Σ steps_i (device_i − base) / Σ steps_i, variable by variable.
    let read = |path: std::path::PathBuf| Checkpoint::read(&path).unwrap();
    let merged = read(out.join("merged-round-1.safetensors"));
    let devices =
        [read(out.join("device-car-a.safetensors")), read(out.join("device-car-b.safetensors"))];
    let base_net = livedepth::model::network::DepthNetwork::load(
        &base,
        livedepth::model::Arch::RtMonoDepthS,
        tch::Device::Cpu,
    )
    .unwrap();
    let base_ckpt =
        livedepth::model::network::var_store_checkpoint(base_net.var_store(), &base, &[]).unwrap();
    // Devices without accepted steps count equally.
    let weights = if steps.iter().all(|&s| s == 0.0) { vec![1.0; 2] } else { steps.clone() };
    let total: f64 = weights.iter().sum();
    let mut changed = 0;
    for (name, b) in &base_ckpt.tensors {
        for (j, &v) in b.values.iter().enumerate().step_by(97) {
            let expected = f64::from(v)
                + (0..2)
                    .map(|i| weights[i] * f64::from(devices[i].tensors[name].values[j] - v))
                    .sum::<f64>()
                    / total;
            let found = f64::from(merged.tensors[name].values[j]);
            assert!((found - expected).abs() < 1e-5, "{name}[{j}]: {found} against {expected}");
            changed += usize::from((found - f64::from(v)).abs() > 1e-9);
        }
    }
    assert!(changed > 0, "the merge moved no sampled weight away from the base");

    let refused = merge(&[base.join("depth.safetensors").to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success());
    assert!(
        stderr.contains("--merge-checkpoints") && stderr.contains("not an adapter checkpoint"),
        "{stderr}"
    );
}
