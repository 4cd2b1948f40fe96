//! Shared adaptation over Zenoh, both sides:
//! - [`FleetShare`]: a device running `run --adapt --zenoh` puts its adapted weights (with the
//!   base model's hash and its accepted steps) under `livedepth/<fleet>/weights/<device>`, at
//!   most every [`SHARE_EVERY`] and once more when adaptation ends, and with
//!   `--zenoh-pull-weights` continues from each merge the fleet republishes for its base
//!   ([`super::fleet_merges`]);
//! - [`run_fleet`] (`livedepth fleet`): subscribes to the fleet's weights, keeps each device's
//!   newest, and once enough devices sent new ones merges them ([`crate::fleet::merge`]),
//!   validates the merge against the base on a held-out replay with ground truth, writes the
//!   round's weights and `fleet_report.json`, and republishes the merge under
//!   `livedepth/<fleet>/weights/merged` unless it scored worse than the base; it also answers
//!   queries on that key with its newest merge, so that devices started later catch up.

use super::fleet_merges::MergeInbox;
use crate::adapt::Adapter;
use crate::app::eval::{EvalOptions, evaluate};
use crate::engine::EngineKind;
use crate::fleet::{
    DeviceWeights, MERGED_DEVICE, base_hash, decode_weights, encode_weights, merge, weights_key,
};
use crate::model::Arch;
use crate::model::network::{DepthNetwork, var_store_checkpoint};
use crate::scale::MetricScale;
use crate::sink::metrics::write_summary_json;
use crate::sink::zenoh_live::ZenohConfig;
use crate::source::dataset::FrameSelection;
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use zenoh::Wait;
use zenoh::qos::CongestionControl;

/// How often a device shares its adapted weights at most.
pub const SHARE_EVERY: Duration = Duration::from_secs(10);

/// A device's side: shares the adapter's weights with the fleet, and continues from the merges
/// the fleet republishes for the same base.
pub struct FleetShare {
    session: zenoh::Session,
    /// The fleet's merges, when the device pulls them (`--zenoh-pull-weights`).
    merges: Option<MergeInbox>,
    key: String,
    device: String,
    base: String,
    shared_steps: Option<u64>,
    last: Option<Instant>,
}

impl FleetShare {
    /// Shares on `session` (the process's one, the live view's) for `zenoh`'s fleet and
    /// device, and pulls the fleet's merges when `zenoh.pull_weights`; `base` is the network
    /// adaptation starts from.
    pub fn new(
        session: zenoh::Session,
        zenoh: &ZenohConfig,
        base: &DepthNetwork,
    ) -> crate::Result<Self> {
        let base = network_hash(base)?;
        let merges = match zenoh.pull_weights {
            true => Some(MergeInbox::open(&session, &zenoh.fleet, base.clone())?),
            false => None,
        };
        Ok(Self {
            session,
            merges,
            key: weights_key(&zenoh.fleet, &zenoh.device),
            device: zenoh.device.clone(),
            base,
            shared_steps: None,
            last: None,
        })
    }

    /// Shares the adapted weights when there are new accepted steps and [`SHARE_EVERY`] has
    /// passed, or at once with `last` (when adaptation ends, whatever it reached: a device
    /// without accepted steps then adds nothing to a merge); a failure is logged, never fatal
    /// to adaptation.
    pub fn maybe_share(&mut self, adapter: &Adapter, last: bool) {
        let steps = adapter.stats().steps;
        let due = steps > 0 && self.last.is_none_or(|t| t.elapsed() >= SHARE_EVERY);
        if self.shared_steps == Some(steps) || !(due || last) {
            return;
        }
        match self.share(adapter, steps, last) {
            Ok(bytes) => {
                tracing::info!("fleet: shared {} steps ({bytes} bytes) on {}", steps, self.key);
                self.shared_steps = Some(steps);
                self.last = Some(Instant::now());
            }
            Err(e) => tracing::warn!("fleet: sharing weights on {}: {e}", self.key),
        }
    }

