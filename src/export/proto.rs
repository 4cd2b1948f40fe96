//! A minimal protobuf wire-format writer and the subset of `onnx.proto` the exporter emits.
//!
//! Wire format (protobuf encoding spec): every field is a key `(field_number << 3) | wire_type`
//! written as a base-128 varint, followed by its payload: a varint (wire type 0: `int64`,
//! `int32`, enums), four little-endian bytes (wire type 5: `float`) or a varint length and
//! that many bytes (wire type 2: `string`, `bytes`, embedded messages). Negative `int64` and
//! `int32` values are written as their 64-bit two's complement (ten bytes). `onnx.proto` is
//! `proto2`, so repeated scalars are written unpacked, one key per element, which every
//! parser accepts.
//!
//! Field numbers are those of the ONNX specification's `onnx/onnx.proto` (IR version 8); each
//! message type below names the spec message and fields it encodes.

/// Wire type 0: varint.
const VARINT: u32 = 0;
/// Wire type 2: length-delimited.
const LEN: u32 = 2;
/// Wire type 5: 32-bit little-endian.
const I32: u32 = 5;

/// An encoded protobuf message under construction.
#[derive(Clone, Debug, Default)]
pub struct Writer {
    buf: Vec<u8>,
}

/// Appends `value` as a base-128 varint (seven bits a byte, low bits first, high bit set on
/// every byte but the last).
pub fn put_varint(buf: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        buf.push((value as u8 & 0x7f) | 0x80);
        value >>= 7;
    }
    buf.push(value as u8);
}

impl Writer {
    pub fn new() -> Self {
        Self::default()
    }

    fn key(&mut self, field: u32, wire_type: u32) {
        put_varint(&mut self.buf, u64::from(field << 3 | wire_type));
    }

    /// An `int64` / `int32` / enum field (negative values as 64-bit two's complement).
    pub fn int64(&mut self, field: u32, value: i64) {
        self.key(field, VARINT);
        put_varint(&mut self.buf, value as u64);
    }

    /// A `float` field.
    pub fn float(&mut self, field: u32, value: f32) {
        self.key(field, I32);
        self.buf.extend_from_slice(&value.to_le_bytes());
    }

    /// A `bytes` field.
    pub fn bytes(&mut self, field: u32, value: &[u8]) {
        self.key(field, LEN);
        put_varint(&mut self.buf, value.len() as u64);
        self.buf.extend_from_slice(value);
    }

    /// A `string` field (UTF-8).
    pub fn string(&mut self, field: u32, value: &str) {
        self.bytes(field, value.as_bytes());
    }

    /// An embedded message field.
    pub fn message(&mut self, field: u32, value: &Writer) {
        self.bytes(field, &value.buf);
    }

    /// The encoded bytes.
    pub fn into_bytes(self) -> Vec<u8> {
        self.buf
    }
}

/// `TensorProto.DataType.FLOAT`.
pub const DATA_TYPE_FLOAT: i32 = 1;
/// `TensorProto.DataType.INT64`.
pub const DATA_TYPE_INT64: i32 = 7;

/// `TensorProto` with its values in `raw_data` (little-endian, row-major).
#[derive(Clone, Debug, PartialEq)]
pub struct TensorProto {
    /// `name = 8`.
    pub name: String,
    /// `dims = 1` (repeated int64).
    pub dims: Vec<i64>,
    /// `data_type = 2` (a `TensorProto.DataType`).
    pub data_type: i32,
    /// `raw_data = 9`.
    pub raw_data: Vec<u8>,
}

impl TensorProto {
    /// A FLOAT tensor.
    pub fn float(name: &str, dims: &[i64], values: &[f32]) -> Self {
        let raw_data = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        Self { name: name.to_owned(), dims: dims.to_vec(), data_type: DATA_TYPE_FLOAT, raw_data }
    }

    /// An INT64 tensor.
    pub fn int64(name: &str, dims: &[i64], values: &[i64]) -> Self {
        let raw_data = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        Self { name: name.to_owned(), dims: dims.to_vec(), data_type: DATA_TYPE_INT64, raw_data }
    }

    pub fn encode(&self) -> Writer {
        let mut w = Writer::new();
        for &d in &self.dims {
            w.int64(1, d);
        }
        w.int64(2, i64::from(self.data_type));
        w.string(8, &self.name);
        w.bytes(9, &self.raw_data);
        w
    }
}

/// The value of an `AttributeProto`, with its `AttributeProto.AttributeType`.
#[derive(Clone, Debug, PartialEq)]
pub enum AttributeValue {
    /// `f = 2`, type FLOAT = 1.
    Float(f32),
    /// `i = 3`, type INT = 2.
    Int(i64),
    /// `s = 4`, type STRING = 3.
    String(String),
    /// `t = 5`, type TENSOR = 4.
    Tensor(TensorProto),
    /// `floats = 7`, type FLOATS = 6.
    Floats(Vec<f32>),
    /// `ints = 8`, type INTS = 7.
    Ints(Vec<i64>),
}

