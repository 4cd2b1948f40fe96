//! How adapted weights reach a TensorRT engine: the mapping from the depth network's variables
//! (checkpoint names) to the ONNX initializers that TensorRT's ONNX parser names its weights
//! after. Our exporter names every initializer of a weight after its variable, so the mapping is
//! by name; [`RefitPlan::new`] checks it for every variable (and for every adaptable one in
//! particular) against the exported graph, element counts included, before any engine is built.
//!
//! Initializers that are not network variables (the exporter's own constants, e.g. the input
//! normalisation) never change; the plan keeps their values on the host for the case that
//! TensorRT asks for them again when weights fused with them are refitted.

use super::super::EngineError;
use crate::adapt::AdaptLayers;
use crate::export::proto::{DATA_TYPE_FLOAT, ModelProto};
use crate::model::network::DepthNetwork;
use std::collections::HashMap;

/// One network variable and the ONNX initializer of the same name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RefitWeight {
    /// Checkpoint / VarStore name, which is also the initializer's and TensorRT's weight name.
    pub name: String,
    pub elements: usize,
    /// Whether adaptation with the plan's layers changes it.
    pub adaptable: bool,
}

/// Every weight a refit sets, and the constant initializers it may be asked for.
#[derive(Clone, Debug, Default)]
pub struct RefitPlan {
    /// Network variables (parameters and normalisation statistics), sorted by name.
    pub weights: Vec<RefitWeight>,
    /// Float initializers that are not network variables: name → values.
    pub constants: HashMap<String, Vec<f32>>,
}

impl RefitPlan {
    /// The plan for `network` exported as `model`, adapting `layers`. Fails, naming the variable,
    /// when a variable has no initializer of its name or a different number of elements: TensorRT
    /// could then never receive its adapted values.
    pub fn new(
        network: &DepthNetwork,
        model: &ModelProto,
        layers: AdaptLayers,
    ) -> Result<Self, EngineError> {
        let initializers: HashMap<&str, _> =
            model.graph.initializers.iter().map(|t| (t.name.as_str(), t)).collect();
        let mut variables: Vec<(String, tch::Tensor)> =
            network.var_store().variables().into_iter().collect();
        variables.sort_by(|a, b| a.0.cmp(&b.0));
        let mut weights = Vec::with_capacity(variables.len());
        for (name, var) in &variables {
            let elements = var.numel();
            let Some(init) = initializers.get(name.as_str()) else {
                return Err(EngineError::TensorRt(format!(
                    "refit: variable `{name}` has no ONNX initializer of that name, so adapted \
                     values could never reach a TensorRT engine"
                )));
            };
            let init_elements: i64 = init.dims.iter().product();
            if init.data_type != DATA_TYPE_FLOAT || init_elements as usize != elements {
                return Err(EngineError::TensorRt(format!(
                    "refit: variable `{name}` holds {elements} floats, its ONNX initializer \
                     {init_elements} values of ONNX type {}",
                    init.data_type
                )));
            }
            let adaptable = var.requires_grad() && layers.adapts(name, var.dim());
            weights.push(RefitWeight { name: name.clone(), elements, adaptable });
        }
        let names: std::collections::HashSet<&str> =
            variables.iter().map(|(n, _)| n.as_str()).collect();
        let constants = model
            .graph
            .initializers
            .iter()
            .filter(|t| t.data_type == DATA_TYPE_FLOAT && !names.contains(t.name.as_str()))
            .map(|t| {
                let values = t
                    .raw_data
                    .chunks_exact(4)
                    .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                    .collect();
                (t.name.clone(), values)
            })
            .collect();
        Ok(Self { weights, constants })
    }

    /// Names of the weights adaptation changes.
    pub fn adaptable(&self) -> impl Iterator<Item = &str> {
        self.weights.iter().filter(|w| w.adaptable).map(|w| w.name.as_str())
    }
}
