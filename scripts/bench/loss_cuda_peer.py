# The PyTorch baseline of `livedepth bench loss --device cuda`: the same self-supervised loss as
# kernels/loss.cu, composed from PyTorch ops and differentiated by autograd, timed on the same GPU.
# Usage: python loss_cuda_peer.py WIDTH HEIGHT SOURCES SCALES ITERATIONS WARMUP [check OUT.npz]
# Prints one JSON line: {"ms": mean milliseconds of forward + backward, "total": loss value}.
# With `check OUT.npz` it runs once on the CPU in float64 and saves inputs, loss and gradients,
# so that a test can verify this baseline computes the same loss as our kernels' CPU twin.
import json
import sys

import torch
import torch.nn.functional as F

C1, C2 = 0.01**2, 0.03**2


def ssim_loss(x, y):
    x = F.pad(x, (1, 1, 1, 1), mode="reflect")
    y = F.pad(y, (1, 1, 1, 1), mode="reflect")
    mx, my = F.avg_pool2d(x, 3, 1), F.avg_pool2d(y, 3, 1)
    vx = F.avg_pool2d(x * x, 3, 1) - mx * mx
    vy = F.avg_pool2d(y * y, 3, 1) - my * my
    cxy = F.avg_pool2d(x * y, 3, 1) - mx * my
    n = (2 * mx * my + C1) * (2 * cxy + C2)
    d = (mx * mx + my * my + C1) * (vx + vy + C2)
    return torch.clamp((1 - n / d) / 2, 0, 1)


def photometric(pred, target, alpha=0.85):
    return alpha * ssim_loss(pred, target).mean(1, True) + (1 - alpha) * (pred - target).abs().mean(1, True)


def rotation(w):
    t2 = (w * w).sum()
    th = torch.sqrt(t2)
    a = torch.sin(th) / th
    b = 2 * (torch.sin(th / 2) / th) ** 2
    k = torch.stack([
        torch.stack([0 * w[0], -w[2], w[1]]),
        torch.stack([w[2], 0 * w[0], -w[0]]),
        torch.stack([-w[1], w[0], 0 * w[0]]),
    ])
    return torch.eye(3, device=w.device) + a * k + b * (k @ k)


def transform(pose, invert):
    r, t = rotation(pose[:3]), pose[3:]
    if invert:
        r = r.t()
        t = -(r @ t)
    return r, t


def smoothness(disp, img):
    nd = disp / (disp.mean() + 1e-7)
    gx = (nd[..., :, :-1] - nd[..., :, 1:]).abs() * torch.exp(-(img[..., :, :-1] - img[..., :, 1:]).abs().mean(1, True))
    gy = (nd[..., :-1, :] - nd[..., 1:, :]).abs() * torch.exp(-(img[..., :-1, :] - img[..., 1:, :]).abs().mean(1, True))
    return gx.mean() + gy.mean()


def loss(target, sources, disps, pyramid, poses, invert, k, noise, min_depth=0.1, max_depth=100.0, sw=1e-3):
    _, _, h, w = target.shape
    fx, fy, cx, cy = k
    min_disp, max_disp = 1 / max_depth, 1 / min_depth
    ys, xs = torch.meshgrid(torch.arange(h, device=target.device, dtype=target.dtype),
                            torch.arange(w, device=target.device, dtype=target.dtype), indexing="ij")
    rays = torch.stack([(xs - cx) / fx, (ys - cy) / fy, torch.ones_like(xs)]).reshape(3, -1)
    identity = [photometric(s, target) + noise[i] for i, s in enumerate(sources)]
    total = 0
    for s, d in enumerate(disps):
        up = F.interpolate(d, (h, w), mode="bilinear", align_corners=False)
        depth = 1 / (min_disp + (max_disp - min_disp) * up)
        p = rays * depth.reshape(1, -1)
        errors = []
        for i, src in enumerate(sources):
            r, t = transform(poses[i], invert[i])
            cam = r @ p + t[:, None]
            z = cam[2] + 1e-7
            u = (fx * cam[0] + cx * cam[2]) / z
            v = (fy * cam[1] + cy * cam[2]) / z
            grid = torch.stack([u / (w - 1) * 2 - 1, v / (h - 1) * 2 - 1], -1).reshape(1, h, w, 2)
            warped = F.grid_sample(src, grid, mode="bilinear", padding_mode="border", align_corners=True)
            errors.append(photometric(warped, target))
        mn = torch.cat(identity + errors, 1).min(1)[0]
        total = total + mn.mean() + sw / 2**s * smoothness(d, pyramid[s])
    return total / len(disps)


def main():
    w, h, n, scales, iters, warmup = (int(a) for a in sys.argv[1:7])
    check = len(sys.argv) > 8 and sys.argv[7] == "check"
    dev = torch.device("cpu" if check else "cuda")
    dtype = torch.float64 if check else torch.float32
    g = torch.Generator(device="cpu").manual_seed(0)
    rnd = lambda *shape: torch.rand(*shape, generator=g, dtype=dtype).to(dev)
    target = rnd(1, 3, h, w)
    sources = [rnd(1, 3, h, w) for _ in range(n)]
    disps = [(0.02 + 0.4 * rnd(1, 1, h >> s, w >> s)).requires_grad_() for s in range(scales)]
    pyramid = [F.avg_pool2d(target, 2**s) if s else target for s in range(scales)]
    poses = [(0.03 * (2 * rnd(6) - 1)).requires_grad_() for _ in range(n)]
    noise = [1e-5 * (2 * rnd(1, 1, h, w) - 1) for _ in range(n)]
    k = (0.58 * w, 1.92 * h, 0.5 * w, 0.5 * h)
    invert = [i % 2 == 0 for i in range(n)]
    if check:
        import numpy as np
        out = loss(target, sources, disps, pyramid, poses, invert, k, noise)
        out.backward()
        arrays = {"target": target, "total": out.detach(), "k": torch.tensor(k, dtype=dtype)}
        arrays["invert"] = torch.tensor([float(v) for v in invert], dtype=dtype)
        for i in range(n):
            arrays[f"source{i}"], arrays[f"noise{i}"] = sources[i], noise[i]
            arrays[f"pose{i}"], arrays[f"grad_pose{i}"] = poses[i].detach(), poses[i].grad
        for s in range(scales):
            arrays[f"disp{s}"], arrays[f"grad_disp{s}"] = disps[s].detach(), disps[s].grad
            arrays[f"pyramid{s}"] = pyramid[s]
        np.savez(sys.argv[8], **{name: a.detach().numpy().astype(np.float32).reshape(-1) for name, a in arrays.items()})
        print(json.dumps({"total": float(out.detach())}))
        return
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    value = 0.0
    for it in range(warmup + iters):
        if it == warmup:
            torch.cuda.synchronize()
            start.record()
        for t in disps + poses:
            t.grad = None
        out = loss(target, sources, disps, pyramid, poses, invert, k, noise)
        out.backward()
    end.record()
    torch.cuda.synchronize()
    value = float(out.detach())
    print(json.dumps({"ms": start.elapsed_time(end) / iters, "total": value}))


if __name__ == "__main__":
    main()
