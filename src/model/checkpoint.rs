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
/// A tensor view may hold more elements than its storage (stride-0 broadcasting) up to this.
const MAX_BROADCAST_ELEMENTS: usize = 1 << 24;

#[derive(Clone, Debug)]
struct StorageRef {
    dtype: StorageDtype,
    key: String,
    numel: usize,
}

#[derive(Clone, Debug)]
struct TensorRef {
    storage: StorageRef,
    offset: usize,
    shape: Vec<usize>,
    stride: Vec<usize>,
}

impl TensorRef {
    fn materialise(&self, bytes: &[u8]) -> Result<StoredTensor, String> {
        let esize = self.storage.dtype.size();
        let available = bytes.len() / esize;
        if available < self.storage.numel {
            return Err(format!(
                "storage `{}` holds {available} elements, the pickle declares {}",
                self.storage.key, self.storage.numel
            ));
        }
        // Shapes, strides and offsets come from the pickle: every product and sum is checked, and
        // a view may not hold more elements than its storage (beyond a small broadcast
        // allowance), so a crafted file is an error and never an allocation abort.
        let overflow = || {
            format!(
                "shape {:?} with strides {:?} at offset {} overflows",
                self.shape, self.stride, self.offset
            )
        };
        let numel = self
            .shape
            .iter()
            .try_fold(1usize, |acc, &n| acc.checked_mul(n))
            .ok_or_else(overflow)?;
        if numel > available.max(MAX_BROADCAST_ELEMENTS) {
            return Err(format!(
                "shape {:?} declares {numel} elements, more than its storage `{}` holds \
                 ({available})",
                self.shape, self.storage.key
            ));
        }
        let mut values = Vec::with_capacity(numel);
        if numel > 0 {
            // Largest element index reachable, for a bounds check before reading.
            let reach = self
                .shape
                .iter()
                .zip(&self.stride)
                .try_fold(0usize, |acc, (&n, &s)| (n - 1).checked_mul(s)?.checked_add(acc))
                .ok_or_else(overflow)?;
            let last = self.offset.checked_add(reach).ok_or_else(overflow)?;
            if last >= available {
                return Err(format!(
                    "shape {:?} with strides {:?} at offset {} reads past the storage ({available} elements)",
                    self.shape, self.stride, self.offset
                ));
            }
            let mut index = vec![0usize; self.shape.len()];
            for _ in 0..numel {
                let pos =
                    self.offset + index.iter().zip(&self.stride).map(|(i, s)| i * s).sum::<usize>();
                values.push(self.storage.dtype.decode(&bytes[pos * esize..(pos + 1) * esize]));
                for d in (0..index.len()).rev() {
                    index[d] += 1;
                    if index[d] < self.shape[d] {
                        break;
                    }
                    index[d] = 0;
                }
            }
        }
        Ok(StoredTensor { dtype: self.storage.dtype, shape: self.shape.clone(), values })
    }
}

#[derive(Clone, Debug)]
enum Value {
    Mark,
    None,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    Bytes,
    Tuple(Vec<Value>),
    List(Vec<Value>),
    Dict(Vec<(Value, Value)>),
    Global(String, String),
    Storage(StorageRef),
    Tensor(TensorRef),
    Object(String),
}

impl Value {
    fn kind_name(&self) -> String {
        match self {
            Value::Mark => "a mark".into(),
            Value::None => "None".into(),
            Value::Bool(_) => "a bool".into(),
            Value::Int(_) => "an int".into(),
            Value::Float(_) => "a float".into(),
            Value::Str(_) => "a string".into(),
            Value::Bytes => "bytes".into(),
            Value::Tuple(_) => "a tuple".into(),
            Value::List(_) => "a list".into(),
            Value::Dict(_) => "a dict".into(),
            Value::Global(m, n) => format!("the global {m}.{n}"),
            Value::Storage(_) => "a storage".into(),
            Value::Tensor(_) => "a tensor".into(),
            Value::Object(n) => format!("an object built by {n}"),
        }
    }

