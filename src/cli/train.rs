//! `livedepth train`: offline training of the depth and pose networks over datasets (see
//! `livedepth::train`); this file only maps flags to [`TrainOptions`] and prints the summary.

use clap::Args as ClapArgs;
use livedepth::model::Arch;
use livedepth::train::{Augmentation, TrainOptions, train};
use std::path::PathBuf;

/// Train depth + pose networks offline (self-supervised, optionally supervised where GT exists).
#[derive(ClapArgs, Debug)]
pub struct Args {
    /// Dataset spec, repeatable: kitti:DIR (KITTI raw or a rendered synthetic drive),
    /// kitchen:DIR, tum:DIR.
    #[arg(long = "dataset", required = true)]
    pub datasets: Vec<String>,
    /// Output folder: depth.safetensors, pose.safetensors, train.json.
    #[arg(long)]
    pub out: PathBuf,
    /// Depth architecture.
    #[arg(long, default_value = "rtmonodepth-s")]
    pub arch: Arch,
    /// Network input width (multiple of 32).
    #[arg(long, default_value_t = 320)]
    pub width: u32,
    /// Network input height (multiple of 32).
    #[arg(long, default_value_t = 96)]
    pub height: u32,
    #[arg(long, default_value_t = 10)]
    pub epochs: usize,
    #[arg(long, default_value_t = 8)]
    pub batch_size: usize,
    /// Stop after this many steps.
    #[arg(long)]
    pub max_steps: Option<usize>,
    /// Depth learning rate (Adam, cosine decay to 5 %).
    #[arg(long, default_value_t = 4e-4)]
    pub lr: f64,
    /// Pose learning rate.
    #[arg(long, default_value_t = 4e-4)]
    pub pose_lr: f64,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Triplet frame spacing k.
    #[arg(long, default_value_t = 1)]
    pub frame_gap: usize,
    /// Weight of the self-supervised (Monodepth2) loss; 0 turns it off.
    #[arg(long, default_value_t = 1.0)]
    pub self_supervised_weight: f64,
    /// Weight of the supervised scale-invariant log depth loss where GT depth exists.
    #[arg(long, default_value_t = 0.0)]
    pub supervised_weight: f64,
    /// Weight of the supervised pose loss where GT poses exist (synthetic drives).
    #[arg(long, default_value_t = 0.0)]
    pub pose_supervised_weight: f64,
    /// Horizontal flip probability.
    #[arg(long, default_value_t = 0.5)]
    pub flip: f64,
    /// Colour jitter strength (0 = off).
    #[arg(long, default_value_t = 0.2)]
    pub jitter: f32,
    /// Start from these depth weights (folder or .safetensors).
    #[arg(long)]
    pub init_model: Option<PathBuf>,
    /// Start from these pose weights.
    #[arg(long)]
    pub init_pose: Option<PathBuf>,
    /// Save the weights every this many steps (0 = only at the end).
    #[arg(long, default_value_t = 200)]
    pub checkpoint_every: usize,
    /// Print a status line every this many steps (for logs; 0 = never).
    #[arg(long, default_value_t = 0)]
    pub log_every: usize,
    /// libtorch threads (1 is fastest on a busy 2-core machine).
    #[arg(long, default_value_t = 1)]
    pub threads: usize,
    /// Hide the progress bar.
    #[arg(long)]
    pub quiet: bool,
}

pub fn run(args: Args) -> livedepth::Result<()> {
    let command = std::env::args().collect::<Vec<_>>().join(" ");
    let options = TrainOptions {
        datasets: args.datasets,
        out: args.out,
        arch: args.arch,
        width: args.width,
        height: args.height,
        epochs: args.epochs,
        batch_size: args.batch_size,
        max_steps: args.max_steps,
        learning_rate: args.lr,
        pose_learning_rate: args.pose_lr,
        seed: args.seed,
        frame_gap: args.frame_gap,
        self_supervised_weight: args.self_supervised_weight,
        supervised_weight: args.supervised_weight,
        pose_supervised_weight: args.pose_supervised_weight,
        augmentation: Augmentation { flip_probability: args.flip, jitter: args.jitter },
        init_model: args.init_model,
        init_pose: args.init_pose,
        checkpoint_every: args.checkpoint_every,
        progress: !args.quiet,
        log_every: args.log_every,
        stop_on_ctrl_c: true,
        threads: args.threads,
        command,
        ..TrainOptions::default()
    };
    let sidecar = train(&options)?;
    let f = &sidecar.final_losses;
    println!(
        "trained {} steps ({:.2} epochs{}) in {:.0} s; final loss {:.4} (photo {:.4} smooth {:.5} \
         depth {:.4} pose {:.4}); first {:.4}",
        sidecar.steps,
        sidecar.epochs_completed,
        if sidecar.interrupted { ", interrupted" } else { "" },
        sidecar.wall_seconds,
        f.total,
        f.photometric,
        f.smoothness,
        f.supervised_depth,
        f.supervised_pose,
        sidecar.first_losses.total
    );
    println!("wrote {}", options.out.display());
    Ok(())
}
