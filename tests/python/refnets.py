"""Independent reference forward passes (torch.nn.functional only, no nn.Module) of the networks
livedepth implements, written from the architecture descriptions, reading state dicts in the
published Monodepth2 checkpoint layout. Used by the Rust parity tests and the eval reference."""

import torch
import torch.nn.functional as F


def _conv(x, sd, name, stride=1, pad=1, reflect=False):
    w = sd[name + ".weight"]
    b = sd.get(name + ".bias")
    if reflect:
        x = F.pad(x, (pad, pad, pad, pad), mode="reflect")
        pad = 0
    return F.conv2d(x, w, b, stride=stride, padding=pad)


def _up(x):
    return F.interpolate(x, scale_factor=2, mode="nearest")


def rt_encoder(sd, x):
    f = [F.relu(F.conv2d(x, sd["conv1.weight"], None, stride=2, padding=3))]
    for i in range(3):
        y = F.leaky_relu(_conv(f[-1], sd, f"convs.{i}.0", stride=2), 0.1)
        f.append(F.leaky_relu(_conv(y, sd, f"convs.{i}.2"), 0.1))
    return f


def rt_decoder(sd, feats):
    x = feats[3]
    disps = {}
    k = 0
    for i in (3, 2, 1, 0):
        x = _up(F.elu(_conv(x, sd, f"decoder.{k}.conv", reflect=True)))
        x = F.elu(_conv(x, sd, f"decoder.{k + 1}.conv", reflect=True))
        k += 2
        if i <= 2:
            disps[i] = torch.sigmoid(_conv(x, sd, f"decoder.{8 + i}.conv3"))
    return [disps[s] for s in range(3)]


def _bn(x, sd, name):
    return F.batch_norm(x, sd[name + ".running_mean"], sd[name + ".running_var"],
                        sd[name + ".weight"], sd[name + ".bias"], training=False, eps=1e-5)


def resnet_encoder(sd, x, layers=(2, 2, 2, 2), bottleneck=False, prefix="encoder."):
    p = prefix
    f0 = F.relu(_bn(F.conv2d(x, sd[p + "conv1.weight"], None, stride=2, padding=3), sd, p + "bn1"))
    y = F.max_pool2d(f0, 3, 2, 1)
    feats = [f0]
    for l, n in enumerate(layers):
        for b in range(n):
            q = f"{p}layer{l + 1}.{b}."
            stride = 2 if (b == 0 and l > 0) else 1
            if bottleneck:
                specs = [(1, 1, 0), (2, stride, 1), (3, 1, 0)]
            else:
                specs = [(1, stride, 1), (2, 1, 1)]
            z = y
            for j, (idx, s, pad) in enumerate(specs):
                z = F.conv2d(z, sd[f"{q}conv{idx}.weight"], None, stride=s, padding=pad)
                z = _bn(z, sd, f"{q}bn{idx}")
                if j != len(specs) - 1:
                    z = F.relu(z)
            if q + "downsample.0.weight" in sd:
                ident = _bn(F.conv2d(y, sd[q + "downsample.0.weight"], None, stride=stride),
                            sd, q + "downsample.1")
            else:
                ident = y
            y = F.relu(z + ident)
        feats.append(y)
    return feats


def md2_depth_decoder(sd, feats):
    x = feats[4]
    disps = {}
    for n, i in enumerate(range(4, -1, -1)):
        x = _up(F.elu(_conv(x, sd, f"decoder.{2 * n}.conv.conv", reflect=True)))
        if i > 0:
            x = torch.cat([x, feats[i - 1]], 1)
        x = F.elu(_conv(x, sd, f"decoder.{2 * n + 1}.conv.conv", reflect=True))
        if i <= 3:
            disps[i] = torch.sigmoid(_conv(x, sd, f"decoder.{10 + i}.conv", reflect=True))
    return [disps[s] for s in range(4)]


def md2_pose_decoder(sd, f4):
    x = F.relu(F.conv2d(f4, sd["net.0.weight"], sd["net.0.bias"]))
    x = F.relu(_conv(x, sd, "net.1"))
    x = F.relu(_conv(x, sd, "net.2"))
    x = F.conv2d(x, sd["net.3.weight"], sd["net.3.bias"])
    x = 0.01 * x.mean(3).mean(2)
    return x[:, 0:3], x[:, 3:6]


def load(path):
    return torch.load(path, map_location="cpu", weights_only=True)
