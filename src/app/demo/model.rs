//! The demo's depth model: the committed base model by default (models/base_WxH, a
//! `livedepth train` folder), or any folder or file the user names, resolved to its weights,
//! architecture and input size.

use crate::model::Arch;
use crate::train::TrainedModel;
use serde::Serialize;
use std::path::{Path, PathBuf};

/// The committed base model's folder, relative to the repository root.
pub const BASE_MODEL_DIR: &str = "models/base_320x96";

/// `relative` (to the repository root: the committed base model, or `../shared`) resolved
/// against the current folder, then against this source tree, if it exists.
pub fn find_existing(relative: &str) -> Option<PathBuf> {
    [PathBuf::from(relative), Path::new(env!("CARGO_MANIFEST_DIR")).join(relative)]
        .into_iter()
        .find(|p| p.exists())
}

/// A depth model as the demo uses it.
#[derive(Clone, Debug, Serialize)]
pub struct DemoModel {
    /// What the user named (folder or file).
    pub path: PathBuf,
    /// Depth weights (folder or safetensors file).
    pub depth: PathBuf,
    /// Pose weights, when the model has them (a `livedepth train` folder).
    pub pose: Option<PathBuf>,
    #[serde(serialize_with = "serialize_arch")]
    pub arch: Arch,
    pub width: u32,
    pub height: u32,
}

fn serialize_arch<S: serde::Serializer>(arch: &Arch, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(arch.name())
}

/// Resolves a model path: a `livedepth train` folder (sidecar gives architecture, input size,
/// depth and pose files), a Monodepth2-format folder (input size from its encoder.pth, else
/// 640x192; RT-MonoDepth-S) or a safetensors depth file (640x192, RT-MonoDepth-S).
pub fn resolve_model(path: &Path) -> crate::Result<DemoModel> {
    if TrainedModel::is_trained_dir(path) {
        let trained = TrainedModel::open(path)?;
        return Ok(DemoModel {
            path: path.to_path_buf(),
            depth: trained.depth,
            pose: Some(trained.pose),
            arch: trained.sidecar.arch()?,
            width: trained.sidecar.width,
            height: trained.sidecar.height,
        });
    }
    if !path.exists() {
        return Err(crate::Error::Other(format!(
            "{}: no such model (expected a `livedepth train` folder with train.json, a folder \
             with encoder.pth + depth.pth, or a .safetensors file)",
            path.display()
        )));
    }
    let (width, height) = if path.is_dir() {
        crate::model::trained_input_size(path)?.unwrap_or((640, 192))
    } else {
        (640, 192)
    };
    Ok(DemoModel {
        path: path.to_path_buf(),
        depth: path.to_path_buf(),
        pose: None,
        arch: Arch::RtMonoDepthS,
        width,
        height,
    })
}

/// The model the demo runs: `requested`, else the committed base model ([`find_existing`]; an
/// error saying how to get one when it is missing).
pub fn find_model(requested: Option<&Path>) -> crate::Result<DemoModel> {
    let path = match requested {
        Some(model) => model.to_path_buf(),
        None => find_existing(BASE_MODEL_DIR).ok_or_else(|| {
            crate::Error::Other(format!(
                "no depth model: {BASE_MODEL_DIR} is missing (run `make base-model`, or pass \
                 --model DIR)"
            ))
        })?,
    };
    resolve_model(&path)
}
