//! What a training run leaves beside its weights: the JSON sidecar ([`TrainSidecar`], with the
//! datasets used and the final loss parts) and [`TrainedModel`], which opens such a folder.

use super::{Augmentation, SIDECAR_FILE, SIDECAR_FORMAT, TrainError, saved_set};
use crate::adapt::loss_backend::LossBackendKind;
use crate::loss::LossConfig;
use crate::model::Arch;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

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
    pub(super) fn add(&mut self, o: &LossParts, w: f64) {
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
    /// Where the self-supervised loss ran (`cpu` or `cuda`); absent when it was off, and in
    /// folders written before it was recorded.
    #[serde(default)]
    pub loss_backend: Option<LossBackendKind>,
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
