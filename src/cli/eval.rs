//! `livedepth eval`: a depth model over a recorded dataset, scored with the seven standard
//! metrics under the Monodepth2 protocol; prints the table and optionally writes JSON.

use clap::Args as ClapArgs;
use livedepth::adapt::AdaptConfig;
use livedepth::app::adapt::{AdaptOptions, default_adapt_size, evaluate_adapt, windowed_abs_rel};
use livedepth::app::eval::{EvalOptions, evaluate};
use livedepth::eval::format_metrics_table;
use livedepth::model::Arch;
use livedepth::source::dataset::FrameSelection;
use std::path::PathBuf;

/// Evaluate a depth model on a dataset with ground truth.
#[derive(ClapArgs, Debug)]
pub struct Args {
    /// The dataset: kitti:DIR, kitchen:DIR or tum:DIR.
    #[arg(long)]
    pub dataset: String,
    /// Checkpoint folder (encoder.pth + depth.pth) or a .safetensors file.
    #[arg(long)]
    pub model: PathBuf,
    /// Network architecture: rtmonodepth-s, monodepth2-r18 or monodepth2-r50.
    #[arg(long, default_value = "rtmonodepth-s")]
    pub arch: String,
    /// Network input width (a multiple of 32). Default: 640, or with --adapt the width that
    /// keeps the camera's aspect at 96 rows (128 for a 4:3 camera).
    #[arg(long)]
    pub width: Option<u32>,
    /// Network input height (a multiple of 32). Default: 192, or 96 with --adapt.
    #[arg(long)]
    pub height: Option<u32>,
    /// Frames to evaluate: A..B (B excluded), A..=B, or START:END[:STEP]; all by default.
    #[arg(long)]
    pub frames: Option<String>,
    /// Take every Nth frame of the selection.
    #[arg(long, default_value_t = 1)]
    pub step: usize,
    /// Metric model: evaluate without per-frame median scaling.
    #[arg(long)]
    pub no_median_scaling: bool,
    /// Write the report (means and per-frame rows) to this JSON file.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Write an SVG plot of abs_rel and δ<1.25 per frame to this file.
    #[arg(long)]
    pub plot: Option<PathBuf>,
    /// Hide the progress bar.
    #[arg(long)]
    pub quiet: bool,
    /// Depth backend: torch, onnxruntime, tensorrt, or auto (the fastest available here,
    /// measured at start-up). With --adapt only torch (the network that adapts) is scored.
    #[arg(long, value_name = "ENGINE", default_value = "torch")]
    pub engine: livedepth::engine::EngineKind,
    /// Metric scale without ground truth: `none` (the network's units), `ground` (fits the
    /// road plane in each depth map; needs --camera-height) or `speed` (metres travelled, from
    /// --speed-file or the dataset's ground-truth positions, against the adapter's motion; it
    /// also supervises the pose network's translation; needs --adapt). Use with
    /// --no-median-scaling to score metres; the report gives the median ratio of ground truth
    /// to prediction.
    #[arg(long, value_name = "SOURCE", default_value = "none")]
    pub metric_scale: String,
    /// The camera's height above the road in metres, for --metric-scale ground (KITTI: 1.65).
    #[arg(long, value_name = "M")]
    pub camera_height: Option<f64>,
    /// The vehicle's speed for --metric-scale speed: CSV `time,speed` (seconds on the frames'
    /// clock, metres per second) or JSON lines {"time": .., "speed": ..}. Without it, the
    /// dataset's ground-truth camera positions stand in for the odometry.
    #[arg(long, value_name = "FILE")]
    pub speed_file: Option<PathBuf>,
    #[command(flatten)]
    pub adapt: Box<AdaptArgs>,
}

