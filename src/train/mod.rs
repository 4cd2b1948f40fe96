//! Offline training (`livedepth train`): the depth network and its companion pose network over
//! one or more recorded or rendered datasets, for a number of epochs, with seeded colour jitter
//! and horizontal flips.
//!
//! Each step takes a batch of frame triplets (t−k, t, t+k) and minimises
//!
//! - the adapter's self-supervised Monodepth2 loss ([`SelfSupervisedLoss`]: photometric
//!   reprojection with auto-mask and minimum over sources, plus edge-aware smoothness), whose
//!   analytic gradients are fed back through libtorch as `Σ output · grad`, exactly as
//!   [`crate::adapt::Adapter`] does;
//! - optionally supervised depth where ground truth exists: Eigen's scale-invariant log loss
//!   `mean(g²) − 0.85·mean(g)²` with `g = log d̂ − log d`, over every output scale upsampled
//!   to the input size (`supervised_weight`);
//! - optionally supervised pose from ground-truth camera poses (synthetic drives): L1 on the
//!   axis-angle and the translation in metres (`pose_supervised_weight`).
//!
//! As in Monodepth2 the networks see the colour-jittered images while the photometric loss
//! compares the un-jittered ones. Weights are written as safetensors (depth and pose) with a
//! JSON sidecar ([`TrainSidecar`]) atomically, every `checkpoint_every` steps, at the end and
//! on Ctrl-C.

pub mod saved_set;
use crate::adapt::NetFrame;
use crate::adapt::host_batch::{HostGradients, HostOutputs, stack_planar};
use crate::engine::Preprocessor;
use crate::loss::{LossConfig, LossError, LossInputs, SelfSupervisedLoss, target_pyramid};
use crate::model::network::{DepthNetwork, PoseNetwork};
use crate::model::{Arch, ModelError, PoseArch, check_input_size};
use crate::source::dataset::{DatasetError, open_dataset};
use nalgebra::Isometry3;
use rand::seq::SliceRandom;
use rand::{RngExt, SeedableRng};
use rand_pcg::Pcg64Mcg;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::time::Instant;
use tch::{Kind, Tensor, nn, nn::OptimizerConfig};

/// File names inside a training output folder.
pub const DEPTH_FILE: &str = "depth.safetensors";
pub const POSE_FILE: &str = "pose.safetensors";
pub const SIDECAR_FILE: &str = crate::model::TRAINED_SIDECAR;
/// Format tag of the sidecar.
pub const SIDECAR_FORMAT: &str = "livedepth-train/1";

/// Weight of the squared mean in the scale-invariant log loss (Eigen et al. use 0.5–1).
const SI_LAMBDA: f64 = 0.85;

/// Errors of offline training; each names the flag, dataset or file involved.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    #[error("train option `{flag}`: expected {expected}, got {got}")]
    Flag { flag: &'static str, expected: &'static str, got: String },
    #[error("training dataset `{spec}`: {source}")]
    Dataset { spec: String, source: DatasetError },
    #[error("training dataset `{spec}`: {reason}")]
    Data { spec: String, reason: String },
    #[error("{}: {reason}", path.display())]
    Sidecar { path: PathBuf, reason: String },
    #[error("{}: {source}", path.display())]
    Io { path: PathBuf, source: std::io::Error },
    #[error("train --out {}: {reason}", path.display())]
    Output { path: PathBuf, reason: String },
    #[error(transparent)]
    Model(#[from] ModelError),
    #[error(transparent)]
    Loss(#[from] LossError),
    #[error("libtorch: {0}")]
    Torch(String),
}

impl From<tch::TchError> for TrainError {
    fn from(e: tch::TchError) -> Self {
        TrainError::Torch(e.to_string())
    }
}

fn flag(flag: &'static str, expected: &'static str, got: impl std::fmt::Display) -> TrainError {
    TrainError::Flag { flag, expected, got: got.to_string() }
}

/// Seeded augmentation of the network inputs.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Augmentation {
    /// Probability of flipping a triplet horizontally (images, depth, intrinsics and poses).
    pub flip_probability: f64,
    /// Colour jitter strength j: brightness, contrast and saturation factors in [1−j, 1+j],
    /// per-channel gains in [1−j/4, 1+j/4]; the same draw for the three frames of a triplet.
    pub jitter: f32,
}

impl Default for Augmentation {
    fn default() -> Self {
        Self { flip_probability: 0.5, jitter: 0.2 }
    }
}

