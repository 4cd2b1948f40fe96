//! End to end through the live path: a rendered drive encoded to mp4 is replayed by
//! `livedepth run` (GStreamer source → preprocess → depth → outputs) with the real
//! RT-MonoDepth-S weights, losing no frame; and the same drive as a dataset yields per-frame
//! metrics against its exact depth.
#![cfg(feature = "torch")]

mod common;

use livedepth::app::live::{LiveOptions, run_live};
use livedepth::config::Config;
use livedepth::sink::depth_png::read_depth_png;
use livedepth::sink::video::Mp4Writer;
use livedepth::source::Source;
use livedepth::source::gst::{GstOptions, GstSource};
use livedepth::synth::{RenderConfig, Renderer, write_dataset_with};
use std::path::Path;

const FRAMES: usize = 8;

fn config(uri: &str, model: &Path, out: &Path) -> Config {
    let text = format!(
        r#"
[source]
uri = "{uri}"
fps = 10.0
[camera]
fx = 185.6
fy = 184.32
cx = 160.0
cy = 48.0
width = 320
height = 96
[network]
arch = "rtmonodepth-s"
width = 320
height = 96
model = "{model}"
[pipeline]
queue_size = 2
policy = "auto"
stats_interval_s = 1.0
[outputs]
dir = "{out}"
depth_png = true
colour_png = true
video = true
pointcloud_every = 4
metrics = true
"#,
        model = model.display(),
        out = out.display()
    );
    Config::from_toml_str(&text, Path::new("<test>")).unwrap()
}

#[test]
fn replayed_drive_gets_depth_for_every_frame_and_dataset_gets_metrics() {
    let Some(model) = common::shared("models/rtmonodepth_s/m_640x192") else { return };
    let dir = tempfile::tempdir().unwrap();
    let render = RenderConfig {
        width: 320,
        height: 96,
        frames: FRAMES,
        supersample: 1,
        ..Default::default()
    };
    let renderer = Renderer::new(&render).unwrap();
    let video = dir.path().join("drive.mp4");
    let dataset = dir.path().join("drive");
    let mut writer = Mp4Writer::create(&video, 320, 96, render.fps).unwrap();
    write_dataset_with(&renderer, &dataset, false, |f| {
        writer.push(&f.rgb, f.timestamp)?;
        Ok::<(), livedepth::Error>(())
    })
    .unwrap();
    writer.finish().unwrap();

    // The mp4 through GStreamer.
    let out = dir.path().join("live");
    let uri = format!("file://{}", video.display());
    let report = run_live(&LiveOptions {
        config: config(&uri, &model, &out),
        model: None,
        max_frames: None,
        adapt: None,
    })
    .unwrap();
    assert_eq!(report.frames_read, FRAMES as u64);
    assert_eq!(report.frames_delivered, FRAMES as u64, "replay is lossless");
    assert_eq!(report.frames_dropped, 0);
    for name in ["preprocess", "depth", "outputs"] {
        assert_eq!(report.node(name).map(|n| n.processed), Some(FRAMES as u64), "stage {name}");
    }
    for i in 0..FRAMES {
        let depth = read_depth_png(&out.join(format!("depth/{i:06}.png"))).unwrap();
        assert_eq!((depth.width, depth.height), (320, 96));
        assert!(
            depth.data.iter().all(|&d| (0.1..=100.0).contains(&d)),
            "depth within the net's range"
        );
        assert!(out.join(format!("colour/{i:06}.png")).exists());
    }
    assert!(
        out.join("pointcloud/000000.ply").exists() && out.join("pointcloud/000004.ply").exists()
    );
    let run_report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("run_report.json")).unwrap())
            .unwrap();
    assert_eq!(run_report["frames_delivered"], FRAMES as u64);
    assert_eq!(run_report["preprocess_path"], "cpu-lanczos", "libtorch runs on the CPU here");
    // The colourised video: the input above its depth, every frame.
    let mut decoded = GstSource::open(
        &format!("file://{}", out.join("depth.mp4").display()),
        &GstOptions::default(),
    )
    .unwrap();
    let mut count = 0;
    while let Some(frame) = decoded.next_frame().unwrap() {
        assert_eq!((frame.rgb.width, frame.rgb.height), (320, 192));
        count += 1;
    }
    assert_eq!(count, FRAMES);

    // The same drive as a dataset: metrics against the exact depth.
    let out = dir.path().join("dataset");
    let uri = format!("kitti:{}", dataset.display());
    run_live(&LiveOptions {
        config: config(&uri, &model, &out),
        model: None,
        max_frames: Some(5),
        adapt: None,
    })
    .unwrap();
    let csv = std::fs::read_to_string(out.join("metrics.csv")).unwrap();
    let rows: Vec<&str> = csv.lines().skip(1).collect();
    assert_eq!(rows.len(), 5, "one metrics row per frame with ground truth");
    for row in rows {
        let abs_rel: f64 = row.split(',').nth(1).unwrap().parse().unwrap();
        assert!(abs_rel > 0.0 && abs_rel < 0.6, "abs_rel {abs_rel} of a trained model on a street");
    }
}

