"""Reference RT-MonoDepth-S forward: reads MODEL_DIR/{encoder,depth}.pth with torch.load and a
normalised NCHW float32 input (.npy), writes the disparities at scales 0..2 as disp_s{s}.npy."""

import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import refnets  # noqa: E402

model_dir, input_path, out_dir = sys.argv[1:4]
torch.set_num_threads(1)
enc = refnets.load(os.path.join(model_dir, "encoder.pth"))
dec = refnets.load(os.path.join(model_dir, "depth.pth"))
x = torch.from_numpy(np.load(input_path))
with torch.no_grad():
    disps = refnets.rt_decoder(dec, refnets.rt_encoder(enc, x))
for s, d in enumerate(disps):
    np.save(os.path.join(out_dir, f"disp_s{s}.npy"), d.numpy().astype(np.float32))
print("ok", [tuple(d.shape) for d in disps])
