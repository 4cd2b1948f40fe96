#!/usr/bin/env python3
"""PyTorch peer of livedepth's self-supervised loss, for `livedepth bench loss`.

The Monodepth2 loss composed of plain PyTorch ops with autograd on the CPU (written for this
project from the formulation in the README (Loss probe)): depth from sigmoid disparity, warping with
grid_sample (align_corners=True, border padding), 3x3 SSIM with reflection padding + L1, the
per-pixel minimum over identity (+ tie-break noise) and warped errors, edge-aware smoothness.
Reads a probe input npz (the format of `livedepth loss --inputs`), times forward + backward and
prints one JSON line: {"loss", "median_ms", "threads", "torch"}.
"""
import argparse
import json
import time

import numpy as np
import torch
import torch.nn.functional as F


def ssim_dissimilarity(x, y):
    c1, c2 = 0.01 ** 2, 0.03 ** 2

    def pool(t):
        return F.avg_pool2d(F.pad(t, (1, 1, 1, 1), mode="reflect"), 3, 1)

    mu_x, mu_y = pool(x), pool(y)
    sigma_x = pool(x * x) - mu_x * mu_x
    sigma_y = pool(y * y) - mu_y * mu_y
    sigma_xy = pool(x * y) - mu_x * mu_y
    n = (2 * mu_x * mu_y + c1) * (2 * sigma_xy + c2)
    d = (mu_x * mu_x + mu_y * mu_y + c1) * (sigma_x + sigma_y + c2)
    return torch.clamp((1 - n / d) / 2, 0, 1)


def photometric(target, image, ssim_weight):
    return (ssim_weight * ssim_dissimilarity(image, target).mean(1, keepdim=True)
            + (1 - ssim_weight) * (target - image).abs().mean(1, keepdim=True))


def rotation(w):
    theta2 = (w * w).sum()
    theta = theta2.sqrt()
    a = torch.sin(theta) / theta
    b = (1 - torch.cos(theta)) / theta2
    zero = torch.zeros((), dtype=w.dtype)
    k = torch.stack([zero, -w[2], w[1], w[2], zero, -w[0], -w[1], w[0], zero]).view(3, 3)
    return torch.eye(3, dtype=w.dtype) + a * k + b * (k @ k)


