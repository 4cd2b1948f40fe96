//! `livedepth bench`: benchmarks, each printing a ratio against a peer measured in the same run.

mod infer;
mod loss;

use clap::{Args as ClapArgs, Subcommand};

#[derive(ClapArgs, Debug)]
pub struct Args {
    #[command(subcommand)]
    pub command: BenchCommand,
}

#[derive(Subcommand, Debug)]
pub enum BenchCommand {
    /// Depth-network inference on the CPU: Rust/libtorch engine vs PyTorch eager.
    Infer(infer::InferArgs),
    /// The self-supervised loss, forward + backward, against PyTorch autograd on the CPU.
    Loss(loss::LossBenchArgs),
}

pub fn run(args: Args) -> livedepth::Result<()> {
    match args.command {
        BenchCommand::Infer(a) => infer::run_infer(a),
        BenchCommand::Loss(a) => loss::bench_loss(a),
    }
}