/// Everything `livedepth train` needs.
#[derive(Clone, Debug)]
pub struct TrainOptions {
    /// Dataset specs (`kitti:DIR` — also our rendered drives —, `kitchen:DIR`, `tum:DIR`).
    pub datasets: Vec<String>,
    /// Output folder for the weights and the sidecar.
    pub out: PathBuf,
    pub arch: Arch,
    /// Network input size (multiples of 32).
    pub width: u32,
    pub height: u32,
    pub epochs: usize,
    pub batch_size: usize,
    /// Stop after this many steps (before the epochs are done) when set.
    pub max_steps: Option<usize>,
    /// Adam learning rate of the depth network (cosine decay to 5 % over the run).
    pub learning_rate: f64,
    /// Adam learning rate of the pose network.
    pub pose_learning_rate: f64,
    pub seed: u64,
    /// Frame spacing k of the triplets.
    pub frame_gap: usize,
    /// Weight of the self-supervised loss (0 = off).
    pub self_supervised_weight: f64,
    /// Weight of the supervised scale-invariant depth loss (0 = off); needs ground-truth depth.
    pub supervised_weight: f64,
    /// Weight of the supervised pose loss (0 = off); needs ground-truth poses.
    pub pose_supervised_weight: f64,
    pub loss: LossConfig,
    pub augmentation: Augmentation,
    /// Start from these depth weights (folder or safetensors) instead of a fresh network.
    pub init_model: Option<PathBuf>,
    /// Start from these pose weights.
    pub init_pose: Option<PathBuf>,
    /// Write the weights every this many steps (0 = only at the end).
    pub checkpoint_every: usize,
    /// Show an indicatif progress bar.
    pub progress: bool,
    /// Print a status line every this many steps (0 = never); for logs.
    pub log_every: usize,
    /// Stop (and save) on Ctrl-C.
    pub stop_on_ctrl_c: bool,
    /// libtorch intra-op threads (1 avoids spin-wait contention on a busy small CPU).
    pub threads: usize,
    /// The command line, recorded in the sidecar.
    pub command: String,
}

impl Default for TrainOptions {
    fn default() -> Self {
        Self {
            datasets: Vec::new(),
            out: PathBuf::from("out/train"),
            arch: Arch::RtMonoDepthS,
            width: 320,
            height: 96,
            epochs: 10,
            batch_size: 8,
            max_steps: None,
            learning_rate: 4e-4,
            pose_learning_rate: 4e-4,
            seed: 0,
            frame_gap: 1,
            self_supervised_weight: 1.0,
            supervised_weight: 0.0,
            pose_supervised_weight: 0.0,
            loss: LossConfig::default(),
            augmentation: Augmentation::default(),
            init_model: None,
            init_pose: None,
            checkpoint_every: 200,
            progress: true,
            log_every: 0,
            stop_on_ctrl_c: false,
            threads: 1,
            command: String::new(),
        }
    }
}

impl TrainOptions {
    /// Checks every option, naming the first bad one.
    pub fn validate(&self) -> Result<(), TrainError> {
        if self.datasets.is_empty() {
            return Err(flag("dataset", "at least one dataset spec", "none"));
        }
        check_input_size(i64::from(self.width), i64::from(self.height))?;
        if self.epochs == 0 {
            return Err(flag("epochs", "at least 1", self.epochs));
        }
        if self.batch_size == 0 {
            return Err(flag("batch-size", "at least 1", self.batch_size));
        }
        if self.max_steps == Some(0) {
            return Err(flag("max-steps", "at least 1", 0));
        }
        for (name, lr) in [("lr", self.learning_rate), ("pose-lr", self.pose_learning_rate)] {
            if !(lr.is_finite() && lr > 0.0) {
                return Err(flag(name, "a finite learning rate > 0", lr));
            }
        }
        if self.threads == 0 {
            return Err(flag("threads", "at least 1", 0));
        }
        if self.frame_gap == 0 {
            return Err(flag("frame-gap", "at least 1", 0));
        }
        for (name, w) in [
            ("self-supervised-weight", self.self_supervised_weight),
            ("supervised-weight", self.supervised_weight),
            ("pose-supervised-weight", self.pose_supervised_weight),
        ] {
            if !(w.is_finite() && w >= 0.0) {
                return Err(flag(name, "a finite weight >= 0", w));
            }
        }
        if self.self_supervised_weight + self.supervised_weight == 0.0 {
            return Err(flag(
                "self-supervised-weight",
                "a depth loss: self-supervised or supervised weight > 0",
                "both 0",
            ));
        }
        let a = self.augmentation;
        if !(0.0..=1.0).contains(&a.flip_probability) {
            return Err(flag("flip", "a probability in [0, 1]", a.flip_probability));
        }
        if !(a.jitter.is_finite() && (0.0..1.0).contains(&a.jitter)) {
            return Err(flag("jitter", "a strength in [0, 1)", a.jitter));
        }
        self.loss.validate()?;
        Ok(())
    }
}

/// One dataset's share of the training data (recorded in the sidecar).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DatasetUsage {
    pub spec: String,
    pub frames: usize,
    pub triplets: usize,
    pub with_depth: bool,
    pub with_pose: bool,
}

/// Mean loss parts over the last steps of a run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct LossParts {
    pub total: f64,
    pub photometric: f64,
    pub smoothness: f64,
    pub supervised_depth: f64,
    pub supervised_pose: f64,
}

impl LossParts {
    fn add(&mut self, o: &LossParts, w: f64) {
        self.total += w * o.total;
        self.photometric += w * o.photometric;
        self.smoothness += w * o.smoothness;
        self.supervised_depth += w * o.supervised_depth;
        self.supervised_pose += w * o.supervised_pose;
    }
}