def loss_fn(inp, disps, axis_angle, translation, intrinsics):
    target, sources, pyramid = inp["target"], inp["sources"], inp["pyramid"]
    _, _, h, w = target.shape
    n = sources.shape[0]
    fx, fy, cx, cy = intrinsics[0], intrinsics[1], intrinsics[2], intrinsics[3]
    ys, xs = torch.meshgrid(torch.arange(h, dtype=torch.float32), torch.arange(w, dtype=torch.float32), indexing="ij")
    ray = torch.stack([(xs.reshape(-1) - cx) / fx, (ys.reshape(-1) - cy) / fy, torch.ones(h * w)])
    transforms = []
    for i in range(n):
        r = rotation(axis_angle[i])
        t = translation[i].view(3, 1)
        if inp["invert"][i]:
            r = r.t()
            t = -(r @ t)
        transforms.append((r, t))
    ssim_w = inp["ssim_weight"]
    identity = [photometric(target, sources[i:i + 1], ssim_w) + inp["noise"][i:i + 1].unsqueeze(1) for i in range(n)]
    min_disp, max_disp = 1.0 / inp["max_depth"], 1.0 / inp["min_depth"]
    total = 0
    for s, disp in enumerate(disps):
        up = disp if s == 0 else F.interpolate(disp, [h, w], mode="bilinear", align_corners=False)
        depth = 1.0 / (min_disp + (max_disp - min_disp) * up)
        candidates = list(identity) if inp["automask"] else []
        for i in range(n):
            r, t = transforms[i]
            q = r @ (ray * depth.view(1, -1)) + t
            z = q[2] + 1e-7
            u = (fx * q[0] + cx * q[2]) / z
            v = (fy * q[1] + cy * q[2]) / z
            grid = torch.stack([(u / (w - 1) - 0.5) * 2, (v / (h - 1) - 0.5) * 2], -1).view(1, h, w, 2)
            warped = F.grid_sample(sources[i:i + 1], grid, mode="bilinear", padding_mode="border", align_corners=True)
            candidates.append(photometric(target, warped, ssim_w))
        mins, _ = torch.min(torch.cat(candidates, 1), 1)
        norm = disp / (disp.mean() + 1e-7)
        img = pyramid[s]
        gx = (norm[:, :, :, :-1] - norm[:, :, :, 1:]).abs()
        gy = (norm[:, :, :-1, :] - norm[:, :, 1:, :]).abs()
        ix = (img[:, :, :, :-1] - img[:, :, :, 1:]).abs().mean(1, keepdim=True)
        iy = (img[:, :, :-1, :] - img[:, :, 1:, :]).abs().mean(1, keepdim=True)
        smooth = (gx * torch.exp(-ix)).mean() + (gy * torch.exp(-iy)).mean()
        total = total + mins.mean() + inp["smoothness_weight"] / 2 ** s * smooth
    return total / len(disps)


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--inputs", required=True)
    parser.add_argument("--iters", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    z = np.load(args.inputs)
    target = torch.from_numpy(z["target"].astype(np.float32))[None]
    n_scales = sum(1 for k in z.files if k.startswith("disp_"))
    pyramid = [target] + [torch.from_numpy(z[f"target_{s}"].astype(np.float32))[None] for s in range(1, n_scales)]
    n = z["sources"].shape[0]
    h, w = target.shape[2:]
    inp = {
        "target": target,
        "sources": torch.from_numpy(z["sources"].astype(np.float32)),
        "pyramid": pyramid,
        "invert": [bool(v) for v in z["invert"]] if "invert" in z.files else [False] * n,
        "noise": torch.from_numpy(z["tie_break_noise"].astype(np.float32)) if "tie_break_noise" in z.files
        else torch.randn(n, h, w) * float(z["tie_break_std"]) if "tie_break_std" in z.files else torch.randn(n, h, w) * 1e-5,
        "min_depth": float(np.float32(z["min_depth"])) if "min_depth" in z.files else float(np.float32(0.1)),
        "max_depth": float(np.float32(z["max_depth"])) if "max_depth" in z.files else 100.0,
        "ssim_weight": float(np.float32(z["ssim_weight"])) if "ssim_weight" in z.files else float(np.float32(0.85)),
        "smoothness_weight": float(np.float32(z["smoothness_weight"])) if "smoothness_weight" in z.files
        else float(np.float32(1e-3)),
        "automask": bool(z["automask"]) if "automask" in z.files else True,
    }
    k = z["K"].astype(np.float32)
    k = k if k.shape == (4,) else np.array([k[0, 0], k[1, 1], k[0, 2], k[1, 2]], dtype=np.float32)

    def step():
        disps = [torch.from_numpy(z[f"disp_{s}"].astype(np.float32))[None, None].requires_grad_() for s in range(n_scales)]
        axis = torch.from_numpy(z["axis_angle"].astype(np.float32)).requires_grad_()
        trans = torch.from_numpy(z["translation"].astype(np.float32)).requires_grad_()
        intr = torch.from_numpy(k).requires_grad_()
        total = loss_fn(inp, disps, axis, trans, intr)
        total.backward()
        return total.item()

    for _ in range(args.warmup):
        loss = step()
    times = []
    for _ in range(args.iters):
        start = time.perf_counter()
        loss = step()
        times.append((time.perf_counter() - start) * 1e3)
    times.sort()
    print(json.dumps({"loss": loss, "median_ms": times[len(times) // 2], "threads": torch.get_num_threads(),
                      "torch": torch.__version__}))


if __name__ == "__main__":
    main()