/// An adapter that gets no CPU of its own still adapts: the whole run on one core, the adapter
/// under `SCHED_IDLE`, and an unpaced test source that keeps the live path busy. Once the adapter
/// has starved for 10 s the depth stage yields to it (`--adapt-min-share`,
/// `livedepth::app::adapt_share`), so it builds its networks and steps. The run is stopped with
/// Ctrl-C once the adapter's status line counts a step.
#[test]
fn a_starving_adapter_gets_time_from_the_live_path() {
    use std::process::Command;
    use std::time::{Duration, Instant};
    let Some(_) = common::shared("models/rtmonodepth_s/m_640x192") else { return };
    let dir = tempfile::tempdir().unwrap();
    let unpaced = "uri = \"gst://videotestsrc is-live=false pattern=ball ! \
                   video/x-raw,width=320,height=240 ! videoconvert ! appsink name=sink\"";
    let config = common::kitchen_config_on_test_camera(
        dir.path(),
        &[("uri = \"test://ball\"", unpaced), ("policy = \"lossless\"", "policy = \"auto\"")],
    );
    let out = dir.path().join("out");
    let (mut child, log) = common::spawn_collecting_stderr(
        Command::new("taskset")
            .args(["-c", "0", env!("CARGO_BIN_EXE_livedepth")])
            .current_dir(common::repo_root())
            .env(livedepth::app::priority::ADAPT_PRIORITY_ENV, "idle")
            .args(["run", "--config", config.to_str().unwrap(), "--frames", "1000000", "--adapt"])
            .args(["--out", out.to_str().unwrap()]),
    );
    let stepped = |log: &str| {
        log.lines()
            .filter_map(|l| l.split("adapt: ").nth(1)?.split(" steps (").next())
            .filter_map(|n| n.parse::<u64>().ok())
            .any(|n| n >= 1)
    };
    // A hang guard, not a timing.
    let deadline = Instant::now() + Duration::from_secs(600);
    while !stepped(&log.lock().unwrap()) {
        let ended = child.try_wait().unwrap();
        assert!(
            ended.is_none() && Instant::now() < deadline,
            "the starving adapter never stepped (ended: {ended:?}):\n{}",
            log.lock().unwrap()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    Command::new("kill").args(["-INT", &child.id().to_string()]).status().unwrap();
    let status = child.wait().unwrap();
    std::thread::sleep(Duration::from_millis(200));
    let log = log.lock().unwrap().clone();
    assert!(status.success(), "{status}\n{log}");
    let report = std::fs::read_to_string(out.join(livedepth::app::replay::ADAPT_REPORT_FILE));
    let report: serde_json::Value = serde_json::from_str(&report.unwrap()).unwrap();
    assert!(report["steps"].as_u64().unwrap_or(0) >= 1, "{report}\n{log}");
    println!("{}", log.lines().filter(|l| l.contains("yield")).collect::<Vec<_>>().join("\n"));
}
