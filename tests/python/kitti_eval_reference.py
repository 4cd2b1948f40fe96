"""Independent evaluation of an RT-MonoDepth-S checkpoint on kitti_tiny under the Monodepth2
protocol: PIL LANCZOS resize to the network size, functional forward (refnets.py), disparity ->
depth with min 0.1 / max 100, bilinear resize to the ground-truth size, Garg crop, GT valid in
(1e-3, 80), per-frame median scaling, clamp to [1e-3, 80], the seven metrics averaged over
frames. Usage: kitti_eval_reference.py KITTI_TINY_DIR MODEL_DIR [WIDTH HEIGHT]; prints JSON."""

import glob
import json
import os
import sys

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import refnets  # noqa: E402

root, model_dir = sys.argv[1], sys.argv[2]
width, height = (int(sys.argv[3]), int(sys.argv[4])) if len(sys.argv) > 4 else (640, 192)
MIN_DEPTH, MAX_DEPTH = 1e-3, 80.0
drive = os.path.join(root, "2011_09_26", "2011_09_26_drive_0023_sync")
images = sorted(glob.glob(os.path.join(drive, "image_02", "data", "*.png")))
enc = refnets.load(os.path.join(model_dir, "encoder.pth"))
dec = refnets.load(os.path.join(model_dir, "depth.pth"))
torch.set_num_threads(1)

per_frame = []
for i, path in enumerate(images):
    stem = os.path.splitext(os.path.basename(path))[0]
    gt = np.load(os.path.join(drive, "proj_depth", "velodyne", "image_02", stem + ".npz"))["velodyne_depth"]
    gt = gt.astype(np.float32)
    gh, gw = gt.shape
    img = Image.open(path).convert("RGB").resize((width, height), Image.LANCZOS)
    x = torch.from_numpy(np.asarray(img, dtype=np.float32) / 255.0).permute(2, 0, 1)[None]
    x = (x - 0.45) / 0.225
    with torch.no_grad():
        disp = refnets.rt_decoder(dec, refnets.rt_encoder(enc, x))[0]
    min_disp, max_disp = 1 / 100.0, 1 / 0.1
    scaled = min_disp + (max_disp - min_disp) * disp
    scaled = F.interpolate(scaled, size=(gh, gw), mode="bilinear", align_corners=False)[0, 0].numpy()
    pred = 1.0 / scaled
    mask = (gt > MIN_DEPTH) & (gt < MAX_DEPTH)
    crop = np.array([0.40810811 * gh, 0.99189189 * gh, 0.03594771 * gw, 0.96405229 * gw]).astype(np.int32)
    crop_mask = np.zeros(mask.shape, dtype=bool)
    crop_mask[crop[0]:crop[1], crop[2]:crop[3]] = True
    mask &= crop_mask
    p, g = pred[mask].astype(np.float64), gt[mask].astype(np.float64)
    p *= np.median(g) / np.median(p)
    p = np.clip(p, MIN_DEPTH, MAX_DEPTH)
    thresh = np.maximum(g / p, p / g)
    m = {
        "frame": i,
        "abs_rel": float(np.mean(np.abs(g - p) / g)),
        "sq_rel": float(np.mean((g - p) ** 2 / g)),
        "rmse": float(np.sqrt(np.mean((g - p) ** 2))),
        "rmse_log": float(np.sqrt(np.mean((np.log(g) - np.log(p)) ** 2))),
        "a1": float(np.mean(thresh < 1.25)),
        "a2": float(np.mean(thresh < 1.25 ** 2)),
        "a3": float(np.mean(thresh < 1.25 ** 3)),
    }
    per_frame.append(m)

keys = ["abs_rel", "sq_rel", "rmse", "rmse_log", "a1", "a2", "a3"]
result = {"frames": len(per_frame)}
result.update({k: float(np.mean([m[k] for m in per_frame])) for k in keys})
result["per_frame"] = per_frame
print(json.dumps(result))
