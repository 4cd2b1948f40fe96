//! `eval --adapt --gyro` and `run --adapt --gyro`: the camera's orientation starts the pose
//! refinement's rotations. On real kitchen frames, with the dataset's poses standing in for a
//! gyro, the refined rotation is far closer to the truth than the pose network's start; a live
//! run hands every frame's orientation to its adapter; bad input is refused naming the flag,
//! the file and the frame.

mod common;

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
