//! Real GStreamer round trips: frames encoded with `Mp4Writer` and decoded by `GstSource`
//! (count, order, PSNR, timestamps, scaling), `test://` and `gst://` sources, and the typed
//! errors of broken inputs, each read in a watchdog thread so that a hang fails the test.

mod common;

use common::psnr;

use livedepth::frame::RgbImage;
use livedepth::sink::video::Mp4Writer;
use livedepth::source::gst::{GstOptions, GstSource};
use livedepth::source::{Source, SourceError};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::Duration;

const FPS: f64 = 30.0;
const FRAMES: usize = 30;
/// Deliberately not a multiple of 4, so GStreamer's RGB rows carry stride padding.
const WIDTH: u32 = 318;
const HEIGHT: u32 = 238;

/// A moving, textured procedural frame: smooth drifting colour gradients, a fine luminance
/// texture, and two moving squares (a grey checkerboard and a dark solid one).
fn pattern_frame(index: usize, width: u32, height: u32) -> RgbImage {
    let mut image = RgbImage::new(width, height);
    let f = index as f32;
    let tau = std::f32::consts::TAU;
    let checker = (12.0 + 6.0 * f, 30.0 + 3.0 * f, 64.0);
    let solid = (230.0 - 5.0 * f, 150.0 - 2.0 * f, 40.0);
    for y in 0..height {
        for x in 0..width {
            let (xf, yf) = (x as f32, y as f32);
            let mut rgb = [
                128.0 + 90.0 * (tau * xf / width as f32 + 0.2 * f).sin(),
                128.0 + 90.0 * (tau * 1.5 * yf / height as f32 + 0.1 * f).sin(),
                128.0 + 60.0 * ((xf + yf + 3.0 * f) / 9.0).sin(),
            ];
            let inside = |(sx, sy, size): (f32, f32, f32)| {
                xf >= sx && xf < sx + size && yf >= sy && yf < sy + size
            };
            if inside(checker) {
                let light = ((x / 8) + (y / 8)) % 2 == 0;
                rgb = if light { [210.0; 3] } else { [50.0; 3] };
            } else if inside(solid) {
                rgb = [30.0, 30.0, 40.0];
            }
            let i = (y as usize * width as usize + x as usize) * 3;
            for (channel, value) in image.data[i..i + 3].iter_mut().zip(rgb) {
                *channel = value.round().clamp(0.0, 255.0) as u8;
            }
        }
    }
    image
}

/// Encode the pattern to `dir/name` and return the frames and the path.
fn encode_pattern(dir: &Path, name: &str) -> (Vec<RgbImage>, PathBuf) {
    let frames: Vec<RgbImage> = (0..FRAMES).map(|i| pattern_frame(i, WIDTH, HEIGHT)).collect();
    let path = dir.join(name);
    let mut writer = Mp4Writer::create(&path, WIDTH, HEIGHT, FPS).unwrap();
    for (i, frame) in frames.iter().enumerate() {
        writer.push(frame, i as f64 / FPS).unwrap();
    }
    assert_eq!(writer.frames_written(), FRAMES as u64);
    let written = writer.finish().unwrap();
    assert_eq!(written, path);
    (frames, path)
}

struct ReadResult {
    frames: Vec<livedepth::frame::Frame>,
    /// Frames the file declared but did not deliver.
    frames_lost: u64,
    warnings: u64,
    native_size: Option<(u32, u32)>,
    framerate: Option<f64>,
    caps: String,
}

/// Open `uri` and read every frame on a worker thread; fail the test if that takes longer than
/// `bound` (a hang).
fn read_all_within(
    uri: &str,
    options: GstOptions,
    bound: Duration,
) -> Result<ReadResult, SourceError> {
    let (tx, rx) = mpsc::channel();
    let uri_owned = uri.to_string();
    std::thread::spawn(move || {
        let result = (|| {
            let mut source = GstSource::open(&uri_owned, &options)?;
            let mut frames = Vec::new();
            while let Some(frame) = source.next_frame()? {
                frames.push(frame);
            }
            Ok(ReadResult {
                frames,
                frames_lost: source.frames_lost(),
                warnings: source.warning_count(),
                native_size: source.native_size(),
                framerate: source.framerate(),
                caps: source.caps_description().to_string(),
            })
        })();
        let _ = tx.send(result);
    });
    match rx.recv_timeout(bound) {
        Ok(result) => result,
        Err(_) => panic!("{uri}: opening and reading hung for more than {bound:?}"),
    }
}

