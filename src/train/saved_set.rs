//! How a training folder's three files (depth weights, pose weights, `train.json`) stay one
//! consistent set although each is renamed into place on its own: every save stamps one
//! *generation* (this run's id and the step) into the metadata of both weight files, then writes
//! the sidecar, which names the same generation, last. [`check`] compares the three when a folder
//! is opened, so a crash between the renames is a clear error instead of a silently mismatched
//! depth and pose network. Folders written before generations existed are not judged.

use super::TrainError;
use crate::model::checkpoint::{Checkpoint, MetaValue};
use std::path::Path;

/// The metadata key (weights) and sidecar field holding the generation.
pub const GENERATION_KEY: &str = "generation";

/// A new id for this training run (time and process, so that two runs never share one).
pub fn new_run_id() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    format!("{nanos:x}-{}", std::process::id())
}

/// The generation of the save at `steps` of run `run_id`.
pub fn generation(run_id: &str, steps: usize) -> String {
    format!("{run_id}/step-{steps}")
}

/// The generation stamped into a safetensors weight file, if any (its header only).
fn stamped(path: &Path) -> Result<Option<String>, TrainError> {
    let metadata = Checkpoint::read_safetensors_metadata(path)?;
    Ok(match metadata.get(GENERATION_KEY) {
        Some(MetaValue::Str(g)) => Some(g.clone()),
        _ => None,
    })
}

/// Checks that the weight files `depth` and `pose` carry the generation the sidecar at
/// `sidecar_path` names (nothing to check when it names none).
pub fn check(
    sidecar_path: &Path,
    expected: Option<&str>,
    depth: &Path,
    pose: &Path,
) -> Result<(), TrainError> {
    let Some(expected) = expected else {
        return Ok(());
    };
    for weights in [depth, pose] {
        let found = stamped(weights)?;
        if found.as_deref() != Some(expected) {
            return Err(TrainError::Sidecar {
                path: sidecar_path.to_path_buf(),
                reason: format!(
                    "names save `{expected}` but {} is from save `{}`: the folder is a mismatched \
                     set (training was interrupted between writing its files); re-run `train`, or \
                     use a folder whose files agree",
                    weights.display(),
                    found.as_deref().unwrap_or("(none)")
                ),
            });
        }
    }
    Ok(())
}
