//! Shared adaptation across a fleet: the weights a device adapted travel as safetensors bytes
//! whose metadata say who adapted them, from which base model and with how many accepted steps
//! ([`encode_weights`] / [`decode_weights`]); [`merge`] averages several devices' changes to the
//! same base (federated averaging of the deltas, weighted by accepted steps).
//!
//! On Zenoh they live under `livedepth/<fleet>/weights/<device>` ([`weights_key`]), and the
//! merge that `livedepth fleet` validated and republished under `livedepth/<fleet>/weights/merged`.

use crate::model::ModelError;
use crate::model::checkpoint::{Checkpoint, MetaValue, StoredTensor};
use sha2::{Digest, Sha256};
use std::path::Path;

/// The device name under which a fleet's merged weights are published.
pub const MERGED_DEVICE: &str = "merged";

/// `livedepth/<fleet>/weights/<device>`.
pub fn weights_key(fleet: &str, device: &str) -> String {
    format!("livedepth/{fleet}/weights/{device}")
}

/// Errors of fleet weights; each names the device (or source) and the variable.
#[derive(Debug, thiserror::Error)]
pub enum FleetError {
    #[error(transparent)]
    Model(#[from] ModelError),
    #[error("weights from {origin}: metadata `{field}` {problem}")]
    Metadata { origin: String, field: &'static str, problem: String },
    #[error(
        "weights from device `{device}` adapted base {found}, not this fleet's base {expected}: \
         they cannot be averaged with it (start that device from the same model)"
    )]
    OtherBase { device: String, expected: String, found: String },
    #[error("weights from device `{device}`: variable `{name}` {problem}")]
    Variable { device: String, name: String, problem: String },
    #[error("nothing to merge: no device has sent weights")]
    Empty,
}

/// A device's adapted weights and where they came from.
#[derive(Clone, Debug)]
pub struct DeviceWeights {
    pub device: String,
    /// [`base_hash`] of the model the device started from.
    pub base: String,
    /// Accepted adaptation steps behind these weights (the merge weight).
    pub accepted_steps: u64,
    pub checkpoint: Checkpoint,
}

/// A short, stable hash of a checkpoint's tensors (names, shapes and values, in name order).
pub fn base_hash(checkpoint: &Checkpoint) -> String {
    let mut h = Sha256::new();
    for (name, t) in &checkpoint.tensors {
        h.update(name.as_bytes());
        h.update([0]);
        for d in &t.shape {
            h.update((*d as u64).to_le_bytes());
        }
        for v in &t.values {
            h.update(v.to_le_bytes());
        }
    }
    h.finalize()[..8].iter().map(|b| format!("{b:02x}")).collect()
}

/// `checkpoint` as safetensors bytes with the fleet metadata (device, base, accepted steps).
pub fn encode_weights(
    checkpoint: &Checkpoint,
    device: &str,
    base: &str,
    accepted_steps: u64,
) -> Result<Vec<u8>, FleetError> {
    let mut tagged = checkpoint.clone();
    for (k, v) in [
        ("fleet.device", device.to_owned()),
        ("fleet.base", base.to_owned()),
        ("fleet.accepted_steps", accepted_steps.to_string()),
    ] {
        tagged.metadata.insert(k.to_owned(), MetaValue::Str(v));
    }
    Ok(tagged.to_safetensors_bytes()?)
}

/// Decodes what [`encode_weights`] made; `origin` (e.g. the Zenoh key) names it in errors.
pub fn decode_weights(bytes: &[u8], origin: &str) -> Result<DeviceWeights, FleetError> {
    let checkpoint = Checkpoint::from_safetensors_bytes(bytes, Path::new(origin))?;
    let text = |field: &'static str| -> Result<String, FleetError> {
        match checkpoint.metadata.get(field) {
            Some(MetaValue::Str(s)) => Ok(s.clone()),
            Some(MetaValue::Int(i)) => Ok(i.to_string()),
            _ => Err(FleetError::Metadata {
                origin: origin.to_owned(),
                field,
                problem: "is missing (expected livedepth fleet weights)".into(),
            }),
        }
    };
    let device = text("fleet.device")?;
    let base = text("fleet.base")?;
    let steps = text("fleet.accepted_steps")?;
    let accepted_steps = steps.parse().map_err(|_| FleetError::Metadata {
        origin: origin.to_owned(),
        field: "fleet.accepted_steps",
        problem: format!("is {steps:?}, expected a whole number"),
    })?;
    Ok(DeviceWeights { device, base, accepted_steps, checkpoint })
}

