//! The `livedepth` command line: a thin layer over the library, one module per verb in cli/.

mod cli;

use clap::Parser;

fn main() -> std::process::ExitCode {
    let args = cli::Cli::parse();
    // Before any libtorch work: libtorch settles once whether CUDA exists (engine::torch_cuda).
    #[cfg(feature = "torch")]
    livedepth::engine::preload_torch_cuda();
    match cli::dispatch(args) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
