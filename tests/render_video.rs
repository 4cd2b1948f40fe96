//! The synthetic renderer's frames survive an H.264 round trip: encoded with `Mp4Writer`
//! (appsrc → x264enc → mp4mux), decoded through the `file://` GStreamer source, every frame comes
//! back, in order, close to what was rendered.

mod common;

use common::psnr;
use livedepth::sink::video::Mp4Writer;
use livedepth::source::Source;
use livedepth::source::gst::{GstOptions, GstSource};
use livedepth::synth::{RenderConfig, Renderer};
use std::time::Duration;

#[test]
fn rendered_drive_round_trips_through_mp4_and_the_file_source() {
    let dir = tempfile::tempdir().unwrap();
    let config =
        RenderConfig { width: 160, height: 96, frames: 24, supersample: 1, ..Default::default() };
    let renderer = Renderer::new(&config).unwrap();
    let path = dir.path().join("drive.mp4");
    let mut writer = Mp4Writer::create(&path, config.width, config.height, config.fps).unwrap();
    let mut rendered = Vec::new();
    for i in 0..renderer.len() {
        let frame = renderer.render_frame(i).unwrap();
        writer.push(&frame.rgb, frame.timestamp).unwrap();
        rendered.push(frame.rgb);
    }
    writer.finish().unwrap();

    let options = GstOptions { timeout: Duration::from_secs(20), ..Default::default() };
    let mut source = GstSource::open(&format!("file://{}", path.display()), &options).unwrap();
    let mut decoded = Vec::new();
    while let Some(frame) = source.next_frame().unwrap() {
        assert_eq!((frame.rgb.width, frame.rgb.height), (config.width, config.height));
        decoded.push(frame.rgb);
    }
    assert_eq!(decoded.len(), rendered.len(), "every rendered frame decodes back");
    for (i, (original, back)) in rendered.iter().zip(&decoded).enumerate() {
        let own = psnr(original, back);
        assert!(own > 28.0, "frame {i}: PSNR {own:.1} dB is too low for a faithful encode");
        // In order: each decoded frame matches its own original better than the next one.
        if let Some(next) = rendered.get(i + 1) {
            assert!(own > psnr(next, back), "frame {i} decoded out of order");
        }
    }
}
