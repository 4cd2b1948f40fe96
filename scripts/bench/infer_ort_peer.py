"""onnxruntime peer for `livedepth bench infer`: runs the ONNX graph that `livedepth export`
wrote from the same weights (RGB in [0, 1] in, normalisation inside the graph) with
onnxruntime's CPU execution provider, all graph optimisations on and the same thread count,
timed as the engine is (warm-up, then per-iteration wall time).

Usage: infer_ort_peer.py --onnx FILE --input RAW.npy --iters N --warmup W --threads T
                         --out-disp OUT.npy
Prints one JSON object: median/mean/min ms of the full forward, and onnxruntime's version."""

import argparse
import json
import time

import numpy as np
import onnxruntime as ort


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--onnx", required=True)
    p.add_argument("--input", required=True)
    p.add_argument("--iters", type=int, required=True)
    p.add_argument("--warmup", type=int, required=True)
    p.add_argument("--threads", type=int, required=True)
    p.add_argument("--out-disp", required=True)
    a = p.parse_args()
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.intra_op_num_threads = a.threads
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(a.onnx, options, providers=["CPUExecutionProvider"])
    x = np.load(a.input).astype(np.float32)
    feed = {session.get_inputs()[0].name: x}
    for _ in range(a.warmup):
        session.run(["disp_0"], feed)
    times = []
    for _ in range(a.iters):
        start = time.perf_counter()
        session.run(["disp_0"], feed)
        times.append((time.perf_counter() - start) * 1000.0)
    disp = session.run(["disp_0"], feed)[0]
    np.save(a.out_disp, disp.astype(np.float32))
    times = np.array(times)
    print(json.dumps({
        "total": {"median_ms": float(np.median(times)), "mean_ms": float(times.mean()),
                  "min_ms": float(times.min())},
        "onnxruntime": ort.__version__,
    }))


if __name__ == "__main__":
    main()
