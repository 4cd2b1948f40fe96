//! Adapter checkpoints: weights, Adam moments, the EMA teacher and the counters in one
//! safetensors file written atomically, and resuming from one; and continuing from weights a
//! fleet merged.

use super::{AdaptStats, Adapter, copy_from_stored, stored};
use crate::adapt::AdaptError;
use crate::model::checkpoint::{Checkpoint, MetaValue};
use crate::model::network::load_group;
use serde::{Deserialize, Serialize};
use std::path::Path;

/// Metadata key of the adapter state in a checkpoint.
const STATE_KEY: &str = "livedepth_adapt_state";

/// The accepted steps behind an adapter checkpoint (its saved counters), or None when `ckpt`
/// is not one.
pub fn checkpoint_accepted_steps(ckpt: &Checkpoint) -> Option<u64> {
    match ckpt.metadata.get(STATE_KEY) {
        Some(MetaValue::Str(s)) => {
            serde_json::from_str::<SavedState>(s).ok().map(|s| s.stats.steps)
        }
        _ => None,
    }
}

#[derive(Serialize, Deserialize)]
struct SavedState {
    stats: AdaptStats,
    adam_steps: u64,
    pose_adam_steps: u64,
    arch: String,
    pose_arch: String,
}

impl Adapter {
    /// Continues from weights a fleet merged (see [`crate::fleet`]): they replace the student's
    /// and the rollback point's, become the point the forgetting guard holds the weights near
    /// (the fleet validated them; pulling back to the base would undo the merge), and go to the
    /// live path. The never-worse guard still compares with the frozen base.
    pub fn adopt(&mut self, checkpoint: &Checkpoint) -> Result<(), AdaptError> {
        let arch = self.student.arch().name();
        load_group(self.student.var_store_mut(), "", checkpoint, arch)?;
        self.good_student.copy_weights_from(&self.student)?;
        self.anchor_values = tch::no_grad(|| {
            self.adam.vars.iter().map(tch::Tensor::f_detach_copy).collect::<Result<Vec<_>, _>>()
        })?;
        self.stats.fleet_merges_adopted += 1;
        self.publish()
    }

    /// Writes a checkpoint now (if a path is set).
    pub fn checkpoint(&mut self) -> Result<(), AdaptError> {
        if let Some(path) = self.checkpoint_path.clone() {
            self.stats.checkpoints += 1;
            self.save_checkpoint(&path)?;
        }
        Ok(())
    }

    /// Writes weights, Adam moments, the EMA teacher and the counters to one safetensors file,
    /// atomically (temp file, fsync, rename): a crash leaves the previous checkpoint intact.
    pub fn save_checkpoint(&self, path: &Path) -> Result<(), AdaptError> {
        let mut ckpt = Checkpoint { path: path.to_path_buf(), ..Default::default() };
        for (name, var) in self.student.var_store().variables() {
            ckpt.tensors.insert(name, stored(&var)?);
        }
        for (name, var) in self.pose.var_store().variables() {
            ckpt.tensors.insert(name, stored(&var)?);
        }
        for (prefix, adam) in [("adam.depth", &self.adam), ("adam.pose", &self.pose_adam)] {
            for ((name, m), v) in adam.names.iter().zip(&adam.m).zip(&adam.v) {
                ckpt.tensors.insert(format!("{prefix}.m.{name}"), stored(m)?);
                ckpt.tensors.insert(format!("{prefix}.v.{name}"), stored(v)?);
            }
        }
        if let Some(ema) = &self.ema {
            for (name, var) in ema.var_store().variables() {
                ckpt.tensors.insert(format!("ema.{name}"), stored(&var)?);
            }
        }
        let state = SavedState {
            stats: self.stats.clone(),
            adam_steps: self.adam.steps,
            pose_adam_steps: self.pose_adam.steps,
            arch: self.student.arch().name().into(),
            pose_arch: self.pose.arch().name().into(),
        };
        let json = serde_json::to_string(&state).map_err(|e| AdaptError::Checkpoint {
            path: path.to_path_buf(),
            reason: format!("cannot encode state: {e}"),
        })?;
        ckpt.metadata.insert(STATE_KEY.into(), MetaValue::Str(json));
        ckpt.metadata.insert("arch".into(), MetaValue::Str(self.student.arch().name().into()));
        ckpt.write_safetensors(path)?;
        Ok(())
    }

    /// Continues from a checkpoint written by [`Self::save_checkpoint`]: weights, Adam moments,
    /// EMA teacher and counters (the frozen anchor stays the model this adapter started from).
    pub fn resume(&mut self, path: &Path) -> Result<(), AdaptError> {
        let bad = |reason: String| AdaptError::Checkpoint { path: path.to_path_buf(), reason };
        let ckpt = Checkpoint::read(path)?;
        let state: SavedState = match ckpt.metadata.get(STATE_KEY) {
            Some(MetaValue::Str(s)) => serde_json::from_str(s)
                .map_err(|e| bad(format!("metadata `{STATE_KEY}` is not valid JSON: {e}")))?,
            _ => {
                return Err(bad(format!(
                    "no `{STATE_KEY}` metadata: not an adaptation checkpoint"
                )));
            }
        };
        if state.arch != self.student.arch().name() || state.pose_arch != self.pose.arch().name() {
            return Err(bad(format!(
                "written for {} + {}, but this adapter runs {} + {}",
                state.arch,
                state.pose_arch,
                self.student.arch(),
                self.pose.arch()
            )));
        }
        load_group(self.student.var_store_mut(), "", &ckpt, state.arch.as_str())?;
        load_group(self.pose.var_store_mut(), "", &ckpt, state.pose_arch.as_str())?;
        for (prefix, adam) in [("adam.depth", &mut self.adam), ("adam.pose", &mut self.pose_adam)] {
            for ((name, m), v) in adam.names.iter().zip(adam.m.iter_mut()).zip(adam.v.iter_mut()) {
                for (kind, dst) in [("m", m), ("v", v)] {
                    let key = format!("{prefix}.{kind}.{name}");
                    let src =
                        ckpt.tensors.get(&key).ok_or_else(|| bad(format!("missing `{key}`")))?;
                    copy_from_stored(dst, src, path, &key)?;
                }
            }
        }
        if let Some(ema) = self.ema.as_mut() {
            for (name, mut var) in ema.var_store().variables() {
                let key = format!("ema.{name}");
                let src = ckpt.tensors.get(&key).ok_or_else(|| bad(format!("missing `{key}`")))?;
                copy_from_stored(&mut var, src, path, &key)?;
            }
        }
        self.adam.steps = state.adam_steps;
        self.pose_adam.steps = state.pose_adam_steps;
        self.good_student.copy_weights_from(&self.student)?;
        self.good_pose.copy_weights_from(&self.pose)?;
        self.stats = state.stats;
        Ok(())
    }
}