/// The JSON sidecar written beside the weights.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TrainSidecar {
    pub format: String,
    pub arch: String,
    pub pose_arch: String,
    pub width: u32,
    pub height: u32,
    pub depth_file: String,
    pub pose_file: String,
    /// The exact command line.
    pub command: String,
    pub seed: u64,
    pub datasets: Vec<DatasetUsage>,
    pub epochs: usize,
    /// Epochs actually run (fractional when stopped early).
    pub epochs_completed: f64,
    pub steps: usize,
    pub rejected_steps: usize,
    pub batch_size: usize,
    pub frame_gap: usize,
    pub learning_rate: f64,
    pub pose_learning_rate: f64,
    pub self_supervised_weight: f64,
    pub supervised_weight: f64,
    pub pose_supervised_weight: f64,
    pub loss: LossConfig,
    pub augmentation: Augmentation,
    /// Mean loss parts over the first and the last logging window (unweighted parts).
    pub first_losses: LossParts,
    pub final_losses: LossParts,
    /// True once the run completed; false for periodic checkpoints and interrupted runs.
    pub complete: bool,
    pub interrupted: bool,
    pub wall_seconds: f64,
    /// The save these files belong to; both weight files carry it too (see [`saved_set`]).
    /// Absent in folders written before it existed.
    #[serde(default)]
    pub generation: Option<String>,
}

impl TrainSidecar {
    /// Reads a sidecar (`train.json`), or the sidecar in a training output folder.
    pub fn read(path: &Path) -> Result<Self, TrainError> {
        let path = if path.is_dir() { path.join(SIDECAR_FILE) } else { path.to_path_buf() };
        let text = std::fs::read_to_string(&path)
            .map_err(|source| TrainError::Io { path: path.clone(), source })?;
        let sidecar: Self = serde_json::from_str(&text).map_err(|e| TrainError::Sidecar {
            path: path.clone(),
            reason: format!("not a livedepth training sidecar: {e}"),
        })?;
        if sidecar.format != SIDECAR_FORMAT {
            return Err(TrainError::Sidecar {
                path,
                reason: format!("format `{}`, expected `{SIDECAR_FORMAT}`", sidecar.format),
            });
        }
        Ok(sidecar)
    }

    pub fn arch(&self) -> Result<Arch, TrainError> {
        Ok(self.arch.parse()?)
    }
}

/// A trained model folder: its sidecar and the paths of its weights.
#[derive(Clone, Debug)]
pub struct TrainedModel {
    pub dir: PathBuf,
    pub sidecar: TrainSidecar,
    pub depth: PathBuf,
    pub pose: PathBuf,
}

impl TrainedModel {
    /// Opens a folder written by [`train`] (checks that both weight files exist).
    pub fn open(dir: &Path) -> Result<Self, TrainError> {
        let sidecar = TrainSidecar::read(&dir.join(SIDECAR_FILE))?;
        let depth = dir.join(&sidecar.depth_file);
        let pose = dir.join(&sidecar.pose_file);
        for p in [&depth, &pose] {
            if !p.is_file() {
                return Err(TrainError::Sidecar {
                    path: dir.join(SIDECAR_FILE),
                    reason: format!("names {} which does not exist", p.display()),
                });
            }
        }
        saved_set::check(&dir.join(SIDECAR_FILE), sidecar.generation.as_deref(), &depth, &pose)?;
        Ok(Self { dir: dir.to_path_buf(), sidecar, depth, pose })
    }

    /// Whether `dir` looks like a training output folder (has a sidecar).
    pub fn is_trained_dir(dir: &Path) -> bool {
        dir.join(SIDECAR_FILE).is_file()
    }
}

/// A frame at the network size with what ground truth it has.
struct Sample {
    frame: NetFrame,
    /// Depth in metres at the network size (0 invalid).
    depth: Option<Vec<f32>>,
    pose: Option<Isometry3<f64>>,
}

/// (clip, previous, target, next) indices.
type TripletIndex = (usize, usize, usize, usize);

/// Depth `src` reduced to `w` x `h` by keeping, per output pixel, the nearest valid sample
/// falling inside it (the minimum depth), so sparse LiDAR points and occlusion edges survive.
fn scatter_min_depth(src: &crate::frame::DepthMap, w: usize, h: usize) -> Vec<f32> {
    let mut out = vec![0f32; w * h];
    let (sw, sh) = (src.width as usize, src.height as usize);
    if sw == 0 || sh == 0 || src.data.len() != sw * sh {
        return out;
    }
    for y in 0..sh {
        let ty = (y * h / sh).min(h - 1);
        for x in 0..sw {
            let d = src.data[y * sw + x];
            if !(d.is_finite() && d > 0.0) {
                continue;
            }
            let o = &mut out[ty * w + (x * w / sw).min(w - 1)];
            if *o == 0.0 || d < *o {
                *o = d;
            }
        }
    }
    out
}

