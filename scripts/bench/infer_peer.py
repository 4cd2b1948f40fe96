"""PyTorch eager peer for `livedepth bench infer`: the RT-MonoDepth-S depth network as plain
nn.Modules (written from the checkpoint description), run on the same weights, input and
thread count as the Rust/libtorch engine, timed the same way (warm-up, then per-iteration wall
time under torch.no_grad / eval mode).

Usage: infer_peer.py --input IN.npy --iters N --warmup W --threads T [--model DIR]
                     [--out-disp OUT.npy] [--profile] [--channels-last] [--device cpu|cuda]
Prints one JSON object: median/mean/min ms of the full forward, the encoder and the decoder,
and, with --profile, the ATen operators taking the most self CPU time. --channels-last converts
weights and input to torch.channels_last (the layout the Rust engine uses). --device cuda runs
on GPU 0; each timed full forward then starts with the input's upload and ends with the
disparity's copy to the host, as the engine's does."""

import argparse
import json
import os
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F


class Encoder(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
        chans = [64, 64, 128, 192]
        self.convs = nn.ModuleList(
            nn.Sequential(nn.Conv2d(chans[i], chans[i + 1], 3, 2, 1), nn.LeakyReLU(0.1),
                          nn.Conv2d(chans[i + 1], chans[i + 1], 3, 1, 1), nn.LeakyReLU(0.1))
            for i in range(3))

    def forward(self, x):
        feats = [F.relu(self.conv1(x))]
        for block in self.convs:
            feats.append(block(feats[-1]))
        return feats


class ReflectConv(nn.Module):
    def __init__(self, cin, cout):
        super().__init__()
        self.pad = nn.ReflectionPad2d(1)
        self.conv = nn.Conv2d(cin, cout, 3)

    def forward(self, x):
        return F.elu(self.conv(self.pad(x)))


class DispHead(nn.Module):
    def __init__(self, cin):
        super().__init__()
        self.conv3 = nn.Conv2d(cin, 1, 3, 1, 1)

    def forward(self, x):
        return torch.sigmoid(self.conv3(x))


class Decoder(nn.Module):
    def __init__(self):
        super().__init__()
        chans = {3: 96, 2: 64, 1: 32, 0: 16}
        blocks, cin = [], 192
        for i in (3, 2, 1, 0):
            blocks += [ReflectConv(cin, chans[i]), ReflectConv(chans[i], chans[i])]
            cin = chans[i]
        blocks += [DispHead(chans[s]) for s in range(3)]
        self.decoder = nn.ModuleList(blocks)

    def forward(self, feats):
        x, out = feats[3], {}
        for n, i in enumerate((3, 2, 1, 0)):
            x = F.interpolate(self.decoder[2 * n](x), scale_factor=2, mode="nearest")
            x = self.decoder[2 * n + 1](x)
            if i <= 2:
                out[i] = self.decoder[8 + i](x)
        return [out[s] for s in range(3)]


def stats(times):
    t = np.array(times) * 1e3
    return {"median_ms": float(np.median(t)), "mean_ms": float(t.mean()), "min_ms": float(t.min())}


def timed(fn, warmup, iters, sync=lambda: None):
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(iters):
        start = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - start)
    return stats(times)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model")
    ap.add_argument("--input", required=True)
    ap.add_argument("--iters", type=int, default=50)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--out-disp")
    ap.add_argument("--profile", action="store_true")
    ap.add_argument("--channels-last", action="store_true")
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    a = ap.parse_args()
    if a.threads > 0:
        torch.set_num_threads(a.threads)
    enc, dec = Encoder().eval(), Decoder().eval()
    if a.model:
        sd = torch.load(os.path.join(a.model, "encoder.pth"), map_location="cpu", weights_only=True)
        enc.load_state_dict({k: v for k, v in sd.items() if isinstance(v, torch.Tensor)})
        dec.load_state_dict(torch.load(os.path.join(a.model, "depth.pth"), map_location="cpu",
                                       weights_only=True))
    x = torch.from_numpy(np.load(a.input))
    dev = torch.device(a.device)
    x_host = x
    enc, dec, x = enc.to(dev), dec.to(dev), x.to(dev)
    sync = torch.cuda.synchronize if a.device == "cuda" else (lambda: None)
    if a.channels_last:
        enc = enc.to(memory_format=torch.channels_last)
        dec = dec.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
        x_host = x_host.contiguous(memory_format=torch.channels_last)
    result = {"threads": torch.get_num_threads(), "torch": torch.__version__,
              "channels_last": a.channels_last, "device": a.device}
    with torch.no_grad():
        feats = enc(x)
        result["total"] = timed(lambda: dec(enc(x_host.to(dev)))[0].cpu(), a.warmup, a.iters)
        result["encoder"] = timed(lambda: enc(x), a.warmup, a.iters, sync)
        result["decoder"] = timed(lambda: dec(feats), a.warmup, a.iters, sync)
        if a.out_disp:
            np.save(a.out_disp, dec(enc(x))[0].cpu().numpy())
        if a.profile:
            from torch.profiler import ProfilerActivity, profile
            with profile(activities=[ProfilerActivity.CPU]) as prof:
                for _ in range(max(3, a.iters // 5)):
                    dec(enc(x))
            ops = sorted(prof.key_averages(), key=lambda e: e.self_cpu_time_total, reverse=True)
            total = sum(e.self_cpu_time_total for e in ops) or 1
            result["ops"] = [{"name": e.key, "share": e.self_cpu_time_total / total,
                              "calls": e.count} for e in ops[:8]]
    print(json.dumps(result))


if __name__ == "__main__":
    main()
