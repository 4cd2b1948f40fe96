//! Reading and writing network weights without libtorch: PyTorch zip checkpoints (`torch.save`
//! of a state dict, as the published Monodepth2-format `encoder.pth` / `depth.pth` files are)
//! through a minimal pickle reader, and safetensors files.
//!
//! The pickle reader understands only the opcodes that `torch.save` emits for a state dict
//! (protocol 2, plus the few protocol-4 ones newer writers use) and reports anything else as a
//! typed error naming the opcode and its offset, so a foreign or corrupt file never panics.

use super::ModelError;
use std::collections::{BTreeMap, HashMap};
use std::io::Read;
use std::path::{Path, PathBuf};

mod pickle;
use pickle::{Unpickler, Value};

/// Element type of a stored tensor, as named by its PyTorch storage class.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StorageDtype {
    F32,
    F64,
    F16,
    BF16,
    I64,
    I32,
    I16,
    I8,
    U8,
    Bool,
}

impl StorageDtype {
    fn from_storage_class(name: &str) -> Option<Self> {
        Some(match name {
            "FloatStorage" => Self::F32,
            "DoubleStorage" => Self::F64,
            "HalfStorage" => Self::F16,
            "BFloat16Storage" => Self::BF16,
            "LongStorage" => Self::I64,
            "IntStorage" => Self::I32,
            "ShortStorage" => Self::I16,
            "CharStorage" => Self::I8,
            "ByteStorage" => Self::U8,
            "BoolStorage" => Self::Bool,
            _ => return None,
        })
    }

    /// Bytes per element.
    pub fn size(self) -> usize {
        match self {
            Self::F64 | Self::I64 => 8,
            Self::F32 | Self::I32 => 4,
            Self::F16 | Self::BF16 | Self::I16 => 2,
            Self::I8 | Self::U8 | Self::Bool => 1,
        }
    }

    /// Whether values of this type are floating point (network weights).
    pub fn is_float(self) -> bool {
        matches!(self, Self::F32 | Self::F64 | Self::F16 | Self::BF16)
    }

    fn decode(self, b: &[u8]) -> f32 {
        match self {
            Self::F32 => f32::from_le_bytes([b[0], b[1], b[2], b[3]]),
            Self::F64 => {
                f64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]) as f32
            }
            Self::F16 => f16_to_f32(u16::from_le_bytes([b[0], b[1]])),
            Self::BF16 => f32::from_bits((u16::from_le_bytes([b[0], b[1]]) as u32) << 16),
            Self::I64 => {
                i64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]) as f32
            }
            Self::I32 => i32::from_le_bytes([b[0], b[1], b[2], b[3]]) as f32,
            Self::I16 => i16::from_le_bytes([b[0], b[1]]) as f32,
            Self::I8 => b[0] as i8 as f32,
            Self::U8 | Self::Bool => b[0] as f32,
        }
    }
}

fn f16_to_f32(h: u16) -> f32 {
    let sign = ((h >> 15) as u32) << 31;
    let exp = ((h >> 10) & 0x1f) as i32;
    let mant = (h & 0x3ff) as u32;
    let bits = if exp == 0 {
        if mant == 0 {
            sign
        } else {
            // Subnormal: value = mant * 2^-24.
            let v = mant as f32 * (1.0 / 16_777_216.0);
            return if sign != 0 { -v } else { v };
        }
    } else if exp == 31 {
        sign | 0x7f80_0000 | (mant << 13)
    } else {
        sign | (((exp - 15 + 127) as u32) << 23) | (mant << 13)
    };
    f32::from_bits(bits)
}

/// One tensor of a checkpoint, converted to f32 in row-major (contiguous) order.
#[derive(Clone, Debug, PartialEq)]
pub struct StoredTensor {
    /// The element type it was stored with.
    pub dtype: StorageDtype,
    pub shape: Vec<usize>,
    pub values: Vec<f32>,
}