    fn as_usize_list(&self, what: &str) -> Result<Vec<usize>, String> {
        match self {
            Value::Tuple(items) | Value::List(items) => items
                .iter()
                .map(|v| match v {
                    Value::Int(i) if *i >= 0 => Ok(*i as usize),
                    other => Err(format!(
                        "{what}: expected a non-negative int, found {}",
                        other.kind_name()
                    )),
                })
                .collect(),
            other => Err(format!("{what}: expected a tuple, found {}", other.kind_name())),
        }
    }
}

struct Unpickler<'a> {
    data: &'a [u8],
    pos: usize,
    stack: Vec<Value>,
    memo: HashMap<u32, Value>,
}

impl<'a> Unpickler<'a> {
    fn new(data: &'a [u8]) -> Self {
        Self { data, pos: 0, stack: Vec::new(), memo: HashMap::new() }
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.data.len()).ok_or_else(|| {
            format!("the pickle ends early (needed {n} bytes at offset {})", self.pos)
        })?;
        let s = &self.data[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    fn u8(&mut self) -> Result<u8, String> {
        Ok(self.take(1)?[0])
    }

    fn u16(&mut self) -> Result<u16, String> {
        let b = self.take(2)?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    }

    fn u32(&mut self) -> Result<u32, String> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn line(&mut self) -> Result<String, String> {
        let rest = &self.data[self.pos..];
        let n = rest.iter().position(|&c| c == b'\n').ok_or("unterminated text line")?;
        let s = String::from_utf8_lossy(&rest[..n]).into_owned();
        self.pos += n + 1;
        Ok(s)
    }

    fn utf8(&mut self, n: usize) -> Result<String, String> {
        let b = self.take(n)?;
        String::from_utf8(b.to_vec()).map_err(|_| "invalid UTF-8 in a string".to_string())
    }

    fn pop(&mut self) -> Result<Value, String> {
        self.stack.pop().ok_or_else(|| format!("stack underflow at offset {}", self.pos))
    }

    fn pop_mark(&mut self) -> Result<Vec<Value>, String> {
        let at = self
            .stack
            .iter()
            .rposition(|v| matches!(v, Value::Mark))
            .ok_or_else(|| format!("no MARK on the stack at offset {}", self.pos))?;
        let items = self.stack.split_off(at + 1);
        self.stack.pop();
        Ok(items)
    }

    fn top_mut(&mut self) -> Result<&mut Value, String> {
        let pos = self.pos;
        self.stack.last_mut().ok_or_else(|| format!("stack underflow at offset {pos}"))
    }

    fn memo_get(&self, key: u32) -> Result<Value, String> {
        self.memo.get(&key).cloned().ok_or_else(|| format!("memo key {key} is undefined"))
    }

    fn memo_put(&mut self, key: u32) -> Result<(), String> {
        let v = self.stack.last().cloned().ok_or("memo put on an empty stack")?;
        self.memo.insert(key, v);
        Ok(())
    }

    fn run(mut self) -> Result<Value, String> {
        loop {
            let at = self.pos;
            let op = self.u8()?;
            match op {
                0x80 => {
                    self.u8()?; // PROTO
                }
                0x95 => {
                    self.take(8)?; // FRAME
                }
                b'.' => return self.pop(),
                b'(' => self.stack.push(Value::Mark),
                b'}' => self.stack.push(Value::Dict(Vec::new())),
                b']' => self.stack.push(Value::List(Vec::new())),
                b')' => self.stack.push(Value::Tuple(Vec::new())),
                b't' => {
                    let items = self.pop_mark()?;
                    self.stack.push(Value::Tuple(items));
                }
                0x85..=0x87 => {
                    let n = (op - 0x84) as usize;
                    if self.stack.len() < n {
                        return Err(format!("stack underflow at offset {at}"));
                    }
                    let items = self.stack.split_off(self.stack.len() - n);
                    self.stack.push(Value::Tuple(items));
                }
                b'q' => {
                    let k = self.u8()? as u32;
                    self.memo_put(k)?;
                }
                b'r' => {
                    let k = self.u32()?;
                    self.memo_put(k)?;
                }
                0x94 => {
                    let k = self.memo.len() as u32;
                    self.memo_put(k)?;
                }
                b'h' => {
                    let k = self.u8()? as u32;
                    let v = self.memo_get(k)?;
                    self.stack.push(v);
                }
                b'j' => {
                    let k = self.u32()?;
                    let v = self.memo_get(k)?;
                    self.stack.push(v);
                }
                b'J' => {
                    let v = self.u32()? as i32 as i64;
                    self.stack.push(Value::Int(v));
                }
                b'K' => {
                    let v = self.u8()? as i64;
                    self.stack.push(Value::Int(v));
                }
                b'M' => {
                    let v = self.u16()? as i64;
                    self.stack.push(Value::Int(v));
                }
                0x8a => {
                    let n = self.u8()? as usize;
                    let b = self.take(n)?;
                    if n > 8 {
                        return Err(format!("LONG1 of {n} bytes at offset {at} is too large"));
                    }
                    let mut v: i64 = 0;
                    for (i, &byte) in b.iter().enumerate() {
                        v |= (byte as i64) << (8 * i);
                    }
                    if n > 0 && n < 8 && b[n - 1] & 0x80 != 0 {
                        v -= 1i64 << (8 * n);
                    }
                    self.stack.push(Value::Int(v));
                }
                b'N' => self.stack.push(Value::None),
                0x88 => self.stack.push(Value::Bool(true)),
                0x89 => self.stack.push(Value::Bool(false)),
                b'G' => {
                    let b = self.take(8)?;
                    let v = f64::from_be_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]);
                    self.stack.push(Value::Float(v));
                }
                b'X' => {
                    let n = self.u32()? as usize;
                    let s = self.utf8(n)?;
                    self.stack.push(Value::Str(s));
                }
                0x8c => {
                    let n = self.u8()? as usize;
                    let s = self.utf8(n)?;
                    self.stack.push(Value::Str(s));
                }
                b'B' => {
                    let n = self.u32()? as usize;
                    self.take(n)?;
                    self.stack.push(Value::Bytes);
                }
                b'C' => {
                    let n = self.u8()? as usize;
                    self.take(n)?;
                    self.stack.push(Value::Bytes);
                }
                b'c' => {
                    let module = self.line()?;
                    let name = self.line()?;
                    self.stack.push(Value::Global(module, name));
                }
                0x93 => {
                    let name = self.pop()?;
                    let module = self.pop()?;
                    match (module, name) {
                        (Value::Str(m), Value::Str(n)) => self.stack.push(Value::Global(m, n)),
                        _ => {
                            return Err(format!("STACK_GLOBAL at offset {at} without two strings"));
                        }
                    }
                }
                b'Q' => {
                    let pid = self.pop()?;
                    self.stack.push(persistent_load(pid)?);
                }
                b'R' => {
                    let args = self.pop()?;
                    let callable = self.pop()?;
                    self.stack.push(reduce(callable, args)?);
                }
                b'b' => {
                    // BUILD: state for the object below (e.g. a state dict's `_metadata`): ignored.
                    self.pop()?;
                }
                b's' => {
                    let value = self.pop()?;
                    let key = self.pop()?;
                    match self.top_mut()? {
                        Value::Dict(d) => d.push((key, value)),
                        other => {
                            return Err(format!("SETITEM on {} at offset {at}", other.kind_name()));
                        }
                    }
                }
                b'u' => {
                    let items = self.pop_mark()?;
                    if items.len() % 2 != 0 {
                        return Err(format!("SETITEMS with an odd item count at offset {at}"));
                    }
                    match self.top_mut()? {
                        Value::Dict(d) => {
                            let mut it = items.into_iter();
                            while let (Some(k), Some(v)) = (it.next(), it.next()) {
                                d.push((k, v));
                            }
                        }
                        other => {
                            return Err(format!(
                                "SETITEMS on {} at offset {at}",
                                other.kind_name()
                            ));
                        }
                    }
                }
                b'a' => {
                    let v = self.pop()?;
                    match self.top_mut()? {
                        Value::List(l) => l.push(v),
                        other => {
                            return Err(format!("APPEND on {} at offset {at}", other.kind_name()));
                        }
                    }
                }
                b'e' => {
                    let items = self.pop_mark()?;
                    match self.top_mut()? {
                        Value::List(l) => l.extend(items),
                        other => {
                            return Err(format!("APPENDS on {} at offset {at}", other.kind_name()));
                        }
                    }
                }
                other => {
                    return Err(format!(
                        "unsupported pickle opcode 0x{other:02x} at offset {at} (only the opcodes \
                         torch.save uses for a state dict are understood)"
                    ));
                }
            }
        }
    }
}

