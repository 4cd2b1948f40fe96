//! The `livedepth` command line: a thin layer over the library, one module per verb in cli/.

mod cli;

use clap::Parser;

/// Prints the library's log events (src/ logs through `tracing`) to stderr as plain lines, the
/// message alone; `LIVEDEPTH_LOG=error|warn|info|debug|trace` sets the level (default info).
fn init_logging() {
    use tracing::Level;
    let level = match std::env::var("LIVEDEPTH_LOG").ok().as_deref().map(str::trim) {
        Some("error") => Level::ERROR,
        Some("warn") => Level::WARN,
        Some("info") | Some("") | None => Level::INFO,
        Some("debug") => Level::DEBUG,
        Some("trace") => Level::TRACE,
        Some(other) => {
            eprintln!(
                "warning: LIVEDEPTH_LOG=`{other}` is not one of error, warn, info, debug, trace; \
                 logging at info"
            );
            Level::INFO
        }
    };
    // A second initialisation (impossible here) would only be refused; nothing to report.
    let _ = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_max_level(level)
        .without_time()
        .with_target(false)
        .with_level(false)
        .with_ansi(false)
        .try_init();
}

fn main() -> std::process::ExitCode {
    let args = cli::Cli::parse();
    init_logging();
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
