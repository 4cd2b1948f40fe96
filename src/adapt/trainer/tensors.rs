//! Small libtorch helpers of the adapter: moving tensors to and from the host form checkpoints
//! are written in.

use super::AdaptError;
use super::tensor_to_host;
use crate::model::checkpoint::{StorageDtype, StoredTensor};
use std::path::Path;
use tch::Tensor;

pub(super) fn to_host(t: &Tensor) -> Result<Vec<f32>, AdaptError> {
    Ok(tensor_to_host(t)?)
}

pub(super) fn stored(t: &Tensor) -> Result<StoredTensor, AdaptError> {
    let values = to_host(t)?;
    let shape = t.size().iter().map(|&d| d as usize).collect();
    Ok(StoredTensor { dtype: StorageDtype::F32, shape, values })
}

pub(super) fn copy_from_stored(
    dst: &mut Tensor,
    src: &StoredTensor,
    path: &Path,
    name: &str,
) -> Result<(), AdaptError> {
    let expected: Vec<usize> = dst.size().iter().map(|&d| d as usize).collect();
    if expected != src.shape {
        return Err(AdaptError::Checkpoint {
            path: path.to_path_buf(),
            reason: format!("tensor `{name}` has shape {:?}, expected {expected:?}", src.shape),
        });
    }
    let t = Tensor::f_from_slice(&src.values)?.f_reshape(dst.size())?;
    tch::no_grad(|| dst.f_copy_(&t))?;
    Ok(())
}
