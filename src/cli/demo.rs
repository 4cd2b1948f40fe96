//! `livedepth demo`: the end-to-end job behind `make demo` (see `livedepth::app::demo`).

use clap::Args as ClapArgs;
use livedepth::app::demo::{DemoOptions, run_demo};
use livedepth::eval::format_metrics_table;
use std::path::PathBuf;

/// Render a synthetic drive, replay it through GStreamer with live depth, and score it.
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
    /// Depth model folder (encoder.pth + depth.pth) or .safetensors file.
    #[arg(long)]
    pub model: Option<PathBuf>,
}

pub fn run(args: Args) -> livedepth::Result<()> {
    let report = run_demo(&DemoOptions {
        out: args.out,
        frames: args.frames,
        seed: args.seed,
        model: args.model,
    })?;
    println!("synthetic drive: {} (dataset {})", report.video.display(), report.dataset.display());
    if let (Some(model), Some(eval)) = (&report.model, &report.eval) {
        println!("model {} on the drive ({} frames):", model.display(), eval.mean.frames);
        println!("{}", format_metrics_table(&eval.values()));
    }
    for path in &report.outputs {
        println!("wrote {path}");
    }
    Ok(())
}