/// `AttributeProto`: `name = 1`, `type = 20` and one value field.
#[derive(Clone, Debug, PartialEq)]
pub struct AttributeProto {
    pub name: String,
    pub value: AttributeValue,
}

impl AttributeProto {
    pub fn new(name: &str, value: AttributeValue) -> Self {
        Self { name: name.to_owned(), value }
    }

    pub fn encode(&self) -> Writer {
        let mut w = Writer::new();
        w.string(1, &self.name);
        let attribute_type = match &self.value {
            AttributeValue::Float(v) => {
                w.float(2, *v);
                1
            }
            AttributeValue::Int(v) => {
                w.int64(3, *v);
                2
            }
            AttributeValue::String(v) => {
                w.string(4, v);
                3
            }
            AttributeValue::Tensor(t) => {
                w.message(5, &t.encode());
                4
            }
            AttributeValue::Floats(vs) => {
                for &v in vs {
                    w.float(7, v);
                }
                6
            }
            AttributeValue::Ints(vs) => {
                for &v in vs {
                    w.int64(8, v);
                }
                7
            }
        };
        w.int64(20, attribute_type);
        w
    }
}

/// `NodeProto`: `input = 1`, `output = 2`, `name = 3`, `op_type = 4`, `attribute = 5` (default
/// `ai.onnx` domain).
#[derive(Clone, Debug, PartialEq)]
pub struct NodeProto {
    pub name: String,
    pub op_type: String,
    pub inputs: Vec<String>,
    pub outputs: Vec<String>,
    pub attributes: Vec<AttributeProto>,
}

impl NodeProto {
    pub fn encode(&self) -> Writer {
        let mut w = Writer::new();
        for input in &self.inputs {
            w.string(1, input);
        }
        for output in &self.outputs {
            w.string(2, output);
        }
        w.string(3, &self.name);
        w.string(4, &self.op_type);
        for a in &self.attributes {
            w.message(5, &a.encode());
        }
        w
    }
}

/// One dimension of a `TensorShapeProto.Dimension`: `dim_value = 1` or `dim_param = 2`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Dim {
    Value(i64),
    Param(String),
}

/// `ValueInfoProto` (`name = 1`, `type = 2`) of a tensor: `TypeProto.tensor_type = 1` holding
/// `TypeProto.Tensor` (`elem_type = 1`, `shape = 2`), whose `TensorShapeProto` repeats
/// `dim = 1`.
#[derive(Clone, Debug, PartialEq)]
pub struct ValueInfoProto {
    pub name: String,
    pub elem_type: i32,
    pub shape: Vec<Dim>,
}

impl ValueInfoProto {
    pub fn encode(&self) -> Writer {
        let mut shape = Writer::new();
        for d in &self.shape {
            let mut dim = Writer::new();
            match d {
                Dim::Value(v) => dim.int64(1, *v),
                Dim::Param(p) => dim.string(2, p),
            }
            shape.message(1, &dim);
        }
        let mut tensor = Writer::new();
        tensor.int64(1, i64::from(self.elem_type));
        tensor.message(2, &shape);
        let mut type_proto = Writer::new();
        type_proto.message(1, &tensor);
        let mut w = Writer::new();
        w.string(1, &self.name);
        w.message(2, &type_proto);
        w
    }
}

/// `GraphProto`: `node = 1`, `name = 2`, `initializer = 5`, `input = 11`, `output = 12`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct GraphProto {
    pub name: String,
    pub nodes: Vec<NodeProto>,
    pub initializers: Vec<TensorProto>,
    pub inputs: Vec<ValueInfoProto>,
    pub outputs: Vec<ValueInfoProto>,
}

impl GraphProto {
    pub fn encode(&self) -> Writer {
        let mut w = Writer::new();
        for n in &self.nodes {
            w.message(1, &n.encode());
        }
        w.string(2, &self.name);
        for t in &self.initializers {
            w.message(5, &t.encode());
        }
        for v in &self.inputs {
            w.message(11, &v.encode());
        }
        for v in &self.outputs {
            w.message(12, &v.encode());
        }
        w
    }
}

/// ONNX IR version 8 (`Version.IR_VERSION_2021_7_30`), the one opset 17 ships with.
pub const IR_VERSION: i64 = 8;
/// The default-domain (`ai.onnx`) operator set the graphs use.
pub const OPSET_VERSION: i64 = 17;

