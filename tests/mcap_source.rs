//! MCAP recordings as a source (`mcap://FILE?topic=…`), fed with bags written by a writer we do
//! not write ourselves (mcap-ros2-support in the venv, tests/python/write_ros2_bag.py):
//! - a ROS 2 bag of real JPEG frames (the kitchen recording, sensor_msgs/msg/CompressedImage,
//!   CDR) with its camera_info replays through `probe` and `run` with every frame delivered,
//!   the intrinsics read from the bag and the stamps kept;
//! - `run --mcap`'s own recording replays as a source in turn (foxglove.CompressedImage and
//!   RawImage);
//! - sensor_msgs/msg/Image in rgb8, bgr8, rgba8, bgra8, mono8 and yuv422 decode to the pixels
//!   the writer meant;
//! - a missing topic, a topic that is not an image and a cut-off file are errors that name the
//!   topic, the schema or the file.

mod common;
mod model_support;

use model_support::run_python;
use std::path::Path;

fn write_bag(args: &[&str]) -> serde_json::Value {
    let python = common::python();
    let json = run_python(&python, "write_ros2_bag.py", args);
    serde_json::from_str(json.trim()).unwrap()
}

fn probe(uri: &str, out: Option<&Path>) -> std::process::Output {
    let mut args = vec!["probe", "--source", uri, "--frames", "1000"];
    let out_str;
    if let Some(out) = out {
        out_str = out.to_str().unwrap().to_owned();
        args.extend(["--out", &out_str]);
    }
    common::livedepth(&args)
}

fn text(output: &std::process::Output) -> (String, String) {
    (
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn a_ros2_bag_of_real_jpeg_frames_replays_through_probe_and_run_and_so_does_our_recording() {
    let (Some(kitchen), Some(_)) =
        (common::shared("data/kitchen"), common::shared("models/rtmonodepth_s/m_640x192"))
    else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let bag = dir.path().join("kitchen.mcap");
    let frames = 24;
    write_bag(&[
        "compressed",
        bag.to_str().unwrap(),
        kitchen.to_str().unwrap(),
        &frames.to_string(),
    ]);
    let uri = format!("mcap://{}", bag.display());

    let output = probe(&uri, None);
    let (stdout, stderr) = text(&output);
    println!("{stdout}{stderr}");
    assert!(output.status.success());
    assert!(stdout.contains(&format!("frames read: {frames}")), "{stdout}");
    assert!(stdout.contains("frame size:  640x480"), "{stdout}");
    assert!(stdout.contains("fx 585.00 fy 585.00 cx 320.00 cy 240.00"), "{stdout}");
    assert!(stdout.contains(&format!("messages:    {frames} on the topic")), "{stdout}");
    // Header stamps at 30 Hz are kept.
    assert!(stdout.contains("(30.00 fps in stream time)"), "{stdout}");

    let out = dir.path().join("run");
    let recording = dir.path().join("recording.mcap");
    let output = common::livedepth(&[
        "run",
        "--config",
        "configs/kitchen.toml",
        "--source",
        &uri,
        "--out",
        out.to_str().unwrap(),
        "--mcap",
        recording.to_str().unwrap(),
    ]);
    let (_, stderr) = text(&output);
    assert!(output.status.success(), "{stderr}");
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("run_report.json")).unwrap())
            .unwrap();
    assert_eq!(report["frames_delivered"].as_u64(), Some(frames));
    assert_eq!(report["frames_dropped"].as_u64(), Some(0));
    assert_eq!(report["stop_reason"], "end_of_stream");

    // Our own recording is a source too: the camera channel (JPEG) and the colourised depth
    // (raw rgb8), one frame per delivered frame, at the network size.
    for topic in ["/camera/image", "/depth/colour"] {
        let output = probe(&format!("mcap://{}?topic={topic}", recording.display()), None);
        let (stdout, stderr) = text(&output);
        assert!(output.status.success(), "{topic}: {stderr}");
        assert!(stdout.contains(&format!("frames read: {frames}")), "{topic}: {stdout}");
        assert!(stdout.contains("frame size:  128x96"), "{topic}: {stdout}");
    }
}