fn load_clip(
    spec: &str,
    width: u32,
    height: u32,
    gap: usize,
) -> Result<(Vec<Sample>, DatasetUsage), TrainError> {
    let wrap = |source| TrainError::Dataset { spec: spec.to_string(), source };
    let dataset = open_dataset(spec).map_err(wrap)?;
    let mut pre = Preprocessor::unit_rgb(width, height)
        .map_err(|e| TrainError::Data { spec: spec.to_string(), reason: e.to_string() })?;
    let mut samples = Vec::with_capacity(dataset.len());
    for i in 0..dataset.len() {
        let frame = dataset.frame(i).map_err(wrap)?;
        let camera = frame.intrinsics.ok_or_else(|| TrainError::Data {
            spec: spec.to_string(),
            reason: format!("frame {i} has no intrinsics; training needs the camera matrix"),
        })?;
        let resized = pre.resize(&frame.rgb).map_err(|e| TrainError::Data {
            spec: spec.to_string(),
            reason: format!("frame {i}: {e}"),
        })?;
        let net = NetFrame::from_resized(i as u64, resized, &camera);
        let depth =
            frame.gt_depth.as_ref().map(|d| scatter_min_depth(d, width as usize, height as usize));
        let pose = frame.gt_pose.filter(|p| {
            p.translation.vector.iter().all(|v| v.is_finite())
                && p.rotation.coords.iter().all(|v| v.is_finite())
        });
        samples.push(Sample { frame: net, depth, pose });
    }
    let triplets = samples.len().saturating_sub(2 * gap);
    if triplets == 0 {
        return Err(TrainError::Data {
            spec: spec.to_string(),
            reason: format!(
                "{} frames make no triplet with frame gap {gap} (need at least {})",
                samples.len(),
                2 * gap + 1
            ),
        });
    }
    let usage = DatasetUsage {
        spec: spec.to_string(),
        frames: samples.len(),
        triplets,
        with_depth: samples.iter().all(|s| s.depth.is_some()),
        with_pose: samples.iter().all(|s| s.pose.is_some()),
    };
    Ok((samples, usage))
}

/// A triplet after augmentation, planar RGB in [0, 1].
struct Prepared {
    /// Un-jittered (possibly flipped) prev, target, next: what the photometric loss compares.
    clean: [Vec<f32>; 3],
    /// Jittered: what the networks see.
    jittered: [Vec<f32>; 3],
    depth: Option<Vec<f32>>,
    /// Ground-truth (axis-angle, translation) of the pairs (prev→target) and (target→next).
    poses: Option<[([f32; 3], [f32; 3]); 2]>,
    intrinsics: [f32; 4],
}

fn flip_planar(src: &[f32], w: usize, out: &mut Vec<f32>) {
    out.clear();
    out.extend(src.chunks_exact(w).flat_map(|row| row.iter().rev().copied()));
}

#[derive(Clone, Copy)]
struct Jitter {
    brightness: f32,
    contrast: f32,
    saturation: f32,
    gains: [f32; 3],
}

impl Jitter {
    fn draw(rng: &mut Pcg64Mcg, j: f32) -> Self {
        let mut f = |s: f32| 1.0 + s * (2.0 * rng.random::<f32>() - 1.0);
        Self {
            brightness: f(j),
            contrast: f(j),
            saturation: f(j),
            gains: [f(j / 4.0), f(j / 4.0), f(j / 4.0)],
        }
    }

    fn apply(&self, planar: &mut [f32]) {
        let hw = planar.len() / 3;
        let (r, rest) = planar.split_at_mut(hw);
        let (g, b) = rest.split_at_mut(hw);
        let mean =
            r.iter().zip(g.iter()).zip(b.iter()).map(|((r, g), b)| grey(*r, *g, *b)).sum::<f32>()
                / hw.max(1) as f32;
        let mean = mean * self.brightness;
        for ((r, g), b) in r.iter_mut().zip(g.iter_mut()).zip(b.iter_mut()) {
            let mut px = [*r, *g, *b];
            for (v, gain) in px.iter_mut().zip(self.gains) {
                *v *= self.brightness * gain;
            }
            let l = grey(px[0], px[1], px[2]);
            for v in &mut px {
                *v = l + (*v - l) * self.saturation;
                *v = mean + (*v - mean) * self.contrast;
            }
            *r = px[0].clamp(0.0, 1.0);
            *g = px[1].clamp(0.0, 1.0);
            *b = px[2].clamp(0.0, 1.0);
        }
    }
}

fn grey(r: f32, g: f32, b: f32) -> f32 {
    0.299 * r + 0.587 * g + 0.114 * b
}

/// Ground-truth motion T_{a→b} (points in camera a to camera b) as (axis-angle, translation).
fn relative_motion(a: &Isometry3<f64>, b: &Isometry3<f64>) -> ([f32; 3], [f32; 3]) {
    let rel = b.inverse() * a;
    let w = rel.rotation.scaled_axis();
    let t = rel.translation.vector;
    ([w.x as f32, w.y as f32, w.z as f32], [t.x as f32, t.y as f32, t.z as f32])
}