/// Source options for the tests. The timeout only guards against a stalled pipeline; it is
/// generous because CI machines can be heavily loaded while the tests decode in parallel.
fn quick_options() -> GstOptions {
    GstOptions { timeout: Duration::from_secs(30), ..GstOptions::default() }
}

/// The hang guard around a whole open-and-read.
const BOUND: Duration = Duration::from_secs(120);

#[test]
fn mp4_round_trip_is_lossless_in_count_and_order() {
    let dir = tempfile::tempdir().unwrap();
    let (originals, path) = encode_pattern(dir.path(), "pattern.mp4");
    let uri = format!("file://{}", path.display());
    let read = read_all_within(&uri, quick_options(), BOUND).unwrap();

    assert_eq!(read.frames.len(), FRAMES, "every encoded frame must be decoded");
    assert_eq!(read.native_size, Some((WIDTH, HEIGHT)));
    let fps = read.framerate.expect("an mp4 has a nominal framerate");
    assert!((fps - FPS).abs() < 0.01, "framerate {fps}");
    assert!(read.caps.contains("RGB"), "{}", read.caps);

    let t0 = read.frames[0].timestamp;
    let mut worst_psnr = f64::INFINITY;
    for (i, frame) in read.frames.iter().enumerate() {
        assert_eq!(frame.index, i as u64);
        assert_eq!((frame.rgb.width, frame.rgb.height), (WIDTH, HEIGHT));
        let own = psnr(&frame.rgb, &originals[i]);
        assert!(own > 30.0, "frame {i}: PSNR {own:.1} dB");
        worst_psnr = worst_psnr.min(own);
        // In order: each frame matches its own original better than its neighbours.
        for j in [i.wrapping_sub(1), i + 1] {
            if let Some(other) = originals.get(j) {
                let neighbour = psnr(&frame.rgb, other);
                assert!(
                    own > neighbour + 3.0,
                    "frame {i} ({own:.1} dB) vs original {j} ({neighbour:.1} dB)"
                );
            }
        }
        let expected = i as f64 / FPS;
        assert!(
            (frame.timestamp - t0 - expected).abs() < 0.005,
            "frame {i} at {} s, expected {expected} s after the first",
            frame.timestamp
        );
        if i > 0 {
            assert!(frame.timestamp > read.frames[i - 1].timestamp);
        }
    }
    eprintln!("{FRAMES} frames decoded, worst PSNR {worst_psnr:.1} dB");
}

#[test]
fn file_source_scales_to_the_requested_size() {
    let dir = tempfile::tempdir().unwrap();
    let (originals, path) = encode_pattern(dir.path(), "scaled.mp4");
    // A relative file:// URI, resolved against the working directory.
    let relative = pathdiff(&path);
    let options = GstOptions { width: Some(160), height: Some(96), ..quick_options() };
    let read = read_all_within(&format!("file://{}", relative.display()), options, BOUND).unwrap();
    assert_eq!(read.frames.len(), FRAMES);
    assert_eq!(read.native_size, Some((WIDTH, HEIGHT)));
    for frame in &read.frames {
        assert_eq!((frame.rgb.width, frame.rgb.height), (160, 96));
        assert_eq!(frame.rgb.data.len(), 160 * 96 * 3);
    }
    // The scaled frame still resembles the (box-downsampled) original: mean colours agree.
    let mean = |img: &RgbImage| {
        img.data.iter().map(|&v| f64::from(v)).sum::<f64>() / img.data.len() as f64
    };
    let (a, b) = (mean(&read.frames[0].rgb), mean(&originals[0]));
    assert!((a - b).abs() < 4.0, "mean intensity {a} vs {b}");
}

