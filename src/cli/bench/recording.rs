//! `livedepth bench recording`: what crash safety costs. The same rendered frames are encoded
//! twice through the real GStreamer encoder: as a crash-safe recording (fragmented MP4 written in
//! place, 0.5 s fragments, a key frame every second, no encoder look-ahead; what `run` writes) and
//! as a one-go artefact (faststart MP4 through a temporary file; what the demo writes). Prints
//! the encoding throughput and the file size of both, and the ratios.

use clap::Args as ClapArgs;
use livedepth::frame::RgbImage;
use livedepth::sink::video::Mp4Writer;
use livedepth::synth::{RenderConfig, Renderer};
use std::path::Path;
use std::time::Instant;

#[derive(ClapArgs, Debug)]
pub struct RecordingBenchArgs {
    /// Frames to encode (at 30 fps).
    #[arg(long, default_value_t = 300)]
    pub frames: usize,
    /// Frame width (even).
    #[arg(long, default_value_t = 640)]
    pub width: u32,
    /// Frame height (even).
    #[arg(long, default_value_t = 384)]
    pub height: u32,
}

const FPS: f64 = 30.0;

/// Encodes `frames` to `path`; returns the seconds it took and the file's size in bytes.
fn encode(path: &Path, frames: &[RgbImage], crash_safe: bool) -> livedepth::Result<(f64, u64)> {
    let (w, h) = (frames[0].width, frames[0].height);
    let start = Instant::now();
    let mut writer = if crash_safe {
        Mp4Writer::create_recording(path, w, h, FPS)?
    } else {
        Mp4Writer::create(path, w, h, FPS)?
    };
    for (i, frame) in frames.iter().enumerate() {
        writer.push(frame, i as f64 / FPS)?;
    }
    writer.finish()?;
    let seconds = start.elapsed().as_secs_f64();
    let bytes = std::fs::metadata(path).map_err(|e| livedepth::Error::io(path, e))?.len();
    Ok((seconds, bytes))
}

pub fn bench_recording(args: RecordingBenchArgs) -> livedepth::Result<()> {
    if args.frames == 0 {
        return Err(livedepth::Error::Other("--frames: expected at least 1".into()));
    }
    let render = RenderConfig {
        frames: args.frames,
        width: args.width,
        height: args.height,
        fps: FPS,
        ..RenderConfig::default()
    };
    let renderer = Renderer::new(&render)?;
    eprintln!("rendering {} frames of {}x{}", args.frames, args.width, args.height);
    let frames: Vec<RgbImage> = (0..args.frames)
        .map(|i| renderer.render_frame(i).map(|f| f.rgb))
        .collect::<Result<_, _>>()?;
    let dir =
        std::env::temp_dir().join(format!("livedepth-bench-recording-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| livedepth::Error::io(&dir, e))?;
    // One warm-up encode so that plugin loading counts for neither.
    encode(&dir.join("warm.mp4"), &frames[..frames.len().min(10)], false)?;
    let measured = encode(&dir.join("recording.mp4"), &frames, true)
        .and_then(|safe| Ok((safe, encode(&dir.join("artefact.mp4"), &frames, false)?)));
    // Best effort: a temporary folder left behind is harmless.
    let _ = std::fs::remove_dir_all(&dir);
    let ((safe_s, safe_bytes), (plain_s, plain_bytes)) = measured?;
    let fps = |s: f64| args.frames as f64 / s.max(1e-9);
    println!(
        "encoding {} frames of {}x{} at {FPS} fps (H.264, x264 ultrafast, constant quality)",
        args.frames, args.width, args.height
    );
    println!("  {:<44} {:>9} {:>12}", "", "fps", "bytes");
    println!(
        "  {:<44} {:>9.1} {:>12}",
        "crash-safe recording (fragmented, in place)",
        fps(safe_s),
        safe_bytes
    );
    println!(
        "  {:<44} {:>9.1} {:>12}",
        "one-go artefact (faststart, renamed)",
        fps(plain_s),
        plain_bytes
    );
    println!(
        "ratio crash-safe / one-go: throughput {:.2}x, size {:.2}x",
        fps(safe_s) / fps(plain_s),
        safe_bytes as f64 / plain_bytes.max(1) as f64
    );
    Ok(())
}