fn prepare(
    clips: &[Vec<Sample>],
    index: TripletIndex,
    augmentation: &Augmentation,
    rng: &mut Pcg64Mcg,
) -> Prepared {
    let (c, p, t, n) = index;
    let clip = &clips[c];
    let target = &clip[t];
    let w = target.frame.width;
    let flip = rng.random::<f64>() < augmentation.flip_probability;
    let jitter = Jitter::draw(rng, augmentation.jitter);
    let frames = [&clip[p], target, &clip[n]];
    let clean: [Vec<f32>; 3] = frames.map(|s| {
        if flip {
            let mut out = Vec::with_capacity(s.frame.planar.len());
            flip_planar(&s.frame.planar, w, &mut out);
            out
        } else {
            s.frame.planar.to_vec()
        }
    });
    let jittered = clean.clone().map(|mut v| {
        if augmentation.jitter > 0.0 {
            jitter.apply(&mut v);
        }
        v
    });
    let depth = target.depth.as_ref().map(|d| {
        if flip {
            let mut out = Vec::with_capacity(d.len());
            flip_planar(d, w, &mut out);
            out
        } else {
            d.clone()
        }
    });
    let poses = match (frames[0].pose, frames[1].pose, frames[2].pose) {
        (Some(a), Some(b), Some(c)) => {
            let mirror = |(r, t): ([f32; 3], [f32; 3])| {
                if flip { ([r[0], -r[1], -r[2]], [-t[0], t[1], t[2]]) } else { (r, t) }
            };
            Some([mirror(relative_motion(&a, &b)), mirror(relative_motion(&b, &c))])
        }
        _ => None,
    };
    let mut intrinsics = target.frame.intrinsics;
    if flip {
        intrinsics[2] = (w as f32 - 1.0) - intrinsics[2];
    }
    Prepared { clean, jittered, depth, poses, intrinsics }
}

/// What one step computed: the loss parts (unweighted) or why it was rejected.
enum StepResult {
    Done(LossParts),
    Rejected(String),
}

struct Trainer<'a> {
    options: &'a TrainOptions,
    depth: DepthNetwork,
    pose: PoseNetwork,
    depth_opt: nn::Optimizer,
    pose_opt: nn::Optimizer,
    loss: SelfSupervisedLoss,
    /// This run's id, part of every save's generation.
    run_id: String,
}