    /// Continues from the newest merge of this base waiting for this fleet (with
    /// `--zenoh-pull-weights`); never waits.
    pub fn adopt_merge(&mut self, adapter: &mut Adapter) {
        let Some(merges) = self.merges.as_mut() else { return };
        let Some(merge) = merges.newest() else { return };
        let key = merges.key();
        match adapter.adopt(&merge.weights.checkpoint) {
            Ok(()) => tracing::info!(
                "fleet: continuing from the {} on {key} ({} steps across the fleet)",
                merge.origin,
                merge.weights.accepted_steps
            ),
            Err(e) => tracing::warn!("fleet: cannot adopt the merge on {key}: {e}"),
        }
    }

    /// Puts the weights. Under congestion the final share (`last`), which nothing replaces,
    /// waits for room; a periodic share is dropped (Zenoh's default for a put), since the next
    /// one replaces it and Zenoh closes a link that stays full for 5 s while a put waits.
    fn share(&self, adapter: &Adapter, steps: u64, last: bool) -> crate::Result<usize> {
        let student = adapter.student();
        let arch = student.arch().name();
        let scene = scene_statistics(adapter);
        let metadata = [("arch", arch), (SCENE_KEY, scene.as_str())];
        let checkpoint =
            var_store_checkpoint(student.var_store(), Path::new(&self.key), &metadata)?;
        let bytes = encode_weights(&checkpoint, &self.device, &self.base, steps)
            .map_err(|e| crate::Error::Other(e.to_string()))?;
        let len = bytes.len();
        let congestion = match last {
            true => CongestionControl::Block,
            false => CongestionControl::Drop,
        };
        put_weights(&self.session, &self.key, bytes, congestion)?;
        Ok(len)
    }
}

/// Puts a weights message (safetensors) on `key`, at low priority so that it never delays the
/// live view's frames on the same session.
fn put_weights(
    session: &zenoh::Session,
    key: &str,
    bytes: Vec<u8>,
    congestion: CongestionControl,
) -> crate::Result<()> {
    session
        .put(key, bytes)
        .encoding(zenoh::bytes::Encoding::APPLICATION_OCTET_STREAM.with_schema("safetensors"))
        .congestion_control(congestion)
        .priority(zenoh::qos::Priority::DataLow)
        .wait()
        .map_err(|e| crate::Error::Other(format!("zenoh put {key}: {e}")))
}

/// The fleet hash of a depth network's weights (what merges are checked against).
pub fn network_hash(network: &DepthNetwork) -> crate::Result<String> {
    Ok(base_hash(&var_store_checkpoint(network.var_store(), Path::new("<base>"), &[])?))
}

/// Metadata key of the scene statistics a device shares with its weights (JSON).
pub const SCENE_KEY: &str = "fleet.scene";

/// What the device adapted on, as JSON: frames and triplets seen, the live sample's photometric
/// loss and auto-masked fraction, what the never-worse guard serves and its adapted / frozen
/// loss ratio.
fn scene_statistics(adapter: &Adapter) -> String {
    let stats = adapter.stats();
    serde_json::json!({
        "triplets": stats.triplets,
        "steps": stats.steps,
        "photometric_loss": stats.last_photometric,
        "masked_fraction": stats.last_masked_fraction,
        "serving": stats.serving,
        "serve_ratio": stats.serve_ratio.is_finite().then_some(stats.serve_ratio),
    })
    .to_string()
}

