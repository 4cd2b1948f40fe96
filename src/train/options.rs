//! What `livedepth train` is asked to do: [`TrainOptions`] (datasets, size, epochs, loss
//! weights) with [`Augmentation`], and their validation, which names the flag at fault.

use super::{TrainError, flag};
use crate::adapt::loss_backend::LossBackendKind;
use crate::loss::LossConfig;
use crate::model::{Arch, check_input_size};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

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
    /// Where the self-supervised loss runs; None chooses as `--adapt` does (the
    /// `LIVEDEPTH_ADAPT_LOSS` variable, else the CUDA kernels when the networks are on a GPU).
    pub loss_backend: Option<LossBackendKind>,
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
            loss_backend: None,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_validation_names_the_flag() {
        let o = TrainOptions { datasets: vec!["kitti:x".into()], epochs: 0, ..Default::default() };
        let e = o.validate().unwrap_err().to_string();
        assert!(e.contains("epochs"), "{e}");
        let o = TrainOptions { datasets: vec!["kitti:x".into()], width: 100, ..Default::default() };
        assert!(o.validate().unwrap_err().to_string().contains("100x96"));
    }
}