/// A non-tensor entry of a checkpoint (Monodepth2 stores `height`, `width`, `use_stereo`).
#[derive(Clone, Debug, PartialEq)]
pub enum MetaValue {
    Int(i64),
    Float(f64),
    Bool(bool),
    Str(String),
}

/// The contents of one weights file: named tensors plus non-tensor entries.
#[derive(Clone, Debug, Default)]
pub struct Checkpoint {
    /// The file it was read from (named in errors).
    pub path: PathBuf,
    pub tensors: BTreeMap<String, StoredTensor>,
    pub metadata: BTreeMap<String, MetaValue>,
}

impl Checkpoint {
    /// Reads a PyTorch zip checkpoint (`torch.save` of a state dict).
    pub fn read_pth(path: &Path) -> Result<Self, ModelError> {
        let file = std::fs::File::open(path)
            .map_err(|source| ModelError::Io { path: path.to_path_buf(), source })?;
        let file_len = file
            .metadata()
            .map_err(|source| ModelError::Io { path: path.to_path_buf(), source })?
            .len();
        let not_ckpt =
            |reason: String| ModelError::NotACheckpoint { path: path.to_path_buf(), reason };
        let mut zip = zip::ZipArchive::new(std::io::BufReader::new(file)).map_err(|e| {
            not_ckpt(format!(
                "expected a PyTorch zip checkpoint (torch.save since PyTorch 1.6), but it is not \
                 a readable zip archive ({e})"
            ))
        })?;
        let entry_names: Vec<String> =
            zip.file_names().filter_map(|n| n.ok().map(|n| n.into_owned())).collect();
        let pkl_name = entry_names
            .iter()
            .find(|n| n.ends_with("/data.pkl") || *n == "data.pkl")
            .cloned()
            .ok_or_else(|| not_ckpt("the zip archive has no `<prefix>/data.pkl` entry".into()))?;
        let prefix = pkl_name.strip_suffix("data.pkl").unwrap_or("").to_owned();
        let read_entry =
            |zip: &mut zip::ZipArchive<_>, name: &str| -> Result<Vec<u8>, ModelError> {
                let mut entry = zip
                    .by_name(name)
                    .map_err(|e| not_ckpt(format!("cannot open zip entry `{name}`: {e}")))?;
                // The declared size is not trusted: a stored entry cannot be larger than the
                // file, a compressed one is allowed a generous ratio, and nothing is read past
                // what was declared.
                let declared = entry.size();
                let stored = entry.compression() == zip::CompressionMethod::Stored;
                let limit = if stored { file_len } else { file_len.saturating_mul(MAX_INFLATION) };
                if declared > limit {
                    return Err(not_ckpt(format!(
                        "zip entry `{name}` declares {declared} bytes, more than a {file_len}-byte \
                         file can hold"
                    )));
                }
                let mut buf = Vec::with_capacity(usize::try_from(declared).unwrap_or(0));
                (&mut entry)
                    .take(declared)
                    .read_to_end(&mut buf)
                    .map_err(|e| not_ckpt(format!("cannot read zip entry `{name}`: {e}")))?;
                Ok(buf)
            };
        if entry_names.iter().any(|n| *n == format!("{prefix}byteorder")) {
            let order = read_entry(&mut zip, &format!("{prefix}byteorder"))?;
            if order.trim_ascii() != b"little" {
                return Err(not_ckpt(format!(
                    "byte order `{}` is not supported (expected little-endian storages)",
                    String::from_utf8_lossy(&order)
                )));
            }
        }
        let pickle = read_entry(&mut zip, &pkl_name)?;
        let root = Unpickler::new(&pickle)
            .run()
            .map_err(|reason| ModelError::Pickle { path: path.to_path_buf(), reason })?;
        let Value::Dict(entries) = root else {
            return Err(not_ckpt(format!(
                "the pickled object is {}, expected a state dict",
                root.kind_name()
            )));
        };
        let mut storages: HashMap<String, Vec<u8>> = HashMap::new();
        let mut ckpt = Checkpoint { path: path.to_path_buf(), ..Default::default() };
        for (key, value) in entries {
            let Value::Str(key) = key else { continue };
            match value {
                Value::Tensor(t) => {
                    if !storages.contains_key(&t.storage.key) {
                        let bytes =
                            read_entry(&mut zip, &format!("{prefix}data/{}", t.storage.key))?;
                        storages.insert(t.storage.key.clone(), bytes);
                    }
                    let bytes = &storages[&t.storage.key];
                    let tensor = t.materialise(bytes).map_err(|reason| ModelError::Pickle {
                        path: path.to_path_buf(),
                        reason: format!("tensor `{key}`: {reason}"),
                    })?;
                    ckpt.tensors.insert(key, tensor);
                }
                Value::Int(v) => {
                    ckpt.metadata.insert(key, MetaValue::Int(v));
                }
                Value::Float(v) => {
                    ckpt.metadata.insert(key, MetaValue::Float(v));
                }
                Value::Bool(v) => {
                    ckpt.metadata.insert(key, MetaValue::Bool(v));
                }
                Value::Str(v) => {
                    ckpt.metadata.insert(key, MetaValue::Str(v));
                }
                _ => {}
            }
        }
        Ok(ckpt)
    }

