//! Command-line verbs. Each verb lives in its own file with its clap `Args` and a `run`.

pub mod bench;
pub mod loss;

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
    /// Self-supervised loss file probe: npz inputs → losses, masks and gradients.
    Loss(loss::Args),
    /// Benchmarks.
    Bench(bench::Args),
}

pub fn dispatch(cli: Cli) -> livedepth::Result<()> {
    match cli.command {
        Command::Loss(args) => loss::run(args),
        Command::Bench(args) => bench::run(args),
    }
}
