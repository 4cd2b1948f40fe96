//! Command-line verbs. Each verb lives in its own file with its clap `Args` and a `run`.

#[cfg(feature = "torch")]
pub mod bench;

use clap::{Parser, Subcommand};

/// Real-time monocular depth from a live camera stream, with on-device adaptation.
#[derive(Parser, Debug)]
#[command(name = "livedepth", version, about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Benchmarks (`bench infer`: depth inference, Rust/libtorch vs PyTorch eager).
    #[cfg(feature = "torch")]
    Bench(bench::Args),
}

pub fn dispatch(cli: Cli) -> livedepth::Result<()> {
    match cli.command {
        #[cfg(feature = "torch")]
        Command::Bench(args) => bench::run(args),
    }
}
