//! `livedepth demo`: the end-to-end job behind `make demo` (see `livedepth::app::demo`).

use clap::Args as ClapArgs;
use livedepth::app::demo::{DemoOptions, run_demo};
use std::path::PathBuf;

/// Render an unseen synthetic drive, replay it through GStreamer at the camera's frame rate with
/// live depth and online adaptation, report the seven metrics frozen vs adapted, and write a
/// side-by-side video (input | frozen depth | adapted depth, abs_rel over time).
#[derive(ClapArgs, Debug)]
pub struct Args {
    /// Output folder.
    #[arg(long, default_value = "out/demo")]
    pub out: PathBuf,
    /// Frames of the synthetic drive.
    #[arg(long, default_value_t = 120)]
    pub frames: usize,
    /// Scene seed.
    #[arg(long, default_value_t = 2026)]
    pub seed: u64,
    /// Depth model: a `livedepth train` folder (default: models/base_320x96), a folder with
    /// encoder.pth + depth.pth (e.g. ../shared/models/rtmonodepth_s/m_640x192) or .safetensors.
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// Adaptation steps per frame in the lock-step comparison.
    #[arg(long, default_value_t = 2)]
    pub steps: usize,
    /// libtorch threads (0 = libtorch's default; 1 is fastest on a busy 2-core machine).
    #[arg(long, default_value_t = 1)]
    pub threads: usize,
    /// Skip the live GStreamer replay (only render and compare in lock-step).
    #[arg(long)]
    pub no_live: bool,
}

pub fn run(args: Args) -> livedepth::Result<()> {
    let report = run_demo(&DemoOptions {
        out: args.out,
        frames: args.frames,
        seed: args.seed,
        model: args.model,
        steps_per_frame: args.steps,
        live: !args.no_live,
        threads: (args.threads > 0).then_some(args.threads),
    })?;
    println!("synthetic drive: {} (dataset {})", report.video.display(), report.dataset.display());
    if let Some(live) = &report.live {
        println!("{}", live.summary());
    }
    println!(
        "model {} ({}x{}) on the unseen drive, {} frames, lock-step, frozen vs adapted ({} steps \
         per frame, {} accepted, {} rollbacks):",
        report.model.path.display(),
        report.model.width,
        report.model.height,
        report.frozen.mean.frames,
        report.steps_per_frame,
        report.adapt_stats.steps,
        report.adapt_stats.rollbacks
    );
    print!("{}", report.table());
    println!("abs_rel per window (frames): frozen -> adapted");
    for w in &report.windows {
        println!(
            "  {:>4}-{:<4} {:.3} -> {:.3}",
            w.first_frame, w.last_frame, w.frozen_abs_rel, w.adapted_abs_rel
        );
    }
    for path in &report.outputs {
        println!("wrote {path}");
    }
    Ok(())
}
