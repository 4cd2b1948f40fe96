//! A small ONNX graph builder: weights as initializers under the names the caller gives them,
//! constants as `Constant` nodes, operator nodes with fresh value names, and typed graph inputs
//! and outputs. Nodes are appended in the order they are built, which is a topological order
//! as long as every input was produced before (the emitter walks the network forward).

use super::proto::{
    AttributeProto, AttributeValue, DATA_TYPE_FLOAT, Dim, GraphProto, ModelProto, NodeProto,
    TensorProto, ValueInfoProto,
};

/// An attribute of a node.
pub fn attr_int(name: &str, value: i64) -> AttributeProto {
    AttributeProto::new(name, AttributeValue::Int(value))
}

/// An INTS attribute.
pub fn attr_ints(name: &str, values: &[i64]) -> AttributeProto {
    AttributeProto::new(name, AttributeValue::Ints(values.to_vec()))
}

/// A FLOAT attribute.
pub fn attr_float(name: &str, value: f32) -> AttributeProto {
    AttributeProto::new(name, AttributeValue::Float(value))
}

/// A STRING attribute.
pub fn attr_string(name: &str, value: &str) -> AttributeProto {
    AttributeProto::new(name, AttributeValue::String(value.to_owned()))
}

/// A graph under construction.
#[derive(Debug, Default)]
pub struct GraphBuilder {
    graph: GraphProto,
    /// Per op type, how many nodes of it exist (node and value names are `<op>_<n>`).
    counters: std::collections::HashMap<String, usize>,
}

impl GraphBuilder {
    /// An empty graph called `name`.
    pub fn new(name: &str) -> Self {
        Self {
            graph: GraphProto { name: name.to_owned(), ..Default::default() },
            ..Default::default()
        }
    }

    /// Declares a float graph input of `shape`; returns its name.
    pub fn input(&mut self, name: &str, shape: Vec<Dim>) -> String {
        self.graph.inputs.push(ValueInfoProto {
            name: name.to_owned(),
            elem_type: DATA_TYPE_FLOAT,
            shape,
        });
        name.to_owned()
    }

    /// Declares the float value `name` (already produced by a node) a graph output of `shape`.
    pub fn output(&mut self, name: &str, shape: Vec<Dim>) {
        self.graph.outputs.push(ValueInfoProto {
            name: name.to_owned(),
            elem_type: DATA_TYPE_FLOAT,
            shape,
        });
    }

    /// Adds a float initializer (a weight) named `name`; returns the name.
    pub fn initializer(&mut self, name: &str, dims: &[i64], values: &[f32]) -> String {
        self.graph.initializers.push(TensorProto::float(name, dims, values));
        name.to_owned()
    }

    /// Whether an initializer called `name` exists.
    pub fn has_initializer(&self, name: &str) -> bool {
        self.graph.initializers.iter().any(|t| t.name == name)
    }

    /// A float constant (a `Constant` node); returns its value name.
    pub fn constant_f32(&mut self, dims: &[i64], values: &[f32]) -> String {
        self.constant(|name| TensorProto::float(name, dims, values))
    }

    /// An int64 constant (a `Constant` node); returns its value name.
    pub fn constant_i64(&mut self, dims: &[i64], values: &[i64]) -> String {
        self.constant(|name| TensorProto::int64(name, dims, values))
    }

    fn constant(&mut self, tensor: impl FnOnce(&str) -> TensorProto) -> String {
        let name = self.fresh("Constant");
        let value = AttributeProto::new("value", AttributeValue::Tensor(tensor(&name)));
        self.push("Constant", name.clone(), &[], vec![value], vec![name.clone()]);
        name
    }

    /// A node of `op_type` with one output under a fresh name; returns that name.
    pub fn node(
        &mut self,
        op_type: &str,
        inputs: &[&str],
        attributes: Vec<AttributeProto>,
    ) -> String {
        let name = self.fresh(op_type);
        self.push(op_type, name.clone(), inputs, attributes, vec![name.clone()]);
        name
    }

    /// A node of `op_type` writing the values named `outputs` (e.g. graph outputs).
    pub fn node_to(
        &mut self,
        op_type: &str,
        inputs: &[&str],
        attributes: Vec<AttributeProto>,
        outputs: &[&str],
    ) {
        let name = self.fresh(op_type);
        let outputs = outputs.iter().map(|&o| o.to_owned()).collect();
        self.push(op_type, name, inputs, attributes, outputs);
    }

    fn fresh(&mut self, op_type: &str) -> String {
        let n = self.counters.entry(op_type.to_owned()).or_default();
        *n += 1;
        format!("{op_type}_{n}")
    }

    fn push(
        &mut self,
        op_type: &str,
        name: String,
        inputs: &[&str],
        attributes: Vec<AttributeProto>,
        outputs: Vec<String>,
    ) {
        self.graph.nodes.push(NodeProto {
            name,
            op_type: op_type.to_owned(),
            inputs: inputs.iter().map(|&i| i.to_owned()).collect(),
            outputs,
            attributes,
        });
    }

    /// Number of nodes so far (constants included).
    pub fn node_count(&self) -> usize {
        self.graph.nodes.len()
    }

    /// Number of initializers so far.
    pub fn initializer_count(&self) -> usize {
        self.graph.initializers.len()
    }

    /// The finished model (opset 17, IR version 8) with `metadata` key/value pairs.
    pub fn into_model(self, metadata: Vec<(String, String)>) -> ModelProto {
        ModelProto {
            producer_name: "livedepth".to_owned(),
            producer_version: env!("CARGO_PKG_VERSION").to_owned(),
            graph: self.graph,
            metadata,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nodes_get_unique_names_and_keep_build_order() {
        let mut g = GraphBuilder::new("g");
        let x = g.input("x", vec![Dim::Value(1)]);
        let c = g.constant_f32(&[1], &[2.0]);
        let y = g.node("Mul", &[&x, &c], vec![]);
        let z = g.node("Mul", &[&y, &c], vec![]);
        g.node_to("Relu", &[&z], vec![], &["out"]);
        g.output("out", vec![Dim::Value(1)]);
        assert_eq!((c.as_str(), y.as_str(), z.as_str()), ("Constant_1", "Mul_1", "Mul_2"));
        assert_eq!(g.node_count(), 4);
        let model = g.into_model(vec![]);
        let ops: Vec<&str> = model.graph.nodes.iter().map(|n| n.op_type.as_str()).collect();
        assert_eq!(ops, ["Constant", "Mul", "Mul", "Relu"]);
        assert_eq!(model.graph.nodes[3].outputs, ["out"]);
    }
}