impl Trainer<'_> {
    fn step(&mut self, batch: &[Prepared]) -> Result<StepResult, TrainError> {
        let o = self.options;
        let (w, h) = (o.width as usize, o.height as usize);
        let b = batch.len();
        let device = self.depth.device();
        let (mean, std) = o.arch.normalisation();
        let norm = |x: Tensor| (x - f64::from(mean[0])) / f64::from(std[0]);
        let pick = |k: usize| -> Vec<&[f32]> { batch.iter().map(|p| &p.jittered[k][..]).collect() };
        let x_prev = norm(stack_planar(&pick(0), 3, w, h, device)?);
        let x_target = norm(stack_planar(&pick(1), 3, w, h, device)?);
        let x_next = norm(stack_planar(&pick(2), 3, w, h, device)?);

        let disps = self.depth.try_forward_t(&x_target, true)?;
        let pairs = Tensor::f_cat(
            &[Tensor::f_cat(&[&x_prev, &x_target], 1)?, Tensor::f_cat(&[&x_target, &x_next], 1)?],
            0,
        )?;
        let (rot, trans) = self.pose.try_forward_t(&pairs, true)?;
        let mut parts = LossParts::default();
        let mut objective = Tensor::f_zeros([], (Kind::Float, device))?;

        if o.self_supervised_weight > 0.0 {
            let host = HostOutputs::copy(&disps, &rot, &trans, b, w, h)?;
            let mut grads = HostGradients::zeros_like(&host);
            let inv_b = 1.0 / b as f32;
            for (i, sample) in batch.iter().enumerate() {
                let pyramid = target_pyramid(&sample.clean[1], w, h, disps.len());
                let pyramid_refs: Vec<&[f32]> = pyramid.iter().map(Vec::as_slice).collect();
                let disp_refs = host.sample_disparities(i);
                let poses = host.sample_poses(i);
                let sources: [&[f32]; 2] = [&sample.clean[0], &sample.clean[2]];
                let inputs = LossInputs {
                    width: w,
                    height: h,
                    target: &sample.clean[1],
                    sources: &sources,
                    disparities: &disp_refs,
                    target_pyramid: &pyramid_refs,
                    poses: &poses,
                    intrinsics: sample.intrinsics,
                    tie_break_noise: None,
                };
                let out = match self.loss.forward_backward(&inputs) {
                    Ok(out) => out,
                    Err(LossError::NonFinite { field, index }) => {
                        return Ok(StepResult::Rejected(format!(
                            "non-finite network output: {field} index {index}"
                        )));
                    }
                    Err(e) => return Err(e.into()),
                };
                if !out.total.is_finite() {
                    return Ok(StepResult::Rejected("non-finite self-supervised loss".into()));
                }
                parts.photometric += f64::from(out.photometric) / b as f64;
                parts.smoothness += f64::from(out.smoothness) / b as f64;
                grads.set_sample(i, out, inv_b);
            }
            if !grads.all_finite() {
                return Ok(StepResult::Rejected("non-finite loss gradient".into()));
            }
            // Surrogate whose gradient is the self-supervised loss gradient.
            let surrogate = grads.surrogate(&disps, &rot, &trans)?;
            objective += surrogate * o.self_supervised_weight;
            parts.total += o.self_supervised_weight * (parts.photometric + parts.smoothness);
        }

        if o.supervised_weight > 0.0 && batch.iter().all(|p| p.depth.is_some()) {
            let depths: Vec<&[f32]> = batch.iter().filter_map(|p| p.depth.as_deref()).collect();
            let depth = stack_planar(&depths, 1, w, h, device)?;
            let valid = depth.gt(0.0).to_kind(Kind::Float);
            let gt = depth.clamp(f64::from(o.loss.min_depth), f64::from(o.loss.max_depth));
            let count = valid.sum_dim_intlist([1i64, 2, 3].as_slice(), false, Kind::Float);
            let log_gt = gt.log();
            let (min_disp, max_disp) =
                (1.0 / f64::from(o.loss.max_depth), 1.0 / f64::from(o.loss.min_depth));
            let mut si_total = Tensor::f_zeros([], (Kind::Float, device))?;
            for d in &disps {
                let d = if d.size()[2] as usize == h {
                    d.shallow_clone()
                } else {
                    d.f_upsample_bilinear2d([h as i64, w as i64], false, None, None)?
                };
                let log_pred = -((d * (max_disp - min_disp)) + min_disp).log();
                let g = (log_pred - &log_gt) * &valid;
                let mean = g.sum_dim_intlist([1i64, 2, 3].as_slice(), false, Kind::Float)
                    / count.clamp_min(1.0);
                let mean_sq =
                    g.square().sum_dim_intlist([1i64, 2, 3].as_slice(), false, Kind::Float)
                        / count.clamp_min(1.0);
                si_total += (mean_sq - mean.square() * SI_LAMBDA).mean(Kind::Float);
            }
            let si = si_total / disps.len() as f64;
            let value = si.double_value(&[]);
            if !value.is_finite() {
                return Ok(StepResult::Rejected("non-finite supervised depth loss".into()));
            }
            parts.supervised_depth = value;
            parts.total += o.supervised_weight * value;
            objective += si * o.supervised_weight;
        }

        if o.pose_supervised_weight > 0.0 && batch.iter().all(|p| p.poses.is_some()) {
            let mut gt_rot = vec![0f32; 2 * b * 3];
            let mut gt_trans = vec![0f32; 2 * b * 3];
            for (i, p) in batch.iter().enumerate() {
                if let Some(poses) = &p.poses {
                    for (k, j) in [i, b + i].into_iter().enumerate() {
                        gt_rot[3 * j..3 * j + 3].copy_from_slice(&poses[k].0);
                        gt_trans[3 * j..3 * j + 3].copy_from_slice(&poses[k].1);
                    }
                }
            }
            let gt_rot =
                Tensor::f_from_slice(&gt_rot)?.f_reshape(rot.size())?.f_to_device(device)?;
            let gt_trans =
                Tensor::f_from_slice(&gt_trans)?.f_reshape(trans.size())?.f_to_device(device)?;
            // Rotations are small angles (radians): weight them like centimetres of motion.
            let l1 = (&rot - gt_rot).abs().mean(Kind::Float) * 10.0
                + (&trans - gt_trans).abs().mean(Kind::Float);
            let value = l1.double_value(&[]);
            if !value.is_finite() {
                return Ok(StepResult::Rejected("non-finite supervised pose loss".into()));
            }
            parts.supervised_pose = value;
            parts.total += o.pose_supervised_weight * value;
            objective += l1 * o.pose_supervised_weight;
        }

        self.depth_opt.zero_grad();
        self.pose_opt.zero_grad();
        objective.f_backward()?;
        let mut magnitude = 0.0;
        for (_, var) in
            self.depth.var_store().variables().into_iter().chain(self.pose.var_store().variables())
        {
            let g = var.grad();
            if g.defined() {
                magnitude += g.abs().sum(Kind::Double).double_value(&[]);
            }
        }
        if !magnitude.is_finite() {
            self.depth_opt.zero_grad();
            self.pose_opt.zero_grad();
            return Ok(StepResult::Rejected("non-finite parameter gradient".into()));
        }
        self.depth_opt.step();
        self.pose_opt.step();
        Ok(StepResult::Done(parts))
    }

    /// Writes the weights, then the sidecar: one generation in all three (see [`saved_set`]).
    fn save(&self, sidecar: &TrainSidecar) -> Result<(), TrainError> {
        let out = &self.options.out;
        let generation = saved_set::generation(&self.run_id, sidecar.steps);
        let stamp = [(saved_set::GENERATION_KEY, generation.as_str())];
        self.depth.save_safetensors_with(&out.join(DEPTH_FILE), &stamp)?;
        self.pose.save_safetensors_with(&out.join(POSE_FILE), &stamp)?;
        let sidecar = TrainSidecar { generation: Some(generation.clone()), ..sidecar.clone() };
        let path = out.join(SIDECAR_FILE);
        let mut json = serde_json::to_vec_pretty(&sidecar).map_err(|e| TrainError::Sidecar {
            path: path.clone(),
            reason: format!("cannot encode: {e}"),
        })?;
        json.push(b'\n');
        crate::model::checkpoint::write_atomically(&path, &json)?;
        Ok(())
    }
}