/// What `livedepth fleet` does.
#[derive(Clone, Debug)]
pub struct FleetOptions {
    pub zenoh: ZenohConfig,
    /// The base model every device adapted (checkpoint folder or safetensors).
    pub model: PathBuf,
    pub arch: Arch,
    /// Merge once this many devices have sent weights newer than the last merge.
    pub min_devices: usize,
    /// Stop after this many merges (0: never).
    pub rounds: usize,
    /// Stop after this long without finishing (None: never).
    pub timeout: Option<Duration>,
    /// A held-out replay with ground truth (`kitchen:DIR`, …), its frames, and the network size.
    pub validate: Option<(String, FrameSelection, u32, u32)>,
    pub out: PathBuf,
}

/// One device's weights scored alone on the held-out replay (the offline merge,
/// [`merge_checkpoints`]).
#[derive(Clone, Debug, Serialize)]
pub struct DeviceScore {
    pub device: String,
    pub accepted_steps: u64,
    pub abs_rel: Option<f64>,
}

/// One merge, as `fleet_report.json` lists it.
#[derive(Clone, Debug, Serialize)]
pub struct FleetRound {
    pub round: usize,
    pub devices: Vec<String>,
    pub accepted_steps: Vec<u64>,
    pub weights: PathBuf,
    /// abs_rel of the base and of the merge on the held-out replay (median-scaled).
    pub base_abs_rel: Option<f64>,
    pub merged_abs_rel: Option<f64>,
    pub republished: bool,
    /// Why it was not republished, if it was not.
    pub held_back: Option<String>,
}

/// The whole run of `livedepth fleet`.
#[derive(Clone, Debug, Default, Serialize)]
pub struct FleetReport {
    pub fleet: String,
    pub base: String,
    pub rounds: Vec<FleetRound>,
    /// Messages that could not be used, with why.
    pub ignored: Vec<String>,
    /// The offline merge: each device's own weights on the held-out replay.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub device_scores: Vec<DeviceScore>,
}

/// abs_rel of `model` on the held-out replay.
fn held_out_abs_rel(options: &FleetOptions, model: &Path) -> crate::Result<Option<f64>> {
    let Some((dataset, selection, width, height)) = &options.validate else { return Ok(None) };
    let report = evaluate(&EvalOptions {
        dataset: dataset.clone(),
        model: model.to_path_buf(),
        arch: options.arch,
        width: *width,
        height: *height,
        selection: *selection,
        no_median_scaling: false,
        json: None,
        plot: None,
        progress: false,
        engine: EngineKind::Torch,
        metric_scale: MetricScale::None,
    })?;
    Ok(Some(report.mean.abs_rel))
}

/// What both ways of merging start from: the output folder made, the base model's variables
/// (tagged with the architecture), a report naming the fleet and the base's hash, and the
/// base's held-out abs_rel.
fn start_report(
    options: &FleetOptions,
) -> crate::Result<(crate::model::checkpoint::Checkpoint, FleetReport, Option<f64>)> {
    crate::tempfiles::create_output_dir(&options.out, "--out")?;
    let base_net = DepthNetwork::load(&options.model, options.arch, tch::Device::Cpu)?;
    let arch = options.arch.name();
    let base = var_store_checkpoint(base_net.var_store(), &options.model, &[("arch", arch)])?;
    let report = FleetReport {
        fleet: options.zenoh.fleet.clone(),
        base: base_hash(&base),
        ..Default::default()
    };
    let base_abs_rel = held_out_abs_rel(options, &options.model)?;
    Ok((base, report, base_abs_rel))
}