/// `ModelProto`: `ir_version = 1`, `producer_name = 2`, `producer_version = 3`, `graph = 7`,
/// `opset_import = 8` (one `OperatorSetIdProto`: `domain = 1` empty for `ai.onnx`,
/// `version = 2`), `metadata_props = 14` (`StringStringEntryProto`: `key = 1`, `value = 2`).
#[derive(Clone, Debug, PartialEq)]
pub struct ModelProto {
    pub producer_name: String,
    pub producer_version: String,
    pub graph: GraphProto,
    pub metadata: Vec<(String, String)>,
}

impl ModelProto {
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::new();
        w.int64(1, IR_VERSION);
        w.string(2, &self.producer_name);
        w.string(3, &self.producer_version);
        w.message(7, &self.graph.encode());
        let mut opset = Writer::new();
        opset.string(1, "");
        opset.int64(2, OPSET_VERSION);
        w.message(8, &opset);
        for (key, value) in &self.metadata {
            let mut entry = Writer::new();
            entry.string(1, key);
            entry.string(2, value);
            w.message(14, &entry);
        }
        w.into_bytes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn varint(v: u64) -> Vec<u8> {
        let mut b = Vec::new();
        put_varint(&mut b, v);
        b
    }

    #[test]
    fn varints_follow_the_protobuf_encoding() {
        assert_eq!(varint(0), [0x00]);
        assert_eq!(varint(1), [0x01]);
        assert_eq!(varint(127), [0x7f]);
        // The protobuf documentation's example: 150 = 0x96 0x01.
        assert_eq!(varint(150), [0x96, 0x01]);
        assert_eq!(varint(300), [0xac, 0x02]);
        assert_eq!(varint(u64::MAX), [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01]);
    }

    #[test]
    fn fields_carry_their_key_and_wire_type() {
        // Field 1 = 150 (the documentation's `08 96 01`).
        let mut w = Writer::new();
        w.int64(1, 150);
        assert_eq!(w.into_bytes(), [0x08, 0x96, 0x01]);
        // Field 2 = "testing" (`12 07 74 65 73 74 69 6e 67`).
        let mut w = Writer::new();
        w.string(2, "testing");
        assert_eq!(w.into_bytes(), b"\x12\x07testing");
        // -1 as int64: ten bytes of two's complement.
        let mut w = Writer::new();
        w.int64(3, -1);
        assert_eq!(
            w.into_bytes(),
            [0x18, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01]
        );
        // Float 1.0 in field 2: key 0x15 then 00 00 80 3f.
        let mut w = Writer::new();
        w.float(2, 1.0);
        assert_eq!(w.into_bytes(), [0x15, 0x00, 0x00, 0x80, 0x3f]);
        // Field numbers above 15 need a two-byte key: `type = 20` is 0xa0 0x01.
        let mut w = Writer::new();
        w.int64(20, 7);
        assert_eq!(w.into_bytes(), [0xa0, 0x01, 0x07]);
    }

    #[test]
    fn an_ints_attribute_is_encoded_unpacked_with_its_type() {
        let a = AttributeProto::new("axes", AttributeValue::Ints(vec![2, 3]));
        let expected = [
            0x0a, 0x04, b'a', b'x', b'e', b's', // name = 1
            0x40, 0x02, 0x40, 0x03, // ints = 8, one key per element
            0xa0, 0x01, 0x07, // type = 20: INTS
        ];
        assert_eq!(a.encode().into_bytes(), expected);
    }

    #[test]
    fn a_tensor_holds_dims_type_name_and_little_endian_raw_data() {
        let t = TensorProto::int64("k", &[2], &[1, -2]);
        let mut expected = vec![0x08, 0x02, 0x10, 0x07, 0x42, 0x01, b'k', 0x4a, 0x10];
        expected.extend_from_slice(&1i64.to_le_bytes());
        expected.extend_from_slice(&(-2i64).to_le_bytes());
        assert_eq!(t.encode().into_bytes(), expected);
    }

    #[test]
    fn a_symbolic_value_info_nests_type_tensor_and_shape() {
        let v = ValueInfoProto {
            name: "x".into(),
            elem_type: DATA_TYPE_FLOAT,
            shape: vec![Dim::Param("b".into()), Dim::Value(3)],
        };
        let expected = [
            0x0a, 0x01, b'x', // name
            0x12, 0x0f, // type: TypeProto
            0x0a, 0x0d, // tensor_type: TypeProto.Tensor
            0x08, 0x01, // elem_type FLOAT
            0x12, 0x09, // shape: TensorShapeProto
            0x0a, 0x03, 0x12, 0x01, b'b', // dim { dim_param: "b" }
            0x0a, 0x02, 0x08, 0x03, // dim { dim_value: 3 }
        ];
        assert_eq!(v.encode().into_bytes(), expected);
    }
}