/// Trains from `options`; returns the sidecar that was written last.
pub fn train(options: &TrainOptions) -> Result<TrainSidecar, TrainError> {
    options.validate()?;
    let started = Instant::now();
    crate::tempfiles::create_output_dir(&options.out, "train --out")
        .map_err(|e| TrainError::Output { path: options.out.clone(), reason: e.to_string() })?;
    let (w, h) = (options.width, options.height);
    let mut clips = Vec::new();
    let mut usage = Vec::new();
    for spec in &options.datasets {
        let (samples, used) = load_clip(spec, w, h, options.frame_gap)?;
        if options.supervised_weight > 0.0 && !used.with_depth {
            tracing::info!(
                "train: {spec} has no ground-truth depth on every frame: self-supervised only there"
            );
        }
        clips.push(samples);
        usage.push(used);
    }
    let gap = options.frame_gap;
    let triplets: Vec<TripletIndex> = clips
        .iter()
        .enumerate()
        .flat_map(|(c, clip)| (gap..clip.len() - gap).map(move |t| (c, t - gap, t, t + gap)))
        .collect();

    tch::set_num_threads(options.threads as i32);
    tch::manual_seed(options.seed as i64);
    let device = crate::engine::default_device();
    let pose_arch: PoseArch = options.arch.companion_pose();
    let depth = match &options.init_model {
        Some(path) => DepthNetwork::load(path, options.arch, device)?,
        None => {
            let net = DepthNetwork::new(options.arch, device);
            kaiming_init(net.var_store())?;
            net
        }
    };
    let pose = match &options.init_pose {
        Some(path) => PoseNetwork::load(path, pose_arch, device)?,
        None => {
            let net = PoseNetwork::new(pose_arch, device);
            kaiming_init(net.var_store())?;
            net
        }
    };
    let depth_opt = nn::Adam::default().build(depth.var_store(), options.learning_rate)?;
    let pose_opt = nn::Adam::default().build(pose.var_store(), options.pose_learning_rate)?;
    let loss_config = LossConfig { seed: options.seed, ..options.loss };
    let mut trainer = Trainer {
        options,
        depth,
        pose,
        depth_opt,
        pose_opt,
        loss: SelfSupervisedLoss::new(loss_config),
        run_id: saved_set::new_run_id(),
    };

    let steps_per_epoch = triplets.len().div_ceil(options.batch_size);
    let planned = steps_per_epoch * options.epochs;
    let total_steps = options.max_steps.map_or(planned, |m| m.min(planned));
    let mut sidecar = TrainSidecar {
        format: SIDECAR_FORMAT.into(),
        arch: options.arch.name().into(),
        pose_arch: pose_arch.name().into(),
        width: w,
        height: h,
        depth_file: DEPTH_FILE.into(),
        pose_file: POSE_FILE.into(),
        command: options.command.clone(),
        seed: options.seed,
        datasets: usage,
        epochs: options.epochs,
        epochs_completed: 0.0,
        steps: 0,
        rejected_steps: 0,
        batch_size: options.batch_size,
        frame_gap: gap,
        learning_rate: options.learning_rate,
        pose_learning_rate: options.pose_learning_rate,
        self_supervised_weight: options.self_supervised_weight,
        supervised_weight: options.supervised_weight,
        pose_supervised_weight: options.pose_supervised_weight,
        loss: options.loss,
        augmentation: options.augmentation,
        first_losses: LossParts::default(),
        final_losses: LossParts::default(),
        complete: false,
        interrupted: false,
        wall_seconds: 0.0,
        generation: None,
    };

    let ctrl_c_baseline = if options.stop_on_ctrl_c {
        crate::pipeline::install_ctrl_c_handler()
            .map_err(|e| TrainError::Data { spec: "<ctrl-c>".into(), reason: e.to_string() })?;
        Some(crate::pipeline::ctrl_c_count())
    } else {
        None
    };
    let bar = if options.progress {
        let bar = indicatif::ProgressBar::new(total_steps as u64);
        if let Ok(style) = indicatif::ProgressStyle::with_template(
            "[{elapsed_precise}] {wide_bar} {pos}/{len} ETA {eta} {msg}",
        ) {
            bar.set_style(style);
        }
        bar
    } else {
        indicatif::ProgressBar::hidden()
    };

    // Loss means over a window of recent steps.
    let window = options.log_every.max(20);
    // The "first" losses: the mean over the first steps (a quarter of a short run).
    let first_window = window.min(total_steps.div_ceil(4)).max(1);
    let mut recent: std::collections::VecDeque<LossParts> = std::collections::VecDeque::new();
    let mut rng = Pcg64Mcg::seed_from_u64(options.seed);
    let mut step = 0usize;
    let mut order = triplets.clone();
    'epochs: for _epoch in 0..options.epochs {
        order.shuffle(&mut rng);
        for chunk in order.chunks(options.batch_size) {
            if step >= total_steps {
                break 'epochs;
            }
            if let Some(base) = ctrl_c_baseline
                && crate::pipeline::ctrl_c_count() > base
            {
                sidecar.interrupted = true;
                break 'epochs;
            }
            // Cosine decay to 5 % of the learning rate over the run.
            let progress = step as f64 / total_steps.max(1) as f64;
            let factor = 0.05 + 0.95 * 0.5 * (1.0 + (std::f64::consts::PI * progress).cos());
            trainer.depth_opt.set_lr(options.learning_rate * factor);
            trainer.pose_opt.set_lr(options.pose_learning_rate * factor);
            let batch: Vec<Prepared> = chunk
                .iter()
                .map(|&index| prepare(&clips, index, &options.augmentation, &mut rng))
                .collect();
            match trainer.step(&batch)? {
                StepResult::Done(parts) => {
                    recent.push_back(parts);
                    if recent.len() > window {
                        recent.pop_front();
                    }
                    if sidecar.steps < first_window {
                        sidecar.first_losses = mean_parts(&recent);
                    }
                    sidecar.steps += 1;
                }
                StepResult::Rejected(reason) => {
                    sidecar.rejected_steps += 1;
                    tracing::info!("train: step {step} rejected: {reason}");
                }
            }
            step += 1;
            let m = mean_parts(&recent);
            bar.set_position(step as u64);
            bar.set_message(format!(
                "loss {:.4} (photo {:.4} smooth {:.5} depth {:.4} pose {:.4})",
                m.total, m.photometric, m.smoothness, m.supervised_depth, m.supervised_pose
            ));
            if options.log_every > 0 && step.is_multiple_of(options.log_every) {
                let elapsed = started.elapsed().as_secs_f64();
                let eta = elapsed / step as f64 * (total_steps - step) as f64;
                tracing::info!(
                    "train: step {step}/{total_steps} epoch {:.2} loss {:.4} (photo {:.4} smooth \
                     {:.5} depth {:.4} pose {:.4}) {:.1}s elapsed, ETA {:.0}s",
                    step as f64 / steps_per_epoch as f64,
                    m.total,
                    m.photometric,
                    m.smoothness,
                    m.supervised_depth,
                    m.supervised_pose,
                    elapsed,
                    eta
                );
            }
            if options.checkpoint_every > 0 && step.is_multiple_of(options.checkpoint_every) {
                sidecar.final_losses = m;
                sidecar.epochs_completed = step as f64 / steps_per_epoch as f64;
                sidecar.wall_seconds = started.elapsed().as_secs_f64();
                trainer.save(&sidecar)?;
            }
        }
    }
    bar.finish_and_clear();
    sidecar.final_losses = mean_parts(&recent);
    sidecar.epochs_completed = step as f64 / steps_per_epoch as f64;
    sidecar.complete = !sidecar.interrupted;
    sidecar.wall_seconds = started.elapsed().as_secs_f64();
    trainer.save(&sidecar)?;
    Ok(sidecar)
}