/// Runs the fleet merger until `rounds` merges are done (or the timeout passes).
pub fn run_fleet(options: &FleetOptions) -> crate::Result<FleetReport> {
    let (base, mut report, base_abs_rel) = start_report(options)?;
    let fleet = &options.zenoh.fleet;
    let session = options.zenoh.open().map_err(|e| crate::Error::Other(format!("--zenoh: {e}")))?;
    let wildcard = format!("livedepth/{fleet}/weights/*");
    let subscriber = session
        .declare_subscriber(&wildcard)
        .wait()
        .map_err(|e| crate::Error::Other(format!("zenoh subscriber {wildcard}: {e}")))?;
    let merged_key = weights_key(fleet, MERGED_DEVICE);
    // Devices that start later ask for the newest merge: answered from here.
    let newest_merge: Arc<Mutex<Option<Vec<u8>>>> = Arc::default();
    let answer = Arc::clone(&newest_merge);
    let _queryable = session
        .declare_queryable(&merged_key)
        .callback(move |query| {
            let merge = answer.lock().map(|m| m.clone()).unwrap_or_else(|p| p.into_inner().clone());
            if let Some(bytes) = merge
                && let Err(e) = query.reply(query.key_expr().clone(), bytes).wait()
            {
                tracing::warn!("fleet: answering a query for the newest merge: {e}");
            }
        })
        .wait()
        .map_err(|e| crate::Error::Other(format!("zenoh queryable {merged_key}: {e}")))?;
    tracing::info!("fleet: waiting for {} devices' weights on {wildcard}", options.min_devices);
    let started = Instant::now();
    let mut newest: BTreeMap<String, DeviceWeights> = BTreeMap::new();
    while options.rounds == 0 || report.rounds.len() < options.rounds {
        if options.timeout.is_some_and(|t| started.elapsed() > t) {
            return Err(crate::Error::Other(format!(
                "fleet: timed out after {:?} with {} of {} rounds ({} devices heard: {:?})",
                started.elapsed(),
                report.rounds.len(),
                options.rounds,
                newest.len(),
                newest.keys().collect::<Vec<_>>()
            )));
        }
        let sample = subscriber
            .recv_timeout(Duration::from_millis(200))
            .map_err(|e| crate::Error::Other(format!("zenoh subscriber: {e}")))?;
        let Some(sample) = sample else { continue };
        let key = sample.key_expr().as_str().to_owned();
        if key == merged_key {
            continue;
        }
        let weights = match decode_weights(&sample.payload().to_bytes(), &key) {
            Ok(w) if w.base != report.base => {
                let why = format!("{key}: device `{}` adapted another base ({})", w.device, w.base);
                tracing::warn!("fleet: ignored {why}");
                report.ignored.push(why);
                continue;
            }
            Ok(w) => w,
            Err(e) => {
                tracing::warn!("fleet: ignored {key}: {e}");
                report.ignored.push(format!("{key}: {e}"));
                continue;
            }
        };
        let scene = match weights.checkpoint.metadata.get(SCENE_KEY) {
            Some(crate::model::checkpoint::MetaValue::Str(scene)) => scene.as_str(),
            _ => "none",
        };
        tracing::info!(
            "fleet: {} sent {} steps (scene: {scene})",
            weights.device,
            weights.accepted_steps
        );
        newest.insert(weights.device.clone(), weights);
        if newest.len() < options.min_devices {
            continue;
        }
        let devices: Vec<DeviceWeights> = std::mem::take(&mut newest).into_values().collect();
        let number = report.rounds.len() + 1;
        let (round, bytes) =
            merge_round(options, (&base, &report.base), &devices, base_abs_rel, number)?;
        if round.republished {
            *newest_merge.lock().unwrap_or_else(|p| p.into_inner()) = Some(bytes.clone());
            // Nothing replaces a merge: under congestion it waits for room.
            put_weights(&session, &merged_key, bytes, CongestionControl::Block)?;
            tracing::info!(
                "fleet: round {} merged {:?}, republished on {merged_key}",
                round.round,
                round.devices
            );
        }
        report.rounds.push(round);
        write_summary_json(&options.out.join("fleet_report.json"), &report)?;
    }
    // A graceful close sends what is still queued (the last merge) before the process ends.
    session.close().wait().map_err(|e| crate::Error::Other(format!("zenoh close: {e}")))?;
    Ok(report)
}

