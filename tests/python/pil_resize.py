"""Resizes images with Pillow's LANCZOS filter for the preprocessing parity test.
Usage: pil_resize.py IN_IMAGE WIDTH HEIGHT OUT_NPY [...repeated]; writes uint8 HxWx3 arrays:
the resized image to OUT_NPY and Pillow's decoded source to OUT_NPY.src.npy (JPEG decoders
differ slightly, so the resize is compared on identical source pixels)."""

import sys

import numpy as np
from PIL import Image

args = sys.argv[1:]
for i in range(0, len(args), 4):
    src, w, h, dst = args[i], int(args[i + 1]), int(args[i + 2]), args[i + 3]
    source = Image.open(src).convert("RGB")
    np.save(dst + ".src.npy", np.asarray(source, dtype=np.uint8))
    img = source.resize((w, h), Image.LANCZOS)
    np.save(dst, np.asarray(img, dtype=np.uint8))
print("ok")
