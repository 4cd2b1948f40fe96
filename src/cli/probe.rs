//! `livedepth probe`: open a source, print its caps, native size and framerate, read a few
//! frames measuring the delivery rate, and optionally save them as PNGs.

use livedepth::sink::colourise::write_rgb_png;
use livedepth::source::Source;
use livedepth::source::gst::{GstOptions, GstSource};
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// Open a source and report what it delivers.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Source URI: file:///abs/video.mp4, file://rel/video.mp4, v4l2:///dev/video0,
    /// rtsp://host/path, csi://0, test://[pattern][?num-buffers=N], or
    /// gst://<pipeline ending in `appsink name=sink`>, or a recording
    /// mcap:///abs/file.mcap[?topic=/camera/image_raw] (ROS 2 bag or Foxglove MCAP).
    #[arg(long)]
    pub source: String,
    /// Output width in pixels (default: native).
    #[arg(long)]
    pub width: Option<u32>,
    /// Output height in pixels (default: native).
    #[arg(long)]
    pub height: Option<u32>,
    /// Number of frames to read (and to save with --out).
    #[arg(long, default_value_t = 5)]
    pub frames: u64,
    /// Directory to save the frames to as frame-NNNNNN.png (nothing is saved without it).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Longest wait for the source to start or deliver a frame, in seconds.
    #[arg(long, default_value_t = 10.0, value_parser = parse_timeout)]
    pub timeout: f64,
    /// Force live (keep latest frame) or replay (every frame) behaviour; default by scheme.
    #[arg(long)]
    pub live: Option<bool>,
}

fn parse_timeout(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(seconds) if seconds.is_finite() && seconds > 0.0 && seconds <= 3600.0 => Ok(seconds),
        _ => Err(format!("`{text}` is not a number of seconds in (0, 3600]")),
    }
}

pub fn run(args: Args) -> livedepth::Result<()> {
    let options = GstOptions {
        width: args.width,
        height: args.height,
        live: args.live,
        timeout: Duration::from_secs_f64(args.timeout),
    };
    if let Some(dir) = &args.out {
        std::fs::create_dir_all(dir).map_err(|e| livedepth::Error::io(dir, e))?;
    }
    let opened = Instant::now();
    if args.source.starts_with(livedepth::source::bag::SCHEME) {
        let mut source = livedepth::source::bag::BagSource::open(&args.source)?;
        println!("source:      {}", source.describe());
        println!("opened in:   {:.3} s", opened.elapsed().as_secs_f64());
        match source.len_hint() {
            Some(n) => println!("messages:    {n} on the topic (from the file's index)"),
            None => println!("messages:    unknown (the file has no index; read in order)"),
        }
        return read_frames(&mut source, &args);
    }
    let mut source = GstSource::open(&args.source, &options)?;
    println!("source:      {}", source.uri());
    println!("opened in:   {:.3} s", opened.elapsed().as_secs_f64());
    println!("live:        {}", source.is_live());
    println!("caps:        {}", source.caps_description());
    match source.native_size() {
        Some((w, h)) => println!("native size: {w}x{h}"),
        None => println!("native size: unknown (no frame)"),
    }
    match source.output_size() {
        Some((w, h)) => println!("output size: {w}x{h}"),
        None => println!("output size: unknown (no frame)"),
    }
    match source.framerate() {
        Some(fps) => println!("framerate:   {fps:.3} fps (nominal)"),
        None => println!("framerate:   variable or unknown"),
    }

    read_frames(&mut source, &args)?;
    if source.warning_count() > 0 {
        println!("warnings:    {}", source.warning_count());
    }
    Ok(())
}

/// Reads up to `--frames` frames, saving them with `--out`, and prints the rates.
fn read_frames(source: &mut dyn Source, args: &Args) -> livedepth::Result<()> {
    let mut read = 0u64;
    let mut first_arrival = None;
    let mut first_last_timestamps = None;
    while read < args.frames {
        let Some(frame) = source.next_frame()? else { break };
        let now = Instant::now();
        first_arrival.get_or_insert(now);
        let (first, _) = *first_last_timestamps.get_or_insert((frame.timestamp, frame.timestamp));
        first_last_timestamps = Some((first, frame.timestamp));
        if read == 0 {
            println!("frame size:  {}x{}", frame.rgb.width, frame.rgb.height);
            if let Some(k) = &frame.intrinsics {
                println!(
                    "intrinsics:  fx {:.2} fy {:.2} cx {:.2} cy {:.2}",
                    k.fx, k.fy, k.cx, k.cy
                );
            }
        }
        if let Some(dir) = &args.out {
            let path = dir.join(format!("frame-{:06}.png", frame.index));
            write_rgb_png(&path, &frame.rgb)?;
        }
        read += 1;
    }
    println!("frames read: {read}");
    if let (Some(first), true) = (first_arrival, read > 1) {
        let seconds = first.elapsed().as_secs_f64();
        println!(
            "measured:    {:.2} fps delivered ({} frames in {seconds:.3} s)",
            (read - 1) as f64 / seconds,
            read - 1
        );
    }
    if let (Some((first, last)), true) = (first_last_timestamps, read > 1) {
        println!(
            "timestamps:  {first:.4} s .. {last:.4} s ({:.2} fps in stream time)",
            (read - 1) as f64 / (last - first).max(1e-9)
        );
    }
    if let Some(dir) = &args.out {
        println!("saved:       {read} PNG frames in {}", dir.display());
    }
    Ok(())
}