/// `path` relative to the current directory (`../..` as needed).
fn pathdiff(path: &Path) -> PathBuf {
    let cwd = std::env::current_dir().unwrap();
    let common = cwd.ancestors().find(|a| path.starts_with(a)).unwrap();
    let ups = cwd.strip_prefix(common).unwrap().components().count();
    let mut relative = PathBuf::new();
    for _ in 0..ups {
        relative.push("..");
    }
    relative.join(path.strip_prefix(common).unwrap())
}

#[test]
fn test_source_yields_requested_size_and_increasing_timestamps() {
    let options = GstOptions { width: Some(128), height: Some(96), ..quick_options() };
    let read = read_all_within("test://ball?num-buffers=12", options, BOUND).unwrap();
    // Live by default (keeps the latest frame), so a slow reader could drop a few.
    assert!(read.frames.len() >= 6 && read.frames.len() <= 12, "{} frames", read.frames.len());
    for pair in read.frames.windows(2) {
        assert!(pair[1].timestamp > pair[0].timestamp, "timestamps must increase");
    }
    for frame in &read.frames {
        assert_eq!((frame.rgb.width, frame.rgb.height), (128, 96));
    }
    // The ball moves: consecutive frames differ.
    assert_ne!(read.frames[0].rgb.data, read.frames[read.frames.len() - 1].rgb.data);

    // Not live: every buffer is delivered, at the native size.
    let options = GstOptions { live: Some(false), ..quick_options() };
    let read = read_all_within("test://smpte?num-buffers=8", options, BOUND).unwrap();
    assert_eq!(read.frames.len(), 8);
    assert_eq!(read.native_size, Some((320, 240)));
    assert_eq!((read.frames[0].rgb.width, read.frames[0].rgb.height), (320, 240));
    // SMPTE bars: the top-left bar is light grey (~75% white), the next one yellow.
    let [r, g, b] = read.frames[0].rgb.pixel(5, 5);
    assert!(r > 150 && g > 150 && b > 150, "{:?}", [r, g, b]);
    let [r, g, b] = read.frames[0].rgb.pixel(320 / 7 + 5, 5);
    assert!(r > 150 && g > 150 && b < 80, "{:?}", [r, g, b]);
}

#[test]
fn gst_pipeline_source_delivers_rgb() {
    let uri = "gst://videotestsrc num-buffers=3 pattern=red ! videoconvert ! appsink name=sink";
    let read = read_all_within(uri, quick_options(), BOUND).unwrap();
    assert_eq!(read.frames.len(), 3);
    assert_eq!(read.frames[0].rgb.pixel(10, 10), [255, 0, 0]);
}

fn assert_stream_error(result: Result<ReadResult, SourceError>, name: &str) {
    match result {
        Err(e @ SourceError::Stream { .. }) => {
            eprintln!("{name}: {e}");
            assert!(e.to_string().contains(name), "message does not name {name}: {e}");
        }
        Err(other) => panic!("{name}: expected SourceError::Stream, got {other:?}"),
        Ok(read) => panic!("{name}: expected an error, read {} frames", read.frames.len()),
    }
}

