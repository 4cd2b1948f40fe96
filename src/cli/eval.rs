//! `livedepth eval`: a depth model over a recorded dataset, scored with the seven standard
//! metrics under the Monodepth2 protocol; prints the table and optionally writes JSON.

use clap::Args as ClapArgs;
use livedepth::app::eval::{EvalOptions, evaluate};
use livedepth::eval::format_metrics_table;
use livedepth::model::Arch;
use livedepth::source::dataset::FrameSelection;
use std::path::PathBuf;

/// Evaluate a depth model on a dataset with ground truth.
#[derive(ClapArgs, Debug)]
pub struct Args {
    /// The dataset: kitti:DIR, kitchen:DIR or tum:DIR.
    #[arg(long)]
    pub dataset: String,
    /// Checkpoint folder (encoder.pth + depth.pth) or a .safetensors file.
    #[arg(long)]
    pub model: PathBuf,
    /// Network architecture: rtmonodepth-s, monodepth2-r18 or monodepth2-r50.
    #[arg(long, default_value = "rtmonodepth-s")]
    pub arch: String,
    /// Network input width (a multiple of 32).
    #[arg(long, default_value_t = 640)]
    pub width: u32,
    /// Network input height (a multiple of 32).
    #[arg(long, default_value_t = 192)]
    pub height: u32,
    /// Frames to evaluate: A..B (B excluded), A..=B, or START:END[:STEP]; all by default.
    #[arg(long)]
    pub frames: Option<String>,
    /// Take every Nth frame of the selection.
    #[arg(long, default_value_t = 1)]
    pub step: usize,
    /// Metric model: evaluate without per-frame median scaling.
    #[arg(long)]
    pub no_median_scaling: bool,
    /// Write the report (means and per-frame rows) to this JSON file.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Write an SVG plot of abs_rel and δ<1.25 per frame to this file.
    #[arg(long)]
    pub plot: Option<PathBuf>,
    /// Hide the progress bar.
    #[arg(long)]
    pub quiet: bool,
}

pub fn run(args: Args) -> livedepth::Result<()> {
    let arch: Arch = args.arch.parse()?;
    let mut selection = match &args.frames {
        Some(text) => FrameSelection::parse(text).map_err(livedepth::source::SourceError::from)?,
        None => FrameSelection::all(),
    };
    if args.step == 0 {
        return Err(livedepth::Error::Other(
            "--step: expected a whole number of at least 1".into(),
        ));
    }
    selection.step *= args.step;
    let options = EvalOptions {
        dataset: args.dataset.clone(),
        model: args.model.clone(),
        arch,
        width: args.width,
        height: args.height,
        selection,
        no_median_scaling: args.no_median_scaling,
        json: args.json.clone(),
        plot: args.plot.clone(),
        progress: !args.quiet,
    };
    let report = evaluate(&options)?;
    println!(
        "{} on {} ({} frames, {}x{}, {}median scaling{})",
        report.arch,
        report.dataset,
        report.mean.frames,
        report.width,
        report.height,
        if report.protocol.median_scaling { "" } else { "no " },
        if report.protocol.median_scaling {
            format!(
                ": ratio median {:.3}, std {:.3}",
                report.mean.scale_ratio_median, report.mean.scale_ratio_std
            )
        } else {
            String::new()
        }
    );
    println!("{}", format_metrics_table(&report.values()));
    for path in args.json.iter().chain(&args.plot) {
        println!("wrote {}", path.display());
    }
    Ok(())
}