#[test]
fn raw_ros2_images_decode_to_the_pixels_the_writer_meant() {
    let dir = tempfile::tempdir().unwrap();
    let bag = dir.path().join("raw.mcap");
    let expected = write_bag(&["raw", bag.to_str().unwrap()]);
    let encodings = expected.as_object().unwrap();
    assert_eq!(encodings.len(), 6);
    for (encoding, want) in encodings {
        let out = dir.path().join(encoding);
        let output = probe(&format!("mcap://{}?topic=/raw/{encoding}", bag.display()), Some(&out));
        let (stdout, stderr) = text(&output);
        assert!(output.status.success(), "{encoding}: {stderr}");
        assert!(stdout.contains("frames read: 1"), "{encoding}: {stdout}");
        let got = model_support::load_rgb(&out.join("frame-000000.png"));
        assert_eq!((got.width, got.height), (4, 2), "{encoding}");
        let want: Vec<u8> =
            want.as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as u8).collect();
        let worst = got.data.iter().zip(&want).map(|(a, b)| a.abs_diff(*b)).max().unwrap();
        // yuv422 goes through a colour conversion; the others are exact.
        let tolerance = if encoding == "yuv422" { 1 } else { 0 };
        assert!(worst <= tolerance, "{encoding}: {:?} vs {want:?}", got.data);
    }
    // Without ?topic= a file with several image topics names them.
    let output = probe(&format!("mcap://{}", bag.display()), None);
    let (_, stderr) = text(&output);
    assert!(!output.status.success());
    assert!(stderr.contains("several image topics") && stderr.contains("/raw/mono8"), "{stderr}");
}

#[test]
fn missing_topics_non_images_and_cut_off_files_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let bag = dir.path().join("raw.mcap");
    write_bag(&["raw", bag.to_str().unwrap()]);

    let output = probe(&format!("mcap://{}?topic=/camera/nope", bag.display()), None);
    let (_, stderr) = text(&output);
    assert!(!output.status.success());
    assert!(stderr.contains("no topic `/camera/nope`") && stderr.contains("/raw/rgb8"), "{stderr}");

    let output = probe(&format!("mcap://{}?frames=3", bag.display()), None);
    let (_, stderr) = text(&output);
    assert!(!output.status.success() && stderr.contains("topic="), "{stderr}");

    let output = probe("mcap:///nonexistent/run.mcap", None);
    let (_, stderr) = text(&output);
    assert!(!output.status.success() && stderr.contains("/nonexistent/run.mcap"), "{stderr}");

    // The first half of the file: no summary, and the data stops inside a record.
    let bytes = std::fs::read(&bag).unwrap();
    let cut = dir.path().join("cut.mcap");
    std::fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
    let output = probe(&format!("mcap://{}?topic=/raw/mono8", cut.display()), None);
    let (_, stderr) = text(&output);
    println!("{stderr}");
    assert!(!output.status.success());
    assert!(stderr.contains("cut.mcap") && stderr.contains("cut-off"), "{stderr}");
}

#[test]
fn a_non_image_topic_says_what_it_carries_and_what_was_expected() {
    let Some(kitchen) = common::shared("data/kitchen") else { return };
    let dir = tempfile::tempdir().unwrap();
    let bag = dir.path().join("kitchen.mcap");
    write_bag(&["compressed", bag.to_str().unwrap(), kitchen.to_str().unwrap(), "2"]);
    let output = probe(&format!("mcap://{}?topic=/imu/temperature", bag.display()), None);
    let (_, stderr) = text(&output);
    assert!(!output.status.success());
    assert!(
        stderr.contains("sensor_msgs/msg/Temperature") && stderr.contains("sensor_msgs/msg/Image"),
        "{stderr}"
    );
}