/// Re-initialises a fresh network for training from scratch: convolution weights N(0, 2/fan_in)
/// (He et al.), biases 0, drawn in name order so that one seed gives one network. PyTorch's
/// default (uniform ±1/√fan_in) shrinks the signal about six-fold per layer, so a deep network
/// without normalisation (RT-MonoDepth-S has none) starts with a constant output and learns
/// structure very slowly.
fn kaiming_init(vs: &nn::VarStore) -> Result<(), TrainError> {
    let mut vars: Vec<(String, Tensor)> = vs.variables().into_iter().collect();
    vars.sort_by(|a, b| a.0.cmp(&b.0));
    tch::no_grad(|| -> Result<(), TrainError> {
        for (name, mut var) in vars {
            let size = var.size();
            if size.len() == 4 {
                let fan_in = (size[1] * size[2] * size[3]).max(1) as f64;
                let init = var.f_randn_like()? * (2.0 / fan_in).sqrt();
                var.f_copy_(&init)?;
            } else if name.ends_with("bias") {
                let _ = var.f_zero_()?;
            }
        }
        Ok(())
    })
}

fn mean_parts(parts: &std::collections::VecDeque<LossParts>) -> LossParts {
    let mut m = LossParts::default();
    let n = parts.len().max(1) as f64;
    for p in parts {
        m.add(p, 1.0 / n);
    }
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scatter_min_keeps_nearest_valid_sample() {
        let src = crate::frame::DepthMap {
            width: 4,
            height: 2,
            data: vec![5.0, 3.0, 0.0, 0.0, 4.0, 0.0, 0.0, f32::NAN],
        };
        assert_eq!(scatter_min_depth(&src, 2, 1), vec![3.0, 0.0]);
    }

    #[test]
    fn relative_motion_of_a_forward_step() {
        let a = Isometry3::translation(0.0, 0.0, 0.0);
        let b = Isometry3::translation(0.0, 0.0, 1.0);
        // A point 5 m ahead of camera a is 4 m ahead of camera b.
        let (r, t) = relative_motion(&a, &b);
        assert!(r.iter().all(|v| v.abs() < 1e-6));
        assert_eq!(t, [0.0, 0.0, -1.0]);
    }

    #[test]
    fn flip_reverses_rows() {
        let mut out = Vec::new();
        flip_planar(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0], 3, &mut out);
        assert_eq!(out, vec![3.0, 2.0, 1.0, 6.0, 5.0, 4.0]);
    }

    #[test]
    fn options_validation_names_the_flag() {
        let o = TrainOptions { datasets: vec!["kitti:x".into()], epochs: 0, ..Default::default() };
        let e = o.validate().unwrap_err().to_string();
        assert!(e.contains("epochs"), "{e}");
        let o = TrainOptions { datasets: vec!["kitti:x".into()], width: 100, ..Default::default() };
        assert!(o.validate().unwrap_err().to_string().contains("100x96"));
    }
}
