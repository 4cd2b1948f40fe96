"""Checks an exported ONNX model and runs it with onnxruntime (CPU).

usage: onnx_run.py MODEL.onnx OUT_DIR INPUT_NAME=INPUT.npy [...]

Runs onnx.checker.check_model (full check, with shape inference) on MODEL.onnx, feeds the
float32 .npy inputs by name, and writes every graph output as OUT_DIR/<output name>.npy, plus
OUT_DIR/graph.json with the opset, the initializer names and the input/output names and dims.
"""

import json
import os
import sys

import numpy as np
import onnx
import onnxruntime as ort

model_path, out_dir = sys.argv[1:3]
feeds = {}
for arg in sys.argv[3:]:
    name, path = arg.split("=", 1)
    feeds[name] = np.load(path).astype(np.float32)

model = onnx.load(model_path)
onnx.checker.check_model(model, full_check=True)


def dims(value_info):
    return [
        d.dim_param if d.HasField("dim_param") else d.dim_value
        for d in value_info.type.tensor_type.shape.dim
    ]


graph = {
    "ir_version": model.ir_version,
    "opset": [(o.domain, o.version) for o in model.opset_import],
    "initializers": [t.name for t in model.graph.initializer],
    "inputs": {v.name: dims(v) for v in model.graph.input},
    "outputs": {v.name: dims(v) for v in model.graph.output},
    "ops": sorted({n.op_type for n in model.graph.node}),
}
with open(os.path.join(out_dir, "graph.json"), "w") as f:
    json.dump(graph, f)

options = ort.SessionOptions()
options.intra_op_num_threads = 1
session = ort.InferenceSession(model_path, options, providers=["CPUExecutionProvider"])
names = [o.name for o in session.get_outputs()]
results = session.run(names, feeds)
for name, value in zip(names, results):
    np.save(os.path.join(out_dir, f"{name}.npy"), np.ascontiguousarray(value, dtype=np.float32))
print("ok", {n: tuple(v.shape) for n, v in zip(names, results)})
