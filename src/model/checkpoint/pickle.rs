//! The pickle reader behind [`super::Checkpoint::read_pth`]: a minimal unpickler for the object
//! graph `torch.save` writes for a state dict (protocol 2, plus the few protocol-4 opcodes newer
//! writers use), and the tensor views it yields, materialised from their storages with every
//! shape, stride and offset checked. Anything else is a typed error naming the opcode and its
//! offset, so a foreign or corrupt file never panics.

use super::{StorageDtype, StoredTensor};
use std::collections::HashMap;

/// A tensor view may hold more elements than its storage (stride-0 broadcasting) up to this.
const MAX_BROADCAST_ELEMENTS: usize = 1 << 24;

#[derive(Clone, Debug)]
pub(super) struct StorageRef {
    pub(super) dtype: StorageDtype,
    pub(super) key: String,
    pub(super) numel: usize,
}

#[derive(Clone, Debug)]
pub(super) struct TensorRef {
    pub(super) storage: StorageRef,
    pub(super) offset: usize,
    pub(super) shape: Vec<usize>,
    pub(super) stride: Vec<usize>,
}

impl TensorRef {
    pub(super) fn materialise(&self, bytes: &[u8]) -> Result<StoredTensor, String> {
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
pub(super) enum Value {
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
    pub(super) fn kind_name(&self) -> String {
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

pub(super) struct Unpickler<'a> {
    data: &'a [u8],
    pos: usize,
    stack: Vec<Value>,
    memo: HashMap<u32, Value>,
}

impl<'a> Unpickler<'a> {
    pub(super) fn new(data: &'a [u8]) -> Self {
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

    pub(super) fn run(mut self) -> Result<Value, String> {
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