#[test]
fn broken_files_give_typed_errors_without_hanging() {
    let dir = tempfile::tempdir().unwrap();
    let (_, valid) = encode_pattern(dir.path(), "valid.mp4");

    // A recording cut off before its index was written: the top-level boxes without `moov`
    // (our writer puts it first), then only half of the media data.
    let bytes = std::fs::read(&valid).unwrap();
    let mut without_index = Vec::new();
    let (mut at, mut seen_media) = (0, false);
    while at + 8 <= bytes.len() {
        let size = u32::from_be_bytes(bytes[at..at + 4].try_into().unwrap()) as usize;
        assert!(size >= 8 && at + size <= bytes.len(), "unexpected MP4 box layout at {at}");
        match &bytes[at + 4..at + 8] {
            // Our writer's files are streamable: the index comes before the media data.
            b"moov" => assert!(!seen_media, "the index (moov) follows the media data (mdat)"),
            kind => {
                seen_media |= kind == b"mdat";
                without_index.extend_from_slice(&bytes[at..at + size]);
            }
        }
        at += size;
    }
    assert!(without_index.len() < bytes.len(), "the encoded file has an index (moov) box");
    let truncated = dir.path().join("truncated.mp4");
    std::fs::write(&truncated, &without_index[..without_index.len() / 2]).unwrap();
    let result =
        read_all_within(&format!("file://{}", truncated.display()), quick_options(), BOUND);
    assert_stream_error(result, "truncated.mp4");

    let random = dir.path().join("random.mp4");
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let noise: Vec<u8> = (0..65_536)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect();
    std::fs::write(&random, noise).unwrap();
    let result = read_all_within(&format!("file://{}", random.display()), quick_options(), BOUND);
    assert_stream_error(result, "random.mp4");

    let text = dir.path().join("notes.mp4");
    std::fs::write(&text, "These are meeting notes, not a video.\n".repeat(200)).unwrap();
    let result = read_all_within(&format!("file://{}", text.display()), quick_options(), BOUND);
    assert_stream_error(result, "notes.mp4");

    let missing = dir.path().join("missing.mp4");
    match read_all_within(&format!("file://{}", missing.display()), quick_options(), BOUND) {
        Err(e @ SourceError::MissingFile { .. }) => {
            assert!(e.to_string().contains("missing.mp4"), "{e}")
        }
        other => panic!("missing file: expected MissingFile, got {:?}", other.err()),
    }
    // A directory is not a video file either.
    match read_all_within(&format!("file://{}", dir.path().display()), quick_options(), BOUND) {
        Err(SourceError::MissingFile { path }) => {
            assert!(path.ends_with(dir.path().file_name().unwrap()))
        }
        other => panic!("directory: expected MissingFile, got {:?}", other.err()),
    }
}

#[test]
fn bad_uris_give_invalid_uri_naming_them() {
    for uri in ["foo://x", "file://", "gst://videotestsrc ! fakesink", "test://no-such-pattern"] {
        match read_all_within(uri, quick_options(), BOUND) {
            Err(e @ SourceError::InvalidUri { .. }) => {
                let message = e.to_string();
                assert!(message.contains(uri), "{message}");
            }
            other => panic!("{uri}: expected InvalidUri, got {:?}", other.err()),
        }
    }
    match read_all_within("gst://nosuchelement ! appsink name=sink", quick_options(), BOUND) {
        Err(SourceError::MissingElement { element, .. }) => {
            assert!(element.contains("nosuchelement"))
        }
        other => panic!("expected MissingElement, got {:?}", other.err()),
    }
    // CSI cameras need the Jetson-only nvarguscamerasrc: a clear error where it is absent.
    match read_all_within("csi://0", quick_options(), BOUND) {
        Err(SourceError::MissingElement { element, .. }) => {
            assert_eq!(element, "nvarguscamerasrc")
        }
        Err(other) => eprintln!("csi://0 is present here but failed to open: {other}"),
        Ok(read) => assert!(!read.frames.is_empty()),
    }
}

#[test]
fn mp4_writer_rejects_bad_arguments() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.mp4");
    assert!(Mp4Writer::create(&path, 321, 240, 30.0).is_err(), "odd width");
    assert!(Mp4Writer::create(&path, 320, 240, f64::NAN).is_err(), "NaN fps");
    let mut writer = Mp4Writer::create(&path, 64, 48, 30.0).unwrap();
    assert!(writer.push(&RgbImage::new(32, 48), 0.0).is_err(), "wrong frame size");
    writer.push(&RgbImage::new(64, 48), 0.0).unwrap();
    assert!(writer.push(&RgbImage::new(64, 48), 0.0).is_err(), "repeated timestamp");
    assert!(writer.push(&RgbImage::new(64, 48), f64::NAN).is_err(), "NaN timestamp");
    drop(writer);
    // An unfinished writer leaves nothing behind: neither the target nor its temporary file.
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
}

