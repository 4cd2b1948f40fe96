//! `livedepth demo`: the end-to-end job behind `make demo` (see `livedepth::app::demo`).

use clap::Args as ClapArgs;
use livedepth::app::demo::{DemoOptions, SceneChoice, run_demo};
use std::path::PathBuf;

/// Replay a scene the model never adapted to (the real kitchen recording where ../shared is
/// present, else a rendered drive) through GStreamer at the camera's frame rate with live depth
/// and online adaptation, report the seven metrics frozen vs adapted, and write a side-by-side
/// video (input | frozen depth | adapted depth, abs_rel over time).
#[derive(ClapArgs, Debug)]
pub struct Args {
    /// Output folder.
    #[arg(long, default_value = "out/demo")]
    pub out: PathBuf,
    /// The scene: `auto` (the real recording ../shared/data/kitchen_val where it and the KITTI
    /// model are present, else `synthetic`), `synthetic`, `recorded`, or a 7-Scenes folder.
    #[arg(long, default_value = "auto")]
    pub scene: SceneChoice,
    /// Frames (default: the whole recording, or 120 of synthetic drive).
    #[arg(long)]
    pub frames: Option<usize>,
    /// Synthetic scene seed.
    #[arg(long, default_value_t = 2026)]
    pub seed: u64,
    /// Depth model: a folder with encoder.pth + depth.pth (default for the recorded scene:
    /// ../shared/models/rtmonodepth_s/m_640x192), a `livedepth train` folder (default for the
    /// synthetic scene: models/base_320x96) or a .safetensors file.
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// Adaptation steps per frame in the lock-step comparison (default: the adaptation
    /// default for the recorded scene, 2 for the synthetic one).
    #[arg(long)]
    pub steps: Option<usize>,
    /// libtorch threads (0 = libtorch's default; 1 is fastest on a busy 2-core machine).
    #[arg(long, default_value_t = 1)]
    pub threads: usize,
    /// Depth backend of the live replay: torch, onnxruntime, tensorrt, or auto (the fastest
    /// available here, measured at start-up). Adapted weights reach every backend.
    #[arg(long, value_name = "ENGINE", default_value = "torch")]
    pub engine: livedepth::engine::EngineKind,
    /// Skip the live GStreamer replay (only render and compare in lock-step).
    #[arg(long)]
    pub no_live: bool,
}

pub fn run(args: Args) -> livedepth::Result<()> {
    let report = run_demo(&DemoOptions {
        out: args.out,
        scene: args.scene,
        frames: args.frames,
        seed: args.seed,
        model: args.model,
        steps_per_frame: args.steps,
        live: !args.no_live,
        threads: (args.threads > 0).then_some(args.threads),
        engine: args.engine,
    })?;
    println!(
        "scene: {}: {} (ground truth {})",
        report.scene.description,
        report.video.display(),
        report.scene.dataset_spec
    );
    if let Some(live) = &report.live {
        println!("{}", live.summary());
    }
    println!(
        "model {} ({}x{}) on the {} scene, {} frames, lock-step, frozen vs adapted ({} steps \
         per frame, {} accepted, {} rollbacks):",
        report.model.path.display(),
        report.model.width,
        report.model.height,
        report.scene.kind,
        report.frozen.mean.frames,
        report.steps_per_frame,
        report.adapt_stats.steps,
        report.adapt_stats.rollbacks
    );
    print!("{}", report.table());
    println!("abs_rel per window (frames): frozen -> adapted");
    for w in &report.windows {
        println!(
            "  {:>4}-{:<4} {:.3} -> {:.3}",
            w.first_frame, w.last_frame, w.frozen_abs_rel, w.adapted_abs_rel
        );
    }
    for path in &report.outputs {
        println!("wrote {path}");
    }
    Ok(())
}
