"""Parity fixtures for KID (torch-fidelity 0.4.0) and precision/recall/density/coverage (prdc 0.2)
on random feature sets (nodes/src/algorithms/{kid,prdc}.rs).

    /path/to/python tests/parity/kid_prdc.py    # writes tests/parity/kid_prdc.safetensors

KID: torch_fidelity.metric_kid.kernel_mmd (cubic polynomial kernel, γ = 1/D, c₀ = 1, unbiased
MMD²) on given subsets — torch-fidelity draws its subsets with numpy's RandomState, cedm with its
own seeded generator, so parity is per subset, and for the mean and std over the same subsets.
PRDC: prdc.compute_prdc at k = 3 (precision/recall, Kynkäänniemi et al.) and k = 5
(density/coverage, Naeem et al.), fakes shifted so that none of the numbers is 0 or 1.
"""

import os

import numpy as np
import torch_fidelity
from prdc import compute_prdc
from safetensors.numpy import save_file
from torch_fidelity.metric_kid import kernel_mmd

from common import HERE

rng = np.random.RandomState(0)
d = 16
real = rng.randn(300, d).astype(np.float32)
fake = (rng.randn(240, d) * 1.2 + 0.3).astype(np.float32)
kw = dict(kid_kernel="poly", kid_kernel_poly_degree=3, kid_kernel_poly_gamma=None, kid_kernel_poly_coef0=1)
subsets = 5
size = 100
i1 = np.stack([rng.choice(len(fake), size, replace=False) for _ in range(subsets)])
i2 = np.stack([rng.choice(len(real), size, replace=False) for _ in range(subsets)])
mmds = np.array([kernel_mmd(fake[a].astype(np.float64), real[b].astype(np.float64), **kw) for a, b in zip(i1, i2)])
p3 = compute_prdc(real, fake, 3)
p5 = compute_prdc(real, fake, 5)
save_file({
    "real": real, "fake": fake, "subsets_fake": i1.astype(np.int64), "subsets_real": i2.astype(np.int64),
    "mmd": mmds, "kid": np.array([mmds.mean(), mmds.std()]),
    "prdc_k3": np.array([p3["precision"], p3["recall"], p3["density"], p3["coverage"]], dtype=np.float64),
    "prdc_k5": np.array([p5["precision"], p5["recall"], p5["density"], p5["coverage"]], dtype=np.float64),
}, os.path.join(HERE, "kid_prdc.safetensors"), metadata={
    "script": "tests/parity/kid_prdc.py", "torch_fidelity": torch_fidelity.__version__, "prdc": "0.2"})
print("kid", mmds.mean(), mmds.std(), "prdc k3", p3, "k5", p5)
