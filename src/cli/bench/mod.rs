//! `livedepth bench`: benchmarks, each printing a ratio against a peer measured in the same run.

mod adapt;
mod infer;
mod infer_engines;
mod live_adapt;
mod loss;
mod recording;

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
    /// One end-to-end adaptation step and the live-frame latency, GPU vs CPU.
    Adapt(adapt::AdaptBenchArgs),
    /// Live depth on a paced 30 fps GStreamer replay, without and with online adaptation.
    LiveAdapt(live_adapt::LiveAdaptBenchArgs),
    /// What crash-safe recording costs: fragmented in-place MP4 vs one-go faststart MP4.
    Recording(recording::RecordingBenchArgs),
}

pub fn run(args: Args) -> livedepth::Result<()> {
    match args.command {
        BenchCommand::Infer(a) => infer::run_infer(a),
        BenchCommand::Loss(a) => loss::bench_loss(a),
        BenchCommand::Adapt(a) => adapt::bench_adapt(a),
        BenchCommand::LiveAdapt(a) => live_adapt::bench_live_adapt(a),
        BenchCommand::Recording(a) => recording::bench_recording(a),
    }
}
