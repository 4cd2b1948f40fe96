//! The paced replay that `bench live-adapt` feeds the live path with
//! (`livedepth::app::replay::paced_replay_uri`: the file decoded through GStreamer with an
//! `identity sync=true` releasing frames at their timestamps) gives exactly the frames of the
//! plain `file://` replay, in the same order, with the same timestamps. (The pacing itself is a
//! timing and is not asserted.)
#![cfg(feature = "torch")]

use livedepth::app::replay::paced_replay_uri;
use livedepth::sink::video::Mp4Writer;
use livedepth::source::Source;
use livedepth::source::gst::{GstOptions, GstSource};
use livedepth::synth::{RenderConfig, Renderer};
use std::time::Duration;

fn decode_all(uri: &str) -> Vec<(f64, Vec<u8>)> {
    let options =
        GstOptions { live: Some(false), timeout: Duration::from_secs(20), ..Default::default() };
    let mut source = GstSource::open(uri, &options).unwrap();
    let mut frames = Vec::new();
    while let Some(frame) = source.next_frame().unwrap() {
        frames.push((frame.timestamp, frame.rgb.data));
    }
    frames
}

#[test]
fn paced_replay_gives_the_same_frames_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let config = RenderConfig {
        width: 128,
        height: 64,
        frames: 12,
        fps: 30.0,
        supersample: 1,
        ..Default::default()
    };
    let renderer = Renderer::new(&config).unwrap();
    // A path with a space: the launch line must quote it.
    let path = dir.path().join("paced drive.mp4");
    let mut writer = Mp4Writer::create(&path, config.width, config.height, config.fps).unwrap();
    for i in 0..renderer.len() {
        let frame = renderer.render_frame(i).unwrap();
        writer.push(&frame.rgb, frame.timestamp).unwrap();
    }
    writer.finish().unwrap();

    let plain = decode_all(&format!("file://{}", path.display()));
    let paced = decode_all(&paced_replay_uri(&path));
    assert_eq!(plain.len(), config.frames, "every frame decodes");
    assert_eq!(paced.len(), plain.len(), "the paced replay loses no frame");
    for (i, (a, b)) in plain.iter().zip(&paced).enumerate() {
        assert_eq!(a.1, b.1, "frame {i}: same pixels in the same order");
        assert!((a.0 - b.0).abs() < 1e-6, "frame {i}: timestamps {} vs {}", a.0, b.0);
    }
    assert!(paced.windows(2).all(|w| w[1].0 > w[0].0), "timestamps increase");
}