    /// Reads a safetensors file (f32/f64/f16/bf16/integer tensors, string metadata).
    pub fn read_safetensors(path: &Path) -> Result<Self, ModelError> {
        let bytes = std::fs::read(path)
            .map_err(|source| ModelError::Io { path: path.to_path_buf(), source })?;
        Self::from_safetensors_bytes(&bytes, path)
    }

    /// Decodes safetensors `bytes` (e.g. received over the network); `path` names them in errors.
    pub fn from_safetensors_bytes(bytes: &[u8], path: &Path) -> Result<Self, ModelError> {
        let bad = |reason: String| ModelError::Safetensors { path: path.to_path_buf(), reason };
        let st = safetensors::SafeTensors::deserialize(bytes)
            .map_err(|e| bad(format!("not a valid safetensors file: {e}")))?;
        let (_, header) = safetensors::SafeTensors::read_metadata(bytes)
            .map_err(|e| bad(format!("not a valid safetensors file: {e}")))?;
        let mut ckpt = Checkpoint { path: path.to_path_buf(), ..Default::default() };
        for (name, view) in st.iter() {
            use safetensors::Dtype as D;
            let dtype = match view.dtype() {
                D::F32 => StorageDtype::F32,
                D::F64 => StorageDtype::F64,
                D::F16 => StorageDtype::F16,
                D::BF16 => StorageDtype::BF16,
                D::I64 => StorageDtype::I64,
                D::I32 => StorageDtype::I32,
                D::I16 => StorageDtype::I16,
                D::I8 => StorageDtype::I8,
                D::U8 => StorageDtype::U8,
                D::BOOL => StorageDtype::Bool,
                other => {
                    return Err(bad(format!("tensor `{name}` has unsupported dtype {other:?}")));
                }
            };
            let values = view.data().chunks_exact(dtype.size()).map(|c| dtype.decode(c)).collect();
            ckpt.tensors.insert(
                name.to_owned(),
                StoredTensor { dtype, shape: view.shape().to_vec(), values },
            );
        }
        ckpt.metadata = meta_values(&header);
        Ok(ckpt)
    }

    /// Only the metadata of a safetensors file (its header), without decoding any tensor.
    pub fn read_safetensors_metadata(
        path: &Path,
    ) -> Result<BTreeMap<String, MetaValue>, ModelError> {
        let bytes = std::fs::read(path)
            .map_err(|source| ModelError::Io { path: path.to_path_buf(), source })?;
        let (_, header) = safetensors::SafeTensors::read_metadata(&bytes).map_err(|e| {
            ModelError::Safetensors {
                path: path.to_path_buf(),
                reason: format!("not a valid safetensors file: {e}"),
            }
        })?;
        Ok(meta_values(&header))
    }