/// Online adaptation (`--adapt`): deterministic lock-step, each frame predicted and scored with
/// the current weights, then S adaptation steps.
#[derive(ClapArgs, Debug, Clone)]
pub struct AdaptArgs {
    /// Adapt the model online while evaluating.
    #[arg(long)]
    pub adapt: bool,
    /// Adaptation settings (TOML of AdaptConfig); the flags below override it.
    #[arg(long)]
    pub adapt_config: Option<PathBuf>,
    /// Adam learning rate of the depth network.
    #[arg(long)]
    pub lr: Option<f64>,
    /// Adam learning rate of the pose network.
    #[arg(long)]
    pub pose_lr: Option<f64>,
    /// Which layers adapt: all, decoder or norm-bias.
    #[arg(long)]
    pub adapt_layers: Option<String>,
    /// Adaptation steps per frame (S; 0 = frozen through the same code path).
    #[arg(long)]
    pub steps_per_frame: Option<usize>,
    /// Replayed triplets per step (0 = no replay).
    #[arg(long)]
    pub replay: Option<usize>,
    /// Turn self-distillation off.
    #[arg(long)]
    pub no_distill: bool,
    /// Distillation teacher: frozen or ema.
    #[arg(long)]
    pub teacher: Option<String>,
    /// Distillation weight λ (the weight at step n is λ·max(γⁿ, floor)).
    #[arg(long)]
    pub distill_lambda: Option<f64>,
    /// Distillation forgetting factor γ per step, in (0, 1].
    #[arg(long)]
    pub distill_gamma: Option<f64>,
    /// Floor of the distillation forgetting factor, in [0, 1] (0 = decay to nothing).
    #[arg(long)]
    pub distill_floor: Option<f64>,
    /// Forgetting guard: fraction ρ of the way each adapted weight moves back to its start
    /// value after every step, in [0, 1) (decoupled L2-SP; 0 = off).
    #[arg(long)]
    pub anchor_pull: Option<f64>,
    /// Turn the forgetting guards off (anchor pull 0 and distillation floor 0).
    #[arg(long)]
    pub no_forgetting_guard: bool,
    /// Turn the multi-view consistency mask of the distillation off.
    #[arg(long)]
    pub no_multiview_mask: bool,
    /// Turn auto-masking of the self-supervised loss off.
    #[arg(long)]
    pub no_automask: bool,
    /// Turn the held-back rollback guard off.
    #[arg(long)]
    pub no_rollback: bool,
    /// Pose network weights (folder with pose_encoder.pth + pose.pth, or safetensors). Default:
    /// the pose network of a `train` output folder given as --model, else a fresh one.
    #[arg(long)]
    pub pose_model: Option<PathBuf>,
    /// Pose network start without --pose-model: random or encoder (from the depth encoder).
    #[arg(long, default_value = "encoder")]
    pub pose_init: String,
    /// Checkpoint file (safetensors) written every --checkpoint-every steps and at the end.
    #[arg(long)]
    pub checkpoint: Option<PathBuf>,
    /// Checkpoint cadence in accepted steps (0 = only at the end).
    #[arg(long)]
    pub checkpoint_every: Option<u64>,
    /// `run --adapt` only: when the adaptation thread fails (e.g. a checkpoint cannot be
    /// written), `continue` serving depth with the last published weights or `stop` the run.
    /// Either way the failure is shown at once and the exit code is non-zero.
    #[arg(long, default_value = "continue")]
    pub adapt_on_failure: String,
    /// `run --adapt` only: the share of the time the live path gives the adapter once it has
    /// got nothing done for 10 s while the live path kept the CPU (an unpaced replay, a camera
    /// faster than the forward pass); 0 never yields, at most 0.9.
    #[arg(long, default_value_t = livedepth::app::adapt_share::DEFAULT_MIN_SHARE)]
    pub adapt_min_share: f64,
    /// Continue from an adaptation checkpoint.
    #[arg(long)]
    pub resume: Option<PathBuf>,
    /// Random seed of the adaptation.
    #[arg(long)]
    pub seed: Option<u64>,
    /// Write a per-frame diagnosis CSV (adapted, frozen and served abs_rel; the never-worse
    /// guard's scores; pose-network motion against the ground truth) to this file.
    #[arg(long)]
    pub diagnose: Option<PathBuf>,
    /// Test-time pose refinement: Rprop iterations of direct photometric alignment per sample
    /// (0 = off).
    #[arg(long)]
    pub pose_refine: Option<usize>,
    /// Also refine from the network's translations reversed and keep the lower loss
    /// (true|false).
    #[arg(long, value_name = "BOOL")]
    pub pose_refine_mirrored: Option<bool>,
    /// Turn the never-worse guard off (always serve the adapted weights).
    #[arg(long)]
    pub no_serve_guard: bool,
    /// With --adapt: the camera's orientation per frame, where the pose refinement starts its
    /// rotations: a CSV `time,qw,qx,qy,qz` (camera-to-world, camera axes, seconds on the
    /// frames' clock) from a gyro's attitude estimate, `ground-truth` (a dataset's poses
    /// standing in for one), or, for `run`, `zenoh:KEY` (the same samples published live) or
    /// `mcap:TOPIC[?camera_in_imu=qw,qx,qy,qz]` (a sensor_msgs/msg/Imu attitude topic of the
    /// replayed bag; by default the camera looks along the IMU's x axis).
    #[arg(long, value_name = "FILE|ground-truth|zenoh:KEY|mcap:TOPIC")]
    pub gyro: Option<String>,
}

