//! Command-line verbs. Each verb lives in its own file with its clap `Args` and a `run`.

mod render;

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
    /// Render a synthetic drive with exact ground-truth depth and poses.
    Render(render::Args),
}

pub fn dispatch(cli: Cli) -> livedepth::Result<()> {
    match cli.command {
        Command::Render(args) => render::run(args),
    }
}
