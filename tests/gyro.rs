//! `eval --adapt --gyro` and `run --adapt --gyro`: the camera's orientation starts the pose
//! refinement's rotations. On real kitchen frames, with the dataset's poses standing in for a
//! gyro, the refined rotation is far closer to the truth than the pose network's start; a live
//! run hands every frame's orientation to its adapter; bad input is refused naming the flag,
//! the file and the frame. A ROS 2 bag's IMU topic (written by mcap-ros2-support, not by us)
//! gives the same orientations on the frames' clock, in camera axes.

mod common;
mod model_support;

use std::path::Path;

/// Mean of a diagnosis CSV column over the rows that have a value.
fn column_mean(csv: &Path, name: &str) -> f64 {
    let text = std::fs::read_to_string(csv).expect("diagnosis CSV");
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().expect("a header").split(',').collect();
    let at = header.iter().position(|h| *h == name).expect("the column");
    let values: Vec<f64> = lines
        .filter_map(|l| l.split(',').nth(at)?.parse::<f64>().ok())
        .filter(|v| v.is_finite())
        .collect();
    assert!(values.len() >= 5, "{name}: only {} values", values.len());
    values.iter().sum::<f64>() / values.len() as f64
}

#[cfg(feature = "torch")]
#[test]
fn a_gyro_starts_the_refinement_at_the_true_rotation_on_the_kitchen() {
    use livedepth::app::adapt::{AdaptOptions, evaluate_adapt};
    use livedepth::app::gyro::GyroSource;
    let (Some(model), Some(kitchen)) =
        (common::shared("models/rtmonodepth_s/m_640x192"), common::shared("data/kitchen"))
    else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let options = common::eval_options(
        format!("kitchen:{}", kitchen.display()),
        model,
        (128, 96),
        livedepth::source::dataset::FrameSelection::parse("0..40").unwrap(),
    );
    let refined_rotation_error = |gyro: Option<GyroSource>, name: &str| {
        let csv = dir.path().join(name);
        let adapt = AdaptOptions {
            print_every: 0,
            diagnose: Some(csv.clone()),
            gyro,
            ..Default::default()
        };
        let (_, stats) = evaluate_adapt(&options, &adapt).expect("lock-step evaluation");
        // Every triplet carries the prior with a gyro (all its frames have an orientation),
        // none without.
        let expected = if adapt.gyro.is_some() { stats.triplets } else { 0 };
        assert!(stats.triplets > 0 && stats.rotation_priors == expected, "{stats:?}");
        column_mean(&csv, "refined_rotation_error_deg")
    };
    let without = refined_rotation_error(None, "without.csv");
    let with = refined_rotation_error(Some(GyroSource::GroundTruth), "with.csv");
    println!(
        "refined rotation error against the ground truth: {without:.2} deg without, {with:.2} with the gyro"
    );
    assert!(with < 0.5 * without, "{with:.2} deg with the gyro against {without:.2} without");
}

#[test]
fn gyro_input_that_cannot_be_used_is_refused_naming_the_flag() {
    let (Some(model), Some(kitchen)) =
        (common::shared("models/rtmonodepth_s/m_640x192"), common::shared("data/kitchen"))
    else {
        return;
    };
    let dataset = format!("kitchen:{}", kitchen.display());
    let eval = |extra: &[&str]| {
        let mut args = vec!["eval", "--quiet", "--dataset", &dataset, "--model"];
        args.push(model.to_str().expect("utf-8"));
        args.extend_from_slice(&["--frames", "0..3"]);
        args.extend_from_slice(extra);
        let output = common::livedepth(&args);
        assert!(!output.status.success(), "{extra:?} must be refused");
        String::from_utf8_lossy(&output.stderr).into_owned()
    };
    let stderr = eval(&["--gyro", "ground-truth"]);
    assert!(stderr.contains("--gyro") && stderr.contains("add --adapt"), "{stderr}");
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("attitude.csv");
    std::fs::write(&file, "time,qw,qx,qy,qz\n0.0,1,0,0,0\n0.1,1,0,0\n").unwrap();
    let stderr = eval(&["--adapt", "--gyro", file.to_str().unwrap()]);
    let at = format!("{}:3:", file.display());
    assert!(stderr.contains(&at) && stderr.contains("expected 5"), "{stderr}");
}

