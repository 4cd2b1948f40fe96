//! Command-line verbs. Each verb lives in its own file with its clap `Args` and a `run`.

#[cfg(all(feature = "torch", feature = "bench"))]
mod bench;
#[cfg(feature = "torch")]
mod demo;
#[cfg(feature = "torch")]
mod eval;
#[cfg(feature = "torch")]
mod export;
#[cfg(feature = "torch")]
mod fleet;
mod loss;
mod probe;
mod render;
#[cfg(feature = "torch")]
mod run;
#[cfg(feature = "torch")]
mod train;

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
    /// Open a source (camera, stream, file, test pattern), print its caps, size and framerate,
    /// and optionally save its first frames as PNGs.
    Probe(probe::Args),
    /// Render a synthetic drive with exact ground-truth depth and poses.
    Render(render::Args),
    /// Self-supervised loss file probe: npz inputs → losses, masks and gradients.
    Loss(loss::Args),
    /// The end-to-end demo: render a drive, replay it through GStreamer at the camera's frame rate
    /// with live depth and adaptation, score frozen vs adapted, write a side-by-side video.
    #[cfg(feature = "torch")]
    Demo(demo::Args),
    /// Live depth from a camera, stream, file or dataset, with per-stage statistics.
    #[cfg(feature = "torch")]
    Run(run::Args),
    /// Evaluate a depth model on a dataset with ground truth (the seven standard metrics).
    #[cfg(feature = "torch")]
    Eval(eval::Args),
    /// Benchmarks against peers measured in the same run (`infer`, `loss`, `adapt`,
    /// `live-adapt`, `recording`); left out of a build without the `bench` feature.
    #[cfg(all(feature = "torch", feature = "bench"))]
    Bench(bench::Args),
    /// Benchmarks: not in this build, which was made without the `bench` feature.
    #[cfg(not(all(feature = "torch", feature = "bench")))]
    Bench(NoBench),
    /// Train the depth and pose networks offline over datasets (self-supervised, optionally
    /// with supervised depth and pose where ground truth exists).
    #[cfg(feature = "torch")]
    Train(train::Args),
    /// Write a network as an ONNX model (opset 17) for onnxruntime or TensorRT.
    #[cfg(feature = "torch")]
    Export(export::Args),
    /// Merge the adapted weights a fleet shares over Zenoh (`run --adapt --zenoh`), validate the
    /// merge on a held-out replay and republish it.
    #[cfg(feature = "torch")]
    Fleet(fleet::Args),
}

/// What `livedepth bench` says in a build without the benchmarks.
#[cfg(not(all(feature = "torch", feature = "bench")))]
const NO_BENCH: &str = "livedepth bench: this binary was built without the `bench` feature \
    (benchmarks and the kernels' CPU twins are test code, left out of the product by default); \
    build it with `cargo build --release --features bench` (add `cuda` for the GPU benchmarks) \
    or run `make bench`";

/// The arguments of `livedepth bench` in a build without the benchmarks: taken whatever they
/// are, so that the answer is [`NO_BENCH`] rather than a parse error.
#[cfg(not(all(feature = "torch", feature = "bench")))]
#[derive(clap::Args, Debug)]
pub struct NoBench {
    #[arg(trailing_var_arg = true, allow_hyphen_values = true, hide = true)]
    _args: Vec<String>,
}

pub fn dispatch(cli: Cli) -> livedepth::Result<()> {
    match cli.command {
        Command::Probe(args) => probe::run(args),
        Command::Render(args) => render::run(args),
        Command::Loss(args) => loss::run(args),
        #[cfg(feature = "torch")]
        Command::Demo(args) => demo::run(args),
        #[cfg(feature = "torch")]
        Command::Run(args) => run::run(args),
        #[cfg(feature = "torch")]
        Command::Eval(args) => eval::run(args),
        #[cfg(all(feature = "torch", feature = "bench"))]
        Command::Bench(args) => bench::run(args),
        #[cfg(not(all(feature = "torch", feature = "bench")))]
        Command::Bench(_) => Err(livedepth::Error::Other(NO_BENCH.into())),
        #[cfg(feature = "torch")]
        Command::Train(args) => train::run(args),
        #[cfg(feature = "torch")]
        Command::Export(args) => export::run(args),
        #[cfg(feature = "torch")]
        Command::Fleet(args) => fleet::run(args),
    }
}
