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