/// A live run over real kitchen frames: with `--gyro ground-truth` every triplet the adapter
/// forms carries the rotation prior; with a gyro file whose times end before the stream, the
/// run stops at the first frame after the file, naming the file and the frame.
/// The replay is paced at 5 fps (40 frames, 8 s), so that the adapter, built while the first
/// frames play, sees frames to form triplets from; unpaced, 24 frames passed in half a second
/// on a loaded machine before it was ready.
#[cfg(feature = "torch")]
#[test]
fn a_live_run_hands_each_frames_orientation_to_the_adapter() {
    use livedepth::app::adapt::AdaptOptions;
    use livedepth::app::gyro::GyroSource;
    let (Some(model), Some(kitchen)) =
        (common::shared("models/rtmonodepth_s/m_640x192"), common::shared("data/kitchen"))
    else {
        return;
    };
    let live = |gyro: GyroSource, out: &Path| {
        let text = format!(
            "[source]\nuri = \"kitchen:{}\"\nfps = 5.0\n[network]\narch = \"rtmonodepth-s\"\nwidth = 128\n\
             height = 96\nmodel = \"{}\"\n[pipeline]\npolicy = \"lossless\"\n\
             stats_interval_s = 60.0\n[outputs]\ndir = \"{}\"\ndepth_png = false\nvideo = false\n\
             metrics = false\n",
            kitchen.display(),
            model.display(),
            out.display()
        );
        let config = livedepth::config::Config::from_toml_str(&text, "gyro-test.toml").unwrap();
        let mut adapt = AdaptOptions { print_every: 0, gyro: Some(gyro), ..Default::default() };
        adapt.config.publish_every = 1;
        let options = livedepth::app::live::LiveOptions {
            config,
            model: None,
            max_frames: Some(40),
            adapt: Some(adapt),
        };
        livedepth::app::live::run_live(&options)
    };
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("ground-truth");
    live(GyroSource::GroundTruth, &out).expect("run --adapt --gyro ground-truth");
    let report = std::fs::read_to_string(out.join("adapt_report.json")).expect("adapt report");
    let stats: serde_json::Value = serde_json::from_str(&report).unwrap();
    let (triplets, priors) = (stats["triplets"].as_u64(), stats["rotation_priors"].as_u64());
    assert!(triplets.is_some_and(|t| t > 0) && priors == triplets, "{stats}");

    // The kitchen's clock starts at its first frame's timestamp; a track that ends there
    // covers the first frame only.
    let first = livedepth::source::dataset::open_dataset(&format!("kitchen:{}", kitchen.display()))
        .and_then(|d| d.frame(0))
        .expect("kitchen frame 0")
        .timestamp;
    let file = dir.path().join("attitude.csv");
    std::fs::write(&file, format!("time,qw,qx,qy,qz\n{},1,0,0,0\n{first},1,0,0,0\n", first - 1.0))
        .unwrap();
    let error = live(GyroSource::File(file.clone()), &dir.path().join("short"))
        .expect_err("frames after the gyro file's end must stop the run")
        .to_string();
    assert!(error.contains(&file.display().to_string()) && error.contains("frame 1"), "{error}");
}

/// A ROS 2 bag of the first `n` real kitchen frames with an IMU topic carrying the orientation
/// an IMU in ROS body axes would report for the ground-truth poses (tests/python/write_ros2_bag.py).
fn kitchen_bag_with_imu(kitchen: &Path, dir: &Path, n: usize) -> std::path::PathBuf {
    let bag = dir.join("kitchen_imu.mcap");
    let (bag_arg, kitchen_arg, n_arg) =
        (bag.to_str().unwrap(), kitchen.to_str().unwrap(), n.to_string());
    model_support::run_python(
        &common::python(),
        "write_ros2_bag.py",
        &["imu", bag_arg, kitchen_arg, &n_arg],
    );
    bag
}