fn persistent_load(pid: Value) -> Result<Value, String> {
    let Value::Tuple(items) = pid else {
        return Err(format!("persistent id is {}, expected a tuple", pid.kind_name()));
    };
    match items.as_slice() {
        [
            Value::Str(tag),
            Value::Global(_, class),
            Value::Str(key),
            _location,
            Value::Int(numel),
        ] if tag == "storage" => {
            let dtype = StorageDtype::from_storage_class(class)
                .ok_or_else(|| format!("unsupported storage type {class}"))?;
            Ok(Value::Storage(StorageRef {
                dtype,
                key: key.clone(),
                numel: (*numel).max(0) as usize,
            }))
        }
        _ => Err("persistent id is not ('storage', type, key, location, numel)".into()),
    }
}

fn reduce(callable: Value, args: Value) -> Result<Value, String> {
    let Value::Global(module, name) = &callable else {
        return Err(format!("REDUCE on {}, expected a global", callable.kind_name()));
    };
    let Value::Tuple(args) = args else {
        return Err(format!("REDUCE arguments for {module}.{name} are not a tuple"));
    };
    match (module.as_str(), name.as_str()) {
        ("collections", "OrderedDict") => Ok(Value::Dict(Vec::new())),
        ("torch._utils", "_rebuild_tensor_v2") | ("torch._utils", "_rebuild_tensor") => {
            let (storage, offset, shape, stride) = match args.as_slice() {
                [s, Value::Int(o), shape, stride, ..] => (s, *o, shape, stride),
                _ => return Err("_rebuild_tensor_v2 with unexpected arguments".into()),
            };
            let Value::Storage(storage) = storage else {
                return Err(format!("tensor storage is {}", storage.kind_name()));
            };
            let shape = shape.as_usize_list("tensor size")?;
            let stride = stride.as_usize_list("tensor stride")?;
            if shape.len() != stride.len() {
                return Err("tensor size and stride differ in length".into());
            }
            Ok(Value::Tensor(TensorRef {
                storage: storage.clone(),
                offset: offset.max(0) as usize,
                shape,
                stride,
            }))
        }
        ("torch._utils", "_rebuild_parameter")
        | ("torch._utils", "_rebuild_parameter_with_state") => match args.into_iter().next() {
            Some(t @ Value::Tensor(_)) => Ok(t),
            _ => Err("_rebuild_parameter without a tensor".into()),
        },
        _ => Ok(Value::Object(format!("{module}.{name}"))),
    }
}

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

    #[test]
    fn unknown_opcode_is_an_error_not_a_panic() {
        let err = Unpickler::new(&[0x80, 2, b'~']).run().unwrap_err();
        assert!(err.contains("0x7e"), "{err}");
        let err = Unpickler::new(&[0x80, 2, b'X', 9, 0]).run().unwrap_err();
        assert!(err.contains("ends early"), "{err}");
    }

    #[test]
    fn small_dict_parses() {
        // {'a': 1, 'b': True} as protocol 2: } ( X a K 1 X b \x88 u .
        let mut p = vec![0x80, 2, b'}', b'('];
        p.extend([b'X', 1, 0, 0, 0, b'a', b'K', 1]);
        p.extend([b'X', 1, 0, 0, 0, b'b', 0x88, b'u', b'.']);
        let Value::Dict(d) = Unpickler::new(&p).run().unwrap() else { panic!("not a dict") };
        assert_eq!(d.len(), 2);
        assert!(matches!(d[1].1, Value::Bool(true)));
    }
}
