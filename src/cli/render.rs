//! `livedepth render`: renders a synthetic drive with exact ground truth into the KITTI-like
//! layout (see `livedepth::synth`), and prints what it wrote.

use clap::Args as ClapArgs;
use livedepth::synth::{RenderConfig, Renderer, TrajectoryKind, write_dataset};
use std::path::PathBuf;

/// Render a synthetic drive (RGB, ground-truth depth, poses) to a KITTI-like folder.
#[derive(ClapArgs, Debug)]
pub struct Args {
    /// Output folder (created if missing).
    #[arg(long)]
    pub out: PathBuf,
    /// Number of frames.
    #[arg(long, default_value_t = 200)]
    pub frames: usize,
    /// Image width in pixels (even).
    #[arg(long, default_value_t = 640)]
    pub width: u32,
    /// Image height in pixels (even).
    #[arg(long, default_value_t = 192)]
    pub height: u32,
    /// Frames per second.
    #[arg(long, default_value_t = 10.0, allow_negative_numbers = true)]
    pub fps: f64,
    /// Seed of the scene and trajectory.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Camera trajectory: car or drone.
    #[arg(long, default_value_t = TrajectoryKind::Car)]
    pub trajectory: TrajectoryKind,
    /// Number of independently moving vehicles.
    #[arg(long, default_value_t = 0)]
    pub moving_objects: usize,
    /// Stop for a few frames now and then.
    #[arg(long)]
    pub stops: bool,
    /// Supersampling factor per axis (K x K samples per pixel).
    #[arg(long, default_value_t = 2)]
    pub supersample: u32,
    /// Speed along the road in metres per second.
    #[arg(long, default_value_t = 8.0, allow_negative_numbers = true)]
    pub speed: f64,
    /// Hide the progress bar.
    #[arg(long)]
    pub quiet: bool,
}

impl Args {
    /// The render configuration these options describe.
    pub fn to_config(&self) -> RenderConfig {
        let mut config = RenderConfig {
            width: self.width,
            height: self.height,
            frames: self.frames,
            fps: self.fps,
            seed: self.seed,
            supersample: self.supersample,
            trajectory: self.trajectory,
            speed_mps: self.speed,
            stops: self.stops,
            ..RenderConfig::default()
        };
        config.scene.moving_objects = self.moving_objects;
        config
    }
}

pub fn run(args: Args) -> livedepth::Result<()> {
    let config = args.to_config();
    let renderer = Renderer::new(&config)?;
    let summary = write_dataset(&renderer, &args.out, !args.quiet)?;
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
