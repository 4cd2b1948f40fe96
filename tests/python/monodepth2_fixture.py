"""Builds random Monodepth2 ResNet-18 depth + pose weights in the published checkpoint layout,
saves them with torch.save (encoder.pth with height/width/use_stereo, depth.pth,
pose_encoder.pth, pose.pth) into OUT_DIR, plus fixed inputs and the reference outputs of an
independent functional forward pass. Also writes broken checkpoints for the error tests."""

import collections
import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import refnets  # noqa: E402

out = sys.argv[1]
H, W = 64, 96
g = torch.Generator().manual_seed(1234)


def rnd(*shape, scale=None):
    fan_in = int(np.prod(shape[1:])) if len(shape) > 1 else 1
    s = scale if scale is not None else (1.0 / fan_in) ** 0.5
    return (torch.rand(*shape, generator=g) * 2 - 1) * s


def bn(sd, name, c):
    sd[name + ".weight"] = 1 + 0.2 * rnd(c, scale=1)
    sd[name + ".bias"] = 0.1 * rnd(c, scale=1)
    sd[name + ".running_mean"] = 0.1 * rnd(c, scale=1)
    sd[name + ".running_var"] = 1 + 0.5 * torch.rand(c, generator=g)
    sd[name + ".num_batches_tracked"] = torch.tensor(7, dtype=torch.long)


def resnet18(in_ch):
    sd = collections.OrderedDict()
    p = "encoder."
    sd[p + "conv1.weight"] = rnd(64, in_ch, 7, 7)
    bn(sd, p + "bn1", 64)
    cin = 64
    for l in range(4):
        width = 64 << l
        for b in range(2):
            q = f"{p}layer{l + 1}.{b}."
            stride = 2 if (b == 0 and l > 0) else 1
            sd[q + "conv1.weight"] = rnd(width, cin, 3, 3)
            bn(sd, q + "bn1", width)
            sd[q + "conv2.weight"] = rnd(width, width, 3, 3)
            bn(sd, q + "bn2", width)
            if stride != 1 or cin != width:
                sd[q + "downsample.0.weight"] = rnd(width, cin, 1, 1)
                bn(sd, q + "downsample.1", width)
            cin = width
    sd[p + "fc.weight"] = rnd(1000, 512)
    sd[p + "fc.bias"] = rnd(1000, scale=0.01)
    return sd


def depth_decoder(enc):
    sd = collections.OrderedDict()
    dec = [16, 32, 64, 128, 256]
    for n, i in enumerate(range(4, -1, -1)):
        cin0 = enc[4] if i == 4 else dec[i + 1]
        cin1 = dec[i] + (enc[i - 1] if i > 0 else 0)
        sd[f"decoder.{2 * n}.conv.conv.weight"] = rnd(dec[i], cin0, 3, 3)
        sd[f"decoder.{2 * n}.conv.conv.bias"] = rnd(dec[i], scale=0.05)
        sd[f"decoder.{2 * n + 1}.conv.conv.weight"] = rnd(dec[i], cin1, 3, 3)
        sd[f"decoder.{2 * n + 1}.conv.conv.bias"] = rnd(dec[i], scale=0.05)
    for s in range(4):
        sd[f"decoder.{10 + s}.conv.weight"] = rnd(1, dec[s], 3, 3)
        sd[f"decoder.{10 + s}.conv.bias"] = rnd(1, scale=0.05)
    return sd


def pose_decoder():
    sd = collections.OrderedDict()
    for k, (o, i, ks) in enumerate([(256, 512, 1), (256, 256, 3), (256, 256, 3), (12, 256, 1)]):
        sd[f"net.{k}.weight"] = rnd(o, i, ks, ks)
        sd[f"net.{k}.bias"] = rnd(o, scale=0.05)
    return sd


enc = resnet18(3)
enc_meta = collections.OrderedDict(enc)
enc_meta["height"] = H
enc_meta["width"] = W
enc_meta["use_stereo"] = False
dec = depth_decoder([64, 64, 128, 256, 512])
penc = resnet18(6)
pdec = pose_decoder()
torch.save(enc_meta, os.path.join(out, "encoder.pth"))
torch.save(dec, os.path.join(out, "depth.pth"))
torch.save(penc, os.path.join(out, "pose_encoder.pth"))
torch.save(pdec, os.path.join(out, "pose.pth"))

x = torch.randn(2, 3, H, W, generator=g)
pair = torch.randn(1, 6, H, W, generator=g)
np.save(os.path.join(out, "input.npy"), x.numpy())
np.save(os.path.join(out, "pair.npy"), pair.numpy())
with torch.no_grad():
    disps = refnets.md2_depth_decoder(dec, refnets.resnet_encoder(enc, x))
    rot, trans = refnets.md2_pose_decoder(pdec, refnets.resnet_encoder(penc, pair)[4])
for s, d in enumerate(disps):
    np.save(os.path.join(out, f"disp_s{s}.npy"), d.numpy())
np.save(os.path.join(out, "axisangle.npy"), rot.numpy())
np.save(os.path.join(out, "translation.npy"), trans.numpy())

# Broken checkpoints for the error tests.
for name in ("bad_missing", "bad_shape", "bad_nan"):
    os.makedirs(os.path.join(out, name), exist_ok=True)
missing = collections.OrderedDict(dec)
del missing["decoder.3.conv.conv.weight"]
torch.save(enc_meta, os.path.join(out, "bad_missing", "encoder.pth"))
torch.save(missing, os.path.join(out, "bad_missing", "depth.pth"))
shape = collections.OrderedDict(dec)
shape["decoder.12.conv.weight"] = rnd(1, 32, 5, 5)
torch.save(enc_meta, os.path.join(out, "bad_shape", "encoder.pth"))
torch.save(shape, os.path.join(out, "bad_shape", "depth.pth"))
nan = collections.OrderedDict(dec)
nan["decoder.0.conv.conv.bias"] = nan["decoder.0.conv.conv.bias"].clone()
nan["decoder.0.conv.conv.bias"][3] = float("nan")
torch.save(enc_meta, os.path.join(out, "bad_nan", "encoder.pth"))
torch.save(nan, os.path.join(out, "bad_nan", "depth.pth"))
torch.save(dec, os.path.join(out, "legacy.pth"), _use_new_zipfile_serialization=False)
# A tensor saved as a non-contiguous view plus half precision, to exercise strides and dtypes.
t = torch.arange(24, dtype=torch.float32).reshape(4, 6)
torch.save(collections.OrderedDict([("t", t.t()), ("h", t[1].half()), ("d", t[2].double())]),
           os.path.join(out, "strided.pth"))
print("ok")
