"""Parity fixture for EDM's geometric augmentation (nodes/src/models/edm/augment.rs::geometric).

    /path/to/python tests/parity/augment.py      # writes tests/parity/augment.safetensors

torch 2.15. Applies EDM's geometric pipeline (training/augment.py: reflect pad by the transformed
corners' margin, sym6 2× upsample, affine_grid + grid_sample bilinear with zero padding,
sym6 2× downsample, crop) with torch's own ops to a random 2-channel 10×12 image for a fixed
inverse transform G_inv (rotation, anisotropic scale, translation), as EDM composes them.
"""

import math
import os

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.numpy import save_file

from common import HERE

SYM6 = [0.015404109327027373, 0.0034907120842174702, -0.11799011114819057, -0.048311742585633, 0.4910559419267466,
        0.787641141030194, 0.3379294217276218, -0.07263752278646252, -0.021060292512300564, 0.04472490177066578,
        0.0017677118642428036, -0.007800708325034148]


def T(tx, ty): return torch.tensor([[1, 0, tx], [0, 1, ty], [0, 0, 1]], dtype=torch.float64)
def S(sx, sy): return torch.tensor([[sx, 0, 0], [0, sy, 0], [0, 0, 1]], dtype=torch.float64)
def R(t): return torch.tensor([[math.cos(t), -math.sin(t), 0], [math.sin(t), math.cos(t), 0], [0, 0, 1]], dtype=torch.float64)


def geometric(images, G):
    N, C, H, W = images.shape
    Hz = torch.tensor(SYM6, dtype=images.dtype)
    Hz_pad = len(SYM6) // 4
    cx, cy = (W - 1) / 2, (H - 1) / 2
    cp = torch.tensor([[-cx, -cy, 1], [cx, -cy, 1], [cx, cy, 1], [-cx, cy, 1]], dtype=torch.float64)
    cp = G @ cp.t()
    margin = cp[:2, :]
    margin = torch.cat([-margin, margin]).max(dim=1).values
    margin = margin + torch.tensor([Hz_pad * 2 - cx, Hz_pad * 2 - cy] * 2, dtype=torch.float64)
    margin = margin.max(torch.zeros(4, dtype=torch.float64)).min(torch.tensor([W - 1, H - 1] * 2, dtype=torch.float64))
    mx0, my0, mx1, my1 = [int(v) for v in margin.ceil()]
    images = F.pad(images, [mx0, mx1, my0, my1], mode="reflect")
    G = T((mx0 - mx1) / 2, (my0 - my1) / 2) @ G
    w = Hz.flip(0)[None, None, :].tile([C, 1, 1])
    pad = (len(SYM6) + 1) // 2
    images = torch.stack([images, torch.zeros_like(images)], dim=4).reshape(N, C, images.shape[2], -1)[:, :, :, :-1]
    images = F.conv2d(images, w.unsqueeze(2), groups=C, padding=[0, pad])
    images = torch.stack([images, torch.zeros_like(images)], dim=3).reshape(N, C, -1, images.shape[3])[:, :, :-1, :]
    images = F.conv2d(images, w.unsqueeze(3), groups=C, padding=[pad, 0])
    G = S(2, 2) @ G @ S(0.5, 0.5)
    G = T(-0.5, -0.5) @ G @ T(0.5, 0.5)
    shape = [N, C, (H + Hz_pad * 2) * 2, (W + Hz_pad * 2) * 2]
    G = S(2 / images.shape[3], 2 / images.shape[2]) @ G @ S(shape[3] / 2, shape[2] / 2)
    grid = F.affine_grid(G[None, :2, :].to(images.dtype), shape, align_corners=False)
    images = F.grid_sample(images, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    w = Hz[None, None, :].tile([C, 1, 1])
    pad = (len(SYM6) - 1) // 2
    images = F.conv2d(images, w.unsqueeze(2), groups=C, stride=[1, 2], padding=[0, pad])[:, :, :, Hz_pad:-Hz_pad]
    images = F.conv2d(images, w.unsqueeze(3), groups=C, stride=[2, 1], padding=[pad, 0])[:, :, Hz_pad:-Hz_pad, :]
    return images


torch.manual_seed(0)
img = torch.randn(1, 2, 10, 12, dtype=torch.float64)
s, a, r, th = 2 ** 0.15, 2 ** -0.1, 0.4, 0.7
G = S(1 / s, 1 / s) @ R(th) @ (R(-r) @ S(1 / a, a) @ R(r)) @ T(-1.3, 0.6)
out = geometric(img, G)
save_file({"image": img.numpy()[0].astype(np.float32), "g_inv": G.numpy().astype(np.float64), "out": out.numpy()[0].astype(np.float32)},
          os.path.join(HERE, "augment.safetensors"), metadata={"script": "tests/parity/augment.py", "torch": torch.__version__})
print(out.shape, float(out.abs().mean()))