/// Run a gst-launch description to completion (to make test media); panics naming the first of
/// `elements` that is not installed (scripts/setup.sh installs them all).
fn make_media(description: &str, elements: &[&str]) -> Option<()> {
    use gstreamer as gst;
    use gstreamer::prelude::*;
    gst::init().unwrap();
    if let Some(missing) = elements.iter().find(|e| gst::ElementFactory::find(e).is_none()) {
        panic!("GStreamer element {missing} is not installed (scripts/setup.sh installs it)");
    }
    let pipeline = gst::parse::launch(description).unwrap();
    pipeline.set_state(gst::State::Playing).unwrap();
    let bus = pipeline.bus().unwrap();
    let msg = bus
        .timed_pop_filtered(
            gst::ClockTime::from_seconds(20),
            &[gst::MessageType::Eos, gst::MessageType::Error],
        )
        .expect("making test media timed out");
    pipeline.set_state(gst::State::Null).unwrap();
    assert!(matches!(msg.view(), gst::MessageView::Eos(_)), "making test media failed: {msg:?}");
    Some(())
}

#[test]
fn audio_tracks_are_ignored_and_audio_only_files_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let av = dir.path().join("av.mkv");
    let description = format!(
        "matroskamux name=mux ! filesink location={} \
         videotestsrc num-buffers=12 ! video/x-raw,width=96,height=64 ! vp8enc deadline=1 ! mux. \
         audiotestsrc num-buffers=12 ! vorbisenc ! mux.",
        av.display()
    );
    let elements = ["matroskamux", "videotestsrc", "vp8enc", "audiotestsrc", "vorbisenc"];
    if make_media(&description, &elements).is_none() {
        return;
    }
    let read = read_all_within(&av.display().to_string(), quick_options(), BOUND).unwrap();
    assert_eq!(read.frames.len(), 12, "every video frame of a file with audio");
    assert_eq!(read.native_size, Some((96, 64)));

    let wav = dir.path().join("tone.wav");
    let description =
        format!("audiotestsrc num-buffers=12 ! wavenc ! filesink location={}", wav.display());
    if make_media(&description, &["audiotestsrc", "wavenc"]).is_none() {
        return;
    }
    let result = read_all_within(&format!("file://{}", wav.display()), quick_options(), BOUND);
    if let Err(SourceError::Stream { message, .. }) = &result {
        assert!(message.contains("no video"), "{message}");
    }
    assert_stream_error(result, "tone.wav");
}

/// The pipeline moves sources and writers onto their own threads.
#[test]
fn sources_and_writers_are_send() {
    fn assert_send<T: Send>() {}
    assert_send::<GstSource>();
    assert_send::<Mp4Writer>();
    assert_send::<livedepth::sink::metrics::MetricsCsvWriter>();
}

#[test]
fn cut_off_recordings_say_what_was_lost_and_an_undecodable_one_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let (_, path) = encode_pattern(dir.path(), "whole.mp4");
    let bytes = std::fs::read(&path).unwrap();
    let options = GstOptions { live: Some(false), ..quick_options() };
    let uri = |p: &Path| format!("file://{}", p.display());

    let whole = read_all_within(&uri(&path), options.clone(), BOUND).unwrap();
    assert_eq!((whole.frames.len(), whole.frames_lost), (FRAMES, 0));

    // Cut in half (as `head -c` does): some frames decode, the rest is reported lost.
    let half = dir.path().join("half.mp4");
    std::fs::write(&half, &bytes[..bytes.len() / 2]).unwrap();
    let read = read_all_within(&uri(&half), options.clone(), BOUND).unwrap();
    assert!(read.frames.len() < FRAMES, "{} frames from half a file", read.frames.len());
    assert_eq!(read.frames_lost as usize, FRAMES - read.frames.len());
    assert!(read.warnings >= 1);

    // Cut to 2000 bytes: not a single frame, which is an error naming the file.
    let stub = dir.path().join("stub.mp4");
    std::fs::write(&stub, &bytes[..2000]).unwrap();
    let err = read_all_within(&uri(&stub), options, BOUND).err().expect("an error");
    assert!(matches!(err, SourceError::Truncated { .. }), "{err}");
    assert!(err.to_string().contains("stub.mp4") && err.to_string().contains("no frame"), "{err}");
}