impl AdaptArgs {
    /// Refuses a `--gyro` that cannot be used, naming the flag: one without `--adapt`, a Zenoh
    /// key in a lock-step replay (`live` false) or a key that is not one key.
    pub fn check_gyro(&self, live: bool) -> livedepth::Result<()> {
        let Some(gyro) = &self.gyro else { return Ok(()) };
        let refuse = |why: String| Err(livedepth::Error::Other(format!("--gyro {gyro}: {why}")));
        if !self.adapt {
            return refuse(
                "the orientations start the adapter's pose refinement; add --adapt".into(),
            );
        }
        match (livedepth::app::gyro::GyroSource::from_flag(gyro), live) {
            (livedepth::app::gyro::GyroSource::Zenoh(_), false) => refuse(
                "a live topic is read by `run --adapt` only; a lock-step replay takes a recorded \
                 track: --gyro FILE (time,qw,qx,qy,qz)"
                    .into(),
            ),
            (livedepth::app::gyro::GyroSource::Zenoh(key), true) => {
                livedepth::sink::zenoh_live::check_input_key(&key).or_else(refuse)
            }
            (livedepth::app::gyro::GyroSource::Bag(_), false) => refuse(
                "reads an IMU topic of the bag a live run replays (`run --adapt --source \
                 mcap://FILE`); a lock-step replay takes a recorded track: --gyro FILE \
                 (time,qw,qx,qy,qz) or ground-truth"
                    .into(),
            ),
            (livedepth::app::gyro::GyroSource::Bag(spec), true) => {
                livedepth::app::gyro_bag::ImuTopic::parse(&spec).map(|_| ()).or_else(refuse)
            }
            _ => Ok(()),
        }
    }

    /// The adaptation options these flags describe.
    pub fn options(&self) -> livedepth::Result<AdaptOptions> {
        let mut config = match &self.adapt_config {
            Some(path) => {
                let text =
                    std::fs::read_to_string(path).map_err(|e| livedepth::Error::io(path, e))?;
                toml::from_str::<AdaptConfig>(&text)
                    .map_err(|e| livedepth::Error::Other(format!("{}: {e}", path.display())))?
            }
            None => AdaptConfig::default(),
        };
        if let Some(v) = self.lr {
            config.learning_rate = v;
        }
        if let Some(v) = self.pose_lr {
            config.pose_learning_rate = v;
        }
        if let Some(v) = &self.adapt_layers {
            config.layers = v.parse()?;
        }
        if let Some(v) = self.steps_per_frame {
            config.steps_per_frame = v;
        }
        if let Some(v) = self.replay {
            config.replay_per_step = v;
        }
        if self.no_distill {
            config.distill.enabled = false;
        }
        if let Some(v) = &self.teacher {
            config.distill.teacher = v.parse()?;
        }
        if let Some(v) = self.distill_lambda {
            config.distill.lambda = v;
        }
        if let Some(v) = self.distill_gamma {
            config.distill.gamma = v;
        }
        if let Some(v) = self.distill_floor {
            config.distill.lambda_floor = v;
        }
        if let Some(v) = self.anchor_pull {
            config.guards.anchor_pull = v;
        }
        if self.no_forgetting_guard {
            config.guards.anchor_pull = 0.0;
            config.distill.lambda_floor = 0.0;
        }
        if self.no_multiview_mask {
            config.distill.multiview_mask = false;
        }
        if self.no_automask {
            config.loss.automask = false;
        }
        if self.no_rollback {
            config.guards.rollback = false;
        }
        if let Some(v) = self.checkpoint_every {
            config.checkpoint_every = v;
        }
        if let Some(v) = self.seed {
            config.seed = v;
        }
        if let Some(v) = self.pose_refine {
            config.pose_refine_iterations = v;
        }
        if let Some(v) = self.pose_refine_mirrored {
            config.pose_refine_mirrored = v;
        }
        if self.no_serve_guard {
            config.guards.serve_guard = false;
        }
        config.validate()?;
        Ok(AdaptOptions {
            config,
            pose_model: self.pose_model.clone(),
            pose_init: self.pose_init.parse()?,
            checkpoint: self.checkpoint.clone(),
            resume: self.resume.clone(),
            print_every: 25,
            diagnose: self.diagnose.clone(),
            gyro: self.gyro.as_deref().map(livedepth::app::gyro::GyroSource::from_flag),
            on_failure: self.adapt_on_failure.parse()?,
            min_share: {
                livedepth::app::adapt_share::check_min_share(self.adapt_min_share)?;
                self.adapt_min_share
            },
        })
    }
}