/// `--gyro mcap:TOPIC`: each replayed frame reads the IMU's orientation at its stamp, turned
/// into the camera's axes, which is the kitchen's ground-truth camera orientation; the clock
/// starts at the first image, not at the IMU's first sample 10 ms before it. Topics that
/// cannot serve are refused naming the topic and what it carries.
#[test]
fn a_bags_imu_topic_gives_each_frame_the_cameras_orientation() {
    use livedepth::app::gyro_bag::{ImuTopic, read_track};
    use livedepth::source::Source;
    let Some(kitchen) = common::shared("data/kitchen") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let frames = 12;
    let bag = kitchen_bag_with_imu(&kitchen, dir.path(), frames);
    let uri = format!("mcap://{}?topic=/camera/image_raw/compressed", bag.display());
    let track = read_track(&uri, &ImuTopic::parse("/imu/data").unwrap()).expect("the IMU track");
    let dataset =
        livedepth::source::dataset::open_dataset(&format!("kitchen:{}", kitchen.display()))
            .unwrap();
    let mut images = livedepth::source::bag::BagSource::open(&uri).unwrap();
    // The writer and we turn the pose files' rotation matrices (printed to a few decimals, so
    // not exactly orthonormal) into quaternions differently: 3e-5 rad apart. A clock 10 ms off
    // (the IMU's first sample taken as the origin) is 100 times that on the kitchen's turns.
    let tolerance = 2e-4;
    let (mut read, mut shifted_worst) = (0, 0f64);
    while let Some(mut frame) = images.next_frame().unwrap() {
        let truth = dataset.frame(frame.index as usize).unwrap().gt_pose.unwrap().rotation;
        let camera = track.at(&frame, "the bag").unwrap();
        let error = camera.angle_to(&truth);
        assert!(error < tolerance, "frame {}: {error} rad from the ground truth", frame.index);
        frame.timestamp += 0.010;
        if let Ok(shifted) = track.at(&frame, "the bag") {
            shifted_worst = shifted_worst.max(shifted.angle_to(&truth));
        }
        read += 1;
    }
    assert_eq!(read, frames);
    assert!(shifted_worst > tolerance, "a 10 ms clock error would go unseen: {shifted_worst}");

    let refusal = |source: &str, spec: &str| {
        let imu = ImuTopic::parse(spec).unwrap();
        read_track(source, &imu).expect_err(spec).to_string()
    };
    let raw = refusal(&uri, "/imu/raw");
    assert!(raw.contains("/imu/raw") && raw.contains("no orientation"), "{raw}");
    let info = refusal(&uri, "/camera/camera_info");
    assert!(info.contains("sensor_msgs/msg/CameraInfo") && info.contains("Imu"), "{info}");
    let missing = refusal(&uri, "/imu/missing");
    assert!(missing.contains("/imu/data, /imu/raw"), "{missing}");
    let not_a_bag = refusal(&format!("kitchen:{}", kitchen.display()), "/imu/data");
    assert!(not_a_bag.contains("--source mcap://"), "{not_a_bag}");
}

/// `run --adapt --source mcap://BAG --gyro mcap:/imu/data` over real kitchen frames: every
/// triplet the adapter forms carries the IMU's rotation prior; `eval` refuses the flag.
#[cfg(feature = "torch")]
#[test]
fn a_live_bag_replay_hands_the_imus_orientation_to_the_adapter() {
    use livedepth::app::adapt::AdaptOptions;
    use livedepth::app::gyro::GyroSource;
    let (Some(model), Some(kitchen)) =
        (common::shared("models/rtmonodepth_s/m_640x192"), common::shared("data/kitchen"))
    else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let frames = 40;
    let bag = kitchen_bag_with_imu(&kitchen, dir.path(), frames);
    let out = dir.path().join("run");
    // Paced at 5 fps (8 s), as the kitchen live test, so that the adapter is ready in time.
    let text = format!(
        "[source]\nuri = \"mcap://{}?topic=/camera/image_raw/compressed\"\nfps = 5.0\n\
         [network]\narch = \"rtmonodepth-s\"\nwidth = 128\nheight = 96\nmodel = \"{}\"\n\
         [pipeline]\npolicy = \"lossless\"\nstats_interval_s = 60.0\n[outputs]\ndir = \"{}\"\n\
         depth_png = false\nvideo = false\nmetrics = false\n",
        bag.display(),
        model.display(),
        out.display()
    );
    let config = livedepth::config::Config::from_toml_str(&text, "bag-gyro.toml").unwrap();
    let mut adapt = AdaptOptions {
        print_every: 0,
        gyro: Some(GyroSource::from_flag("mcap:/imu/data")),
        ..Default::default()
    };
    adapt.config.publish_every = 1;
    let options = livedepth::app::live::LiveOptions {
        config,
        model: None,
        max_frames: Some(frames),
        adapt: Some(adapt),
    };
    livedepth::app::live::run_live(&options).expect("run --adapt --gyro mcap:/imu/data");
    let report = std::fs::read_to_string(out.join("adapt_report.json")).expect("adapt report");
    let stats: serde_json::Value = serde_json::from_str(&report).unwrap();
    let (triplets, priors) = (stats["triplets"].as_u64(), stats["rotation_priors"].as_u64());
    assert!(triplets.is_some_and(|t| t > 0) && priors == triplets, "{stats}");

    let output = common::livedepth(&[
        "eval",
        "--quiet",
        "--dataset",
        &format!("kitchen:{}", kitchen.display()),
        "--model",
        model.to_str().unwrap(),
        "--frames",
        "0..3",
        "--adapt",
        "--gyro",
        "mcap:/imu/data",
    ]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success() && stderr.contains("--source mcap://FILE"), "{stderr}");
}