/// θ = θ_base + Σ_i w_i (θ_i − θ_base) / Σ_i w_i with w_i = the accepted steps of device i (a
/// device without accepted steps adds nothing; when none has any, all count alike). Every
/// device must have adapted `base` (same hash) and hold every variable of it with the same
/// shape.
pub fn merge(base: &Checkpoint, devices: &[DeviceWeights]) -> Result<Checkpoint, FleetError> {
    if devices.is_empty() {
        return Err(FleetError::Empty);
    }
    let expected = base_hash(base);
    for d in devices {
        if d.base != expected {
            return Err(FleetError::OtherBase {
                device: d.device.clone(),
                expected,
                found: d.base.clone(),
            });
        }
    }
    let mut weights: Vec<f64> = devices.iter().map(|d| d.accepted_steps as f64).collect();
    if weights.iter().all(|&w| w == 0.0) {
        weights.fill(1.0);
    }
    let total: f64 = weights.iter().sum();
    let mut merged = Checkpoint { path: base.path.clone(), ..Default::default() };
    merged.metadata = base.metadata.clone();
    for (name, b) in &base.tensors {
        let mut values: Vec<f64> = b.values.iter().map(|&v| f64::from(v)).collect();
        for (d, w) in devices.iter().zip(&weights) {
            let t = d.checkpoint.tensors.get(name).ok_or_else(|| FleetError::Variable {
                device: d.device.clone(),
                name: name.clone(),
                problem: "is missing".into(),
            })?;
            if t.shape != b.shape || t.values.len() != b.values.len() {
                return Err(FleetError::Variable {
                    device: d.device.clone(),
                    name: name.clone(),
                    problem: format!("has shape {:?}, the base {:?}", t.shape, b.shape),
                });
            }
            for ((m, &v), &v0) in values.iter_mut().zip(&t.values).zip(&b.values) {
                *m += w / total * (f64::from(v) - f64::from(v0));
            }
        }
        let values = values.into_iter().map(|v| v as f32).collect();
        merged.tensors.insert(name.clone(), StoredTensor { values, ..b.clone() });
    }
    Ok(merged)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::checkpoint::StorageDtype;

    fn checkpoint(values: &[(&str, Vec<f32>)]) -> Checkpoint {
        let mut c = Checkpoint::default();
        for (name, v) in values {
            let t =
                StoredTensor { dtype: StorageDtype::F32, shape: vec![v.len()], values: v.clone() };
            c.tensors.insert((*name).to_owned(), t);
        }
        c.metadata.insert("arch".into(), MetaValue::Str("rtmonodepth-s".into()));
        c
    }

    #[test]
    fn deltas_average_weighted_by_accepted_steps_and_round_trip_as_bytes() {
        let base = checkpoint(&[("a", vec![1.0, 2.0]), ("b", vec![0.0])]);
        let hash = base_hash(&base);
        let one = checkpoint(&[("a", vec![2.0, 2.0]), ("b", vec![1.0])]);
        let two = checkpoint(&[("a", vec![1.0, 6.0]), ("b", vec![-1.0])]);
        let bytes_one = encode_weights(&one, "car-1", &hash, 30).unwrap();
        let bytes_two = encode_weights(&two, "car-2", &hash, 10).unwrap();
        let d1 = decode_weights(&bytes_one, "livedepth/f/weights/car-1").unwrap();
        let d2 = decode_weights(&bytes_two, "livedepth/f/weights/car-2").unwrap();
        assert_eq!((d1.device.as_str(), d1.accepted_steps), ("car-1", 30));
        let merged = merge(&base, &[d1, d2]).unwrap();
        // a: 1 + 0.75·1 + 0.25·0 = 1.75; 2 + 0.75·0 + 0.25·4 = 3; b: 0.75·1 − 0.25·1 = 0.5.
        assert_eq!(merged.tensors["a"].values, vec![1.75, 3.0]);
        assert_eq!(merged.tensors["b"].values, vec![0.5]);
        assert!(
            matches!(merged.metadata.get("arch"), Some(MetaValue::Str(a)) if a == "rtmonodepth-s")
        );
    }

    #[test]
    fn other_bases_missing_variables_and_bad_metadata_are_named() {
        let base = checkpoint(&[("a", vec![1.0])]);
        let other = checkpoint(&[("a", vec![5.0])]);
        let stranger =
            decode_weights(&encode_weights(&other, "car-9", &base_hash(&other), 3).unwrap(), "k")
                .unwrap();
        let err = merge(&base, &[stranger]).unwrap_err().to_string();
        assert!(err.contains("car-9") && err.contains("base"), "{err}");
        let missing = decode_weights(
            &encode_weights(&checkpoint(&[("z", vec![1.0])]), "car-3", &base_hash(&base), 3)
                .unwrap(),
            "k",
        )
        .unwrap();
        let err = merge(&base, &[missing]).unwrap_err().to_string();
        assert!(err.contains("car-3") && err.contains("`a`") && err.contains("missing"), "{err}");
        let plain = base.to_safetensors_bytes().unwrap();
        let err = decode_weights(&plain, "livedepth/f/weights/x").unwrap_err().to_string();
        assert!(err.contains("livedepth/f/weights/x") && err.contains("fleet.device"), "{err}");
        assert!(matches!(merge(&base, &[]), Err(FleetError::Empty)));
        // A device without accepted steps adds nothing beside one that has some.
        let idle = decode_weights(
            &encode_weights(&checkpoint(&[("a", vec![9.0])]), "car-4", &base_hash(&base), 0)
                .unwrap(),
            "k",
        )
        .unwrap();
        let busy = decode_weights(
            &encode_weights(&checkpoint(&[("a", vec![3.0])]), "car-5", &base_hash(&base), 5)
                .unwrap(),
            "k",
        )
        .unwrap();
        assert_eq!(merge(&base, &[idle, busy]).unwrap().tensors["a"].values, vec![3.0]);
    }
}