/// The network input size: the flags, else 640x192, else (with --adapt) the adaptation
/// default for the dataset's camera ([`default_adapt_size`], from the first frame's size).
fn network_size(args: &Args) -> livedepth::Result<(u32, u32)> {
    match (args.width, args.height, args.adapt.adapt) {
        (Some(w), Some(h), _) => Ok((w, h)),
        (None, None, true) => {
            let dataset = livedepth::source::dataset::open_dataset(&args.dataset)
                .map_err(livedepth::source::SourceError::from)?;
            let first = dataset.frame(0).map_err(livedepth::source::SourceError::from)?;
            let (w, h) = default_adapt_size(first.rgb.width, first.rgb.height);
            eprintln!(
                "eval --adapt: network input {w}x{h} (the adaptation default; --width/--height override)"
            );
            Ok((w, h))
        }
        (None, None, false) => {
            // A folder that records its training size (`livedepth train` output, or an
            // encoder.pth with width/height) runs at that size.
            let trained = if args.model.is_dir() {
                livedepth::model::trained_input_size(&args.model).ok().flatten()
            } else {
                None
            };
            if let Some((w, h)) = trained {
                eprintln!(
                    "eval: network input {w}x{h}, the size {} was trained at",
                    args.model.display()
                );
            }
            Ok(trained.unwrap_or((640, 192)))
        }
        _ => Err(livedepth::Error::Other(
            "--width and --height: give both or neither (then 640x192, or with --adapt the \
             adaptation default for the camera)"
                .into(),
        )),
    }
}

pub fn run(args: Args) -> livedepth::Result<()> {
    let arch: Arch = args.arch.parse()?;
    let mut selection = match &args.frames {
        Some(text) => FrameSelection::parse(text).map_err(livedepth::source::SourceError::from)?,
        None => FrameSelection::all(),
    };
    if args.step == 0 {
        return Err(livedepth::Error::Other(
            "--step: expected a whole number of at least 1".into(),
        ));
    }
    selection.step *= args.step;
    let (width, height) = network_size(&args)?;
    let options = EvalOptions {
        dataset: args.dataset.clone(),
        model: args.model.clone(),
        arch,
        width,
        height,
        selection,
        no_median_scaling: args.no_median_scaling,
        json: args.json.clone(),
        plot: args.plot.clone(),
        progress: !args.quiet,
        engine: args.engine,
        metric_scale: livedepth::scale::MetricScale::from_flags(
            &args.metric_scale,
            args.camera_height,
            args.speed_file.as_deref(),
            None,
        )
        .map_err(livedepth::Error::Other)?,
    };
    args.adapt.check_gyro(false)?;
    if args.adapt.adapt && args.engine != livedepth::engine::EngineKind::Torch {
        return Err(livedepth::Error::Other(format!(
            "--engine {} with --adapt: the lock-step evaluation scores the adapting libtorch \
             network itself; drop --engine, or use `run --adapt --engine {}`, where adapted \
             weights reach that backend",
            args.engine, args.engine
        )));
    }
    let report = if args.adapt.adapt {
        let adapt = args.adapt.options()?;
        let (report, stats) = evaluate_adapt(&options, &adapt)?;
        println!(
            "adaptation: {} steps, {} rejected, {} stationary skips, {} rollbacks, {} triplets",
            stats.steps, stats.rejected, stats.skipped_stationary, stats.rollbacks, stats.triplets
        );
        for (first, last, abs_rel) in windowed_abs_rel(&report, 50) {
            println!("  frames {first:>4}..={last:<4} abs_rel {abs_rel:.4}");
        }
        report
    } else {
        evaluate(&options)?
    };
    println!(
        "{} on {} ({} frames, {}x{}, {}median scaling: ratio of ground truth to prediction, \
         median {:.3}, std {:.3}{})",
        report.arch,
        report.dataset,
        report.mean.frames,
        report.width,
        report.height,
        if report.protocol.median_scaling { "" } else { "no " },
        report.mean.scale_ratio_median,
        report.mean.scale_ratio_std,
        if report.protocol.median_scaling { ", applied" } else { " (1 = metric)" }
    );
    if let Some(scale) = &report.metric_scale {
        println!(
            "metric scale ({}): median {:.3} m per unit (std {:.3}); {} frames measured, {} \
             used the previous scale, {} unscaled",
            scale.source.name(),
            scale.scale_median,
            scale.scale_std,
            scale.measured,
            scale.previous,
            scale.unscaled
        );
    }
    println!("{}", format_metrics_table(&report.values()));
    for path in args.json.iter().chain(&args.plot) {
        println!("wrote {}", path.display());
    }
    Ok(())
}
