//! `livedepth render`: renders a synthetic drive with exact ground truth into the KITTI-like
//! layout (see `livedepth::synth`), and prints what it wrote.

use clap::Args as ClapArgs;
use livedepth::sink::video::Mp4Writer;
use livedepth::synth::{RenderConfig, Renderer, TrajectoryKind, write_dataset_with};
use std::path::PathBuf;

/// Render a synthetic drive (RGB, ground-truth depth, poses) to a KITTI-like folder.
#[derive(ClapArgs, Debug)]
pub struct Args {
    /// Output folder (created if missing).
    #[arg(long)]
    pub out: PathBuf,
    /// Start from this JSON render config (e.g. a dataset's render.json); the options below
    /// override its fields.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Number of frames [default: 200].
    #[arg(long)]
    pub frames: Option<usize>,
    /// Image width in pixels, even [default: 640].
    #[arg(long)]
    pub width: Option<u32>,
    /// Image height in pixels, even [default: 192].
    #[arg(long)]
    pub height: Option<u32>,
    /// Frames per second [default: 10].
    #[arg(long, allow_negative_numbers = true)]
    pub fps: Option<f64>,
    /// Seed of the scene and trajectory [default: 0].
    #[arg(long)]
    pub seed: Option<u64>,
    /// Camera trajectory: car, drone or orbit (circling a point on the road at 3 m while facing
    /// it, at 0.5 m/s unless --speed says otherwise) [default: car].
    #[arg(long)]
    pub trajectory: Option<TrajectoryKind>,
    /// Number of independently moving vehicles [default: 0].
    #[arg(long)]
    pub moving_objects: Option<usize>,
    /// Stop for a few frames now and then.
    #[arg(long)]
    pub stops: bool,
    /// Supersampling factor per axis, K x K samples per pixel [default: 2].
    #[arg(long)]
    pub supersample: Option<u32>,
    /// Speed along the road (along the circle for an orbit) in metres per second [default: 8].
    #[arg(long, allow_negative_numbers = true)]
    pub speed: Option<f64>,
    /// Also encode the frames to this mp4 (H.264 through GStreamer) at the drive's fps.
    #[arg(long)]
    pub mp4: Option<PathBuf>,
    /// Hide the progress bar.
    #[arg(long)]
    pub quiet: bool,
}

impl Args {
    /// The render configuration these options describe: the `--config` file or the defaults,
    /// with every given option applied on top.
    pub fn to_config(&self) -> livedepth::Result<RenderConfig> {
        let mut config = match &self.config {
            Some(path) => RenderConfig::from_json_file(path)?,
            None => RenderConfig::default(),
        };
        config.frames = self.frames.unwrap_or(config.frames);
        config.width = self.width.unwrap_or(config.width);
        config.height = self.height.unwrap_or(config.height);
        config.fps = self.fps.unwrap_or(config.fps);
        config.seed = self.seed.unwrap_or(config.seed);
        config.trajectory = self.trajectory.unwrap_or(config.trajectory);
        config.supersample = self.supersample.unwrap_or(config.supersample);
        config.speed_mps = self.speed.unwrap_or(config.speed_mps);
        // The car's 8 m/s would take an orbit round its 3 m circle in 2.4 s.
        if self.speed.is_none()
            && self.config.is_none()
            && config.trajectory == TrajectoryKind::Orbit
        {
            config.speed_mps = livedepth::synth::ORBIT_WALKING_SPEED_MPS;
        }
        config.stops |= self.stops;
        config.scene.moving_objects = self.moving_objects.unwrap_or(config.scene.moving_objects);
        Ok(config)
    }
}

pub fn run(args: Args) -> livedepth::Result<()> {
    let config = args.to_config()?;
    let renderer = Renderer::new(&config)?;
    let mut video = match &args.mp4 {
        Some(path) => Some(Mp4Writer::create(path, config.width, config.height, config.fps)?),
        None => None,
    };
    let summary = write_dataset_with(&renderer, &args.out, !args.quiet, |frame| {
        if let Some(video) = video.as_mut() {
            video.push(&frame.rgb, frame.timestamp)?;
        }
        Ok::<(), livedepth::Error>(())
    })?;
    if let Some(video) = video {
        let frames = video.frames_written();
        let path = video.finish()?;
        println!("encoded {frames} frames to {}", path.display());
    }
    let k = renderer.intrinsics();
    println!(
        "wrote {} frames of {}x{} ({} drive, seed {}) to {}",
        summary.frames,
        summary.width,
        summary.height,
        config.trajectory,
        config.seed,
        summary.out_dir.display()
    );
    println!(
        "  image_02/data/*.png, proj_depth/groundtruth/image_02/*.png (uint16, depth*256), \
         image_02/{{cam,poses,timestamps}}.txt, render.json"
    );
    println!("  K: fx {:.3} fy {:.3} cx {:.3} cy {:.3}", k.fx, k.fy, k.cx, k.cy);
    println!(
        "  valid depth {:.1}% of pixels; rendering {:.3} s/frame, {:.1} s in total",
        100.0 * summary.valid_depth_fraction,
        summary.render_seconds / summary.frames.max(1) as f64,
        summary.total_seconds
    );
    Ok(())
}
