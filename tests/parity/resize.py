"""Parity fixture for image resampling (nodes/kernels/src/imageops.rs).

    /path/to/python tests/parity/resize.py      # writes tests/parity/resize.safetensors

torch 2.15. A random 0–255 float image is resized with
F.interpolate(antialias=True, align_corners=False) bilinear and bicubic, up (37×29 → 96×80) and
down (37×29 → 16×11), and with fid-helper-pytorch's `nv_bilinear` (affine_grid + grid_sample,
TensorFlow's legacy resize) to 299×299.
"""

import os

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.numpy import save_file

from common import HERE

torch.manual_seed(0)
src = (torch.rand(1, 1, 37, 29) * 255).round()
out = {"src": src.numpy()[0, 0].astype(np.float32)}
for mode in ["bilinear", "bicubic"]:
    for name, size in [("up", (96, 80)), ("down", (16, 11))]:
        y = F.interpolate(src, size=size, mode=mode, align_corners=False, antialias=True)
        out[f"{mode}_{name}"] = y.numpy()[0, 0].astype(np.float32)


def nv_bilinear(x, new_hw):
    # fid_helper_pytorch/_resample_func.py::nv_bilinear (StyleGAN's FID resize).
    b, c, h, w = x.shape
    nh, nw = new_hw
    theta = torch.eye(2, 3)
    theta[0, 2] += theta[0, 0] / w - theta[0, 0] / nw
    theta[1, 2] += theta[1, 1] / h - theta[1, 1] / nh
    theta = theta.unsqueeze(0).repeat([b, 1, 1])
    grid = F.affine_grid(theta, [b, c, nh, nw], align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


out["tf_bilinear_299"] = nv_bilinear(src, (299, 299)).numpy()[0, 0].astype(np.float32)
save_file(out, os.path.join(HERE, "resize.safetensors"), metadata={"script": "tests/parity/resize.py", "torch": torch.__version__})
print({k: v.shape for k, v in out.items()})