/// `livedepth fleet --merge-checkpoints A B …`: one merge round offline, from adapter
/// checkpoints (`--checkpoint` of `eval --adapt` or `run --adapt`) that adapted `options.model`,
/// each weighted by its accepted steps; the base, every device's own weights and the merge are
/// scored on the held-out replay, so that the merge can be compared with what each device had.
pub fn merge_checkpoints(options: &FleetOptions, files: &[PathBuf]) -> crate::Result<FleetReport> {
    let (base, mut report, base_abs_rel) = start_report(options)?;
    let (arch, hash) = (options.arch.name(), report.base.clone());
    let mut devices = Vec::new();
    for file in files {
        let checkpoint = crate::model::checkpoint::Checkpoint::read(file)?;
        let accepted_steps = crate::adapt::trainer::checkpoint_accepted_steps(&checkpoint)
            .ok_or_else(|| {
                crate::Error::Other(format!(
                    "--merge-checkpoints {}: not an adapter checkpoint (no saved counters): \
                     expected the --checkpoint file of `eval --adapt` or `run --adapt`",
                    file.display()
                ))
            })?;
        // The depth network's variables only (the file also holds the pose network and Adam).
        let mut own = base.clone();
        for (name, tensor) in own.tensors.iter_mut() {
            *tensor = checkpoint.tensors.get(name).cloned().ok_or_else(|| {
                crate::Error::Other(format!(
                    "--merge-checkpoints {}: no variable `{name}`: expected a checkpoint of a \
                     {arch} adapted from --model",
                    file.display()
                ))
            })?;
        }
        let device = file.file_stem().map_or("device".into(), |s| s.to_string_lossy().into_owned());
        let path = options.out.join(format!("device-{device}.safetensors"));
        own.write_safetensors(&path)?;
        let abs_rel = held_out_abs_rel(options, &path)?;
        report.device_scores.push(DeviceScore { device: device.clone(), accepted_steps, abs_rel });
        devices.push(DeviceWeights { device, base: hash.clone(), accepted_steps, checkpoint: own });
    }
    let (round, _) = merge_round(options, (&base, &hash), &devices, base_abs_rel, 1)?;
    report.rounds.push(round);
    write_summary_json(&options.out.join("fleet_report.json"), &report)?;
    Ok(report)
}

/// Merges `devices` into `base` (whose hash is given), writes the round's weights and scores
/// them on the held-out replay; returns the round and the weights' bytes (to republish).
fn merge_round(
    options: &FleetOptions,
    (base, hash): (&crate::model::checkpoint::Checkpoint, &str),
    devices: &[DeviceWeights],
    base_abs_rel: Option<f64>,
    round: usize,
) -> crate::Result<(FleetRound, Vec<u8>)> {
    let merged = merge(base, devices).map_err(|e| crate::Error::Other(e.to_string()))?;
    let path = options.out.join(format!("merged-round-{round}.safetensors"));
    let steps: u64 = devices.iter().map(|d| d.accepted_steps).sum();
    let bytes = encode_weights(&merged, MERGED_DEVICE, hash, steps)
        .map_err(|e| crate::Error::Other(e.to_string()))?;
    crate::tempfiles::write_atomic(&path, |temp| std::fs::write(temp, &bytes), |e| e)
        .map_err(|e| crate::Error::Other(format!("{}: {e}", path.display())))?;
    let merged_abs_rel = held_out_abs_rel(options, &path)?;
    let held_back = match (base_abs_rel, merged_abs_rel) {
        (Some(b), Some(m)) if m > b => {
            Some(format!("held-out abs_rel {m:.4} is worse than the base's {b:.4}"))
        }
        _ => None,
    };
    let round = FleetRound {
        round,
        devices: devices.iter().map(|d| d.device.clone()).collect(),
        accepted_steps: devices.iter().map(|d| d.accepted_steps).collect(),
        weights: path,
        base_abs_rel,
        merged_abs_rel,
        republished: held_back.is_none(),
        held_back,
    };
    Ok((round, bytes))
}
