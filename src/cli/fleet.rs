//! `livedepth fleet`: merges the adapted weights a fleet's devices share over Zenoh, validates
//! the merge on a held-out replay and republishes it (the work is in `livedepth::app::fleet`).

use clap::Args as ClapArgs;
use livedepth::app::fleet::{FleetOptions, merge_checkpoints, run_fleet};
use livedepth::sink::zenoh_live::ZenohConfig;
use livedepth::source::dataset::FrameSelection;
use std::path::PathBuf;
use std::time::Duration;

/// Merge a fleet's shared adapted weights (federated averaging of the deltas from one base).
#[derive(ClapArgs, Debug)]
pub struct Args {
    /// The base model every device started adapting from (folder or safetensors).
    #[arg(long)]
    pub model: PathBuf,
    /// Depth architecture: rtmonodepth-s, monodepth2-r18 or monodepth2-r50.
    #[arg(long, default_value = "rtmonodepth-s")]
    pub arch: String,
    /// The fleet: weights are read from livedepth/<fleet>/weights/* and the merge is put on
    /// livedepth/<fleet>/weights/merged.
    #[arg(long, default_value = "default")]
    pub fleet: String,
    /// Zenoh endpoint to listen on (repeatable), e.g. tcp/0.0.0.0:7447.
    #[arg(long, value_name = "ENDPOINT")]
    pub zenoh_listen: Vec<String>,
    /// Zenoh endpoint to connect to (repeatable).
    #[arg(long, value_name = "ENDPOINT")]
    pub zenoh_connect: Vec<String>,
    /// Merge once this many devices have sent new weights.
    #[arg(long, default_value_t = 2)]
    pub min_devices: usize,
    /// Stop after this many merges (0: run until stopped).
    #[arg(long, default_value_t = 0)]
    pub rounds: usize,
    /// Give up after this many seconds (0: never).
    #[arg(long, default_value_t = 0.0)]
    pub timeout_s: f64,
    /// A held-out replay with ground truth to validate each merge on (kitchen:DIR, tum:DIR,
    /// kitti:DIR); a merge that scores worse than the base is not republished.
    #[arg(long)]
    pub validate: Option<String>,
    /// Frames of the held-out replay to score (from its start).
    #[arg(long, default_value_t = 50)]
    pub frames: usize,
    /// Network input size for validation.
    #[arg(long, default_value_t = 128)]
    pub width: u32,
    #[arg(long, default_value_t = 96)]
    pub height: u32,
    /// Where the merged weights and fleet_report.json go.
    #[arg(long, default_value = "out/fleet")]
    pub out: PathBuf,
    /// Offline, without Zenoh: merge these adapter checkpoints (the --checkpoint files of
    /// `eval --adapt` or `run --adapt` from --model) once, and score the base, each device's
    /// own weights and the merge on --validate.
    #[arg(long, value_name = "FILE", num_args = 1..)]
    pub merge_checkpoints: Vec<PathBuf>,
}

pub fn run(args: Args) -> livedepth::Result<()> {
    let arch = livedepth::export::parse_arch(&args.arch)
        .map_err(|e| livedepth::Error::Other(e.to_string()))?;
    let zenoh = ZenohConfig {
        listen: args.zenoh_listen,
        connect: args.zenoh_connect,
        fleet: args.fleet,
        device: "fleet".into(),
        ..ZenohConfig::default()
    };
    if let Err((field, expected, found)) = zenoh.check() {
        let flag = field.split_once('(').map_or(field, |(_, f)| f.trim_end_matches(')'));
        return Err(livedepth::Error::Other(format!("{flag}: expected {expected}, found {found}")));
    }
    if args.min_devices == 0 {
        return Err(livedepth::Error::Other("--min-devices: expected at least 1, found 0".into()));
    }
    let options = FleetOptions {
        zenoh,
        model: args.model,
        arch,
        min_devices: args.min_devices,
        rounds: args.rounds,
        timeout: (args.timeout_s > 0.0).then(|| Duration::from_secs_f64(args.timeout_s)),
        validate: args.validate.map(|dataset| {
            let selection = FrameSelection { end: Some(args.frames), ..FrameSelection::all() };
            (dataset, selection, args.width, args.height)
        }),
        out: args.out,
    };
    let report = if args.merge_checkpoints.is_empty() {
        run_fleet(&options)?
    } else {
        merge_checkpoints(&options, &args.merge_checkpoints)?
    };
    for device in &report.device_scores {
        println!(
            "device {} ({} steps): held-out abs_rel {}",
            device.device,
            device.accepted_steps,
            device.abs_rel.map_or("-".into(), |v| format!("{v:.4}"))
        );
    }
    for round in &report.rounds {
        println!(
            "round {}: {:?} → {} (held-out abs_rel base {} merged {}){}",
            round.round,
            round.devices,
            round.weights.display(),
            round.base_abs_rel.map_or("-".into(), |v| format!("{v:.4}")),
            round.merged_abs_rel.map_or("-".into(), |v| format!("{v:.4}")),
            if round.republished {
                ", republished".to_owned()
            } else {
                format!(", held back: {}", round.held_back.clone().unwrap_or_default())
            }
        );
    }
    Ok(())
}
