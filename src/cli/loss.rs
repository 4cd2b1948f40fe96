//! `livedepth loss`: the file probe for checking parity with one's own training code — reads the
//! loss inputs from an npz file and writes the per-pixel minimum, auto-mask, losses and all
//! gradients to another (array names in the README (Loss probe)).

use clap::Args as ClapArgs;
use std::path::PathBuf;

/// Compute the self-supervised loss and its gradients for the inputs in an npz file.
#[derive(ClapArgs, Debug)]
pub struct Args {
    /// Input npz: target, sources, disp_0.., axis_angle, translation, invert, K, … (see the README (Loss probe)).
    #[arg(long)]
    pub inputs: PathBuf,
    /// Output npz (written atomically).
    #[arg(long)]
    pub out: PathBuf,
}

pub fn run(args: Args) -> livedepth::Result<()> {
    let summary = livedepth::loss::probe::run_probe(&args.inputs, &args.out)?;
    println!(
        "loss {:.7} (photometric {:.7}, smoothness {:.7}, masked {:.2} %) for {} source(s), {} scale(s) at {}x{} → {}",
        summary.total,
        summary.photometric,
        summary.smoothness,
        100.0 * summary.masked_fraction,
        summary.sources,
        summary.scales,
        summary.width,
        summary.height,
        args.out.display()
    );
    Ok(())
}
