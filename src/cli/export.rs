//! `livedepth export`: writes a network as an ONNX model (see `livedepth::export`); this file
//! only maps flags to [`ExportOptions`] and prints what was written.

use clap::Args as ClapArgs;
use livedepth::export::{ExportOptions, InputShape, Network, export, parse_arch};
use std::path::PathBuf;

/// Export a depth network or its pose network as an ONNX model (opset 17).
#[derive(ClapArgs, Debug)]
pub struct Args {
    /// Weights: a checkpoint folder (encoder.pth + depth.pth, or pose_encoder.pth + pose.pth
    /// for `--network pose`), a `livedepth train` folder or a .safetensors file.
    #[arg(long)]
    pub model: PathBuf,
    /// Depth architecture: rtmonodepth-s, monodepth2-r18 or monodepth2-r50 (`--network pose`
    /// exports its pose network: the light one, or Monodepth2's ResNet-18 one).
    #[arg(long)]
    pub arch: String,
    /// Network input width (multiple of 32).
    #[arg(long)]
    pub width: u32,
    /// Network input height (multiple of 32).
    #[arg(long)]
    pub height: u32,
    /// The .onnx file to write.
    #[arg(long)]
    pub out: PathBuf,
    /// Which network: `depth` (input `image` [B,3,H,W] RGB in [0,1]; outputs `disp_0`…) or
    /// `pose` (input `frame_pair` [B,6,H,W], two RGB frames in [0,1] stacked on channels;
    /// outputs `axis_angle`, `translation` [B,3]).
    #[arg(long, default_value = "depth")]
    pub network: String,
    /// Symbolic batch, height and width instead of a fixed 1×C×H×W input.
    #[arg(long)]
    pub dynamic: bool,
}

pub fn run(args: Args) -> livedepth::Result<()> {
    let arch = parse_arch(&args.arch)?;
    let network: Network = args.network.parse()?;
    let options = ExportOptions {
        model: args.model,
        arch,
        network,
        shape: InputShape { width: args.width, height: args.height, dynamic: args.dynamic },
        out: args.out,
    };
    let summary = export(&options)?;
    println!(
        "wrote {} ({} network, {} nodes, {} initializers, {} bytes; inputs {:?}, outputs {:?})",
        options.out.display(),
        options.network,
        summary.nodes,
        summary.initializers,
        summary.bytes,
        summary.inputs,
        summary.outputs
    );
    Ok(())
}