    /// Reads `path` as safetensors when it ends in `.safetensors`, else as a PyTorch checkpoint.
    pub fn read(path: &Path) -> Result<Self, ModelError> {
        if path.extension().is_some_and(|e| e == "safetensors") {
            Self::read_safetensors(path)
        } else {
            Self::read_pth(path)
        }
    }

    /// Writes the f32 tensors and the metadata as a safetensors file, atomically (temp file,
    /// fsync, rename).
    pub fn write_safetensors(&self, path: &Path) -> Result<(), ModelError> {
        write_atomically(path, &self.to_safetensors_bytes()?)
    }

    /// The f32 tensors and the metadata as safetensors bytes (`self.path` names them in errors).
    pub fn to_safetensors_bytes(&self) -> Result<Vec<u8>, ModelError> {
        let path = &self.path;
        let mut owned: Vec<(String, Vec<u8>, Vec<usize>)> = Vec::with_capacity(self.tensors.len());
        for (name, t) in &self.tensors {
            let bytes: Vec<u8> = t.values.iter().flat_map(|v| v.to_le_bytes()).collect();
            owned.push((name.clone(), bytes, t.shape.clone()));
        }
        let bad = |reason: String| ModelError::Safetensors { path: path.to_path_buf(), reason };
        let mut views = Vec::with_capacity(owned.len());
        for (name, bytes, shape) in &owned {
            let view =
                safetensors::tensor::TensorView::new(safetensors::Dtype::F32, shape.clone(), bytes)
                    .map_err(|e| bad(format!("tensor `{name}`: {e}")))?;
            views.push((name.as_str(), view));
        }
        let meta: HashMap<String, String> = self
            .metadata
            .iter()
            .map(|(k, v)| {
                let s = match v {
                    MetaValue::Int(i) => i.to_string(),
                    MetaValue::Float(f) => f.to_string(),
                    MetaValue::Bool(b) => b.to_string(),
                    MetaValue::Str(s) => s.clone(),
                };
                (k.clone(), s)
            })
            .collect();
        safetensors::serialize(views, Some(meta)).map_err(|e| bad(format!("cannot serialise: {e}")))
    }

    /// The integer metadata entry `key`, if present.
    pub fn meta_int(&self, key: &str) -> Option<i64> {
        match self.metadata.get(key)? {
            MetaValue::Int(i) => Some(*i),
            _ => None,
        }
    }
}

/// Writes `bytes` to `path` atomically ([`crate::tempfiles::write_atomic`]).
pub fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), ModelError> {
    let io = |source| ModelError::Io { path: path.to_path_buf(), source };
    crate::tempfiles::write_atomic(path, |temp| std::fs::write(temp, bytes).map_err(io), io)
}

/// A safetensors header's string metadata, with integers and booleans typed.
fn meta_values(header: &safetensors::tensor::Metadata) -> BTreeMap<String, MetaValue> {
    let typed = |v: &String| {
        if let Ok(i) = v.parse::<i64>() {
            MetaValue::Int(i)
        } else if let Ok(b) = v.parse::<bool>() {
            MetaValue::Bool(b)
        } else {
            MetaValue::Str(v.clone())
        }
    };
    header.metadata().iter().flatten().map(|(k, v)| (k.clone(), typed(v))).collect()
}

/// A compressed zip entry may declare at most this many times the file's size.
const MAX_INFLATION: u64 = 64;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn half_precision_decodes() {
        assert_eq!(f16_to_f32(0x3c00), 1.0);
        assert_eq!(f16_to_f32(0xc000), -2.0);
        assert_eq!(f16_to_f32(0x0000), 0.0);
        assert!((f16_to_f32(0x0001) - 5.960_464_5e-8).abs() < 1e-12);
        assert!(f16_to_f32(0x7c00).is_infinite());
    }
}
