//! A live run killed with SIGKILL leaves a playable depth video (issue #13): `livedepth run` on a
//! 30 fps `test://` camera with the committed base model records `depth.mp4` as fragmented MP4
//! in place (0.5 s fragments); after at least 300 frames (10 s of camera time, counted from the depth PNGs the run
//! writes, not from a clock) the process is killed and the video must decode to all but the last
//! fragment's frames. No timing is asserted: the kill waits for the frames, however long that
//! takes on the machine.
#![cfg(feature = "torch")]

mod common;

use livedepth::sink::video::RECORDING_FRAGMENT_MS;
use livedepth::source::Source;
use livedepth::source::gst::{GstOptions, GstSource};
use std::path::Path;
use std::time::{Duration, Instant};

/// Camera frames before the kill: 10 s at 30 fps.
const FRAMES_BEFORE_KILL: usize = 300;
/// At most this many recorded frames may be lost: one unfinished fragment at 30 fps plus the
/// frames still inside the encoding pipeline (the recording's filesink writes unbuffered, so
/// nothing waits in user space between the muxer and the file).
const MAY_LOSE: usize = (30 * RECORDING_FRAGMENT_MS as usize).div_ceil(1000) + 10;

fn count_pngs(dir: &Path) -> usize {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .filter(|e| e.path().extension().is_some_and(|x| x == "png"))
                .count()
        })
        .unwrap_or(0)
}

#[test]
fn sigkill_during_run_leaves_a_playable_depth_video() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    let config = dir.path().join("camera.toml");
    let model = common::repo_root().join("models/base_320x96");
    std::fs::write(
        &config,
        format!(
            r#"
[source]
uri = "test://ball"
[network]
arch = "rtmonodepth-s"
width = 320
height = 96
model = "{}"
[pipeline]
queue_size = 2
policy = "auto"
stats_interval_s = 2.0
[outputs]
dir = "{}"
depth_png = true
colour_png = false
video = true
pointcloud_every = 0
metrics = false
"#,
            model.display(),
            out.display()
        ),
    )
    .unwrap();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_livedepth"))
        .args(["run", "--config"])
        .arg(&config)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let depth_pngs = out.join("depth");
    let started = Instant::now();
    while count_pngs(&depth_pngs) < FRAMES_BEFORE_KILL {
        if let Ok(Some(status)) = child.try_wait() {
            panic!("the run ended ({status}) before {FRAMES_BEFORE_KILL} frames");
        }
        assert!(started.elapsed() < Duration::from_secs(600), "no progress in 10 minutes");
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let recorded = count_pngs(&depth_pngs);

    let video = out.join("depth.mp4");
    assert!(video.is_file(), "no depth.mp4 under its final name after the kill");
    let options =
        GstOptions { live: Some(false), timeout: Duration::from_secs(60), ..Default::default() };
    let mut source = GstSource::open(&format!("file://{}", video.display()), &options).unwrap();
    let mut decoded = Vec::new();
    while let Some(frame) = source.next_frame().unwrap() {
        decoded.push(frame.timestamp);
    }
    println!(
        "killed after {recorded} frames; depth.mp4 ({} bytes) decodes to {} frames spanning {:.2} s",
        std::fs::metadata(&video).unwrap().len(),
        decoded.len(),
        decoded.last().unwrap_or(&0.0) - decoded.first().unwrap_or(&0.0)
    );
    assert!(
        decoded.len() + MAY_LOSE >= recorded,
        "{} of {recorded} frames decode: more than the last fragment was lost",
        decoded.len()
    );
    assert!(decoded.len() >= 9 * 30, "{} frames is less than 9 s at 30 fps", decoded.len());
}
