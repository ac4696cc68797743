"""Parity fixture for the one-to-one cluster→class mapping of `cluster/mapping`
(nodes/src/algorithms/scores.rs `one_to_one`) against SciPy's linear_sum_assignment.

    /path/to/python tests/parity/mapping.py   # writes tests/parity/mapping.safetensors

The mapping maximises the number of items whose cluster's class is their class, one cluster per
class: linear_sum_assignment on the C×K contingency matrix (maximize=True), which SciPy solves on
the rectangular matrix directly. Cases: C = K, C > K (some clusters unmapped), C < K (some classes
unmapped). Each has a clear optimum (items follow a hidden permutation 70% of the time), so the
assignment is unique and can be compared exactly.
"""

import os

import numpy as np
import scipy
from safetensors.numpy import save_file
from scipy.optimize import linear_sum_assignment

from common import HERE

rng = np.random.default_rng(0)
out = {}
for name, (c, k, n) in {"square": (10, 10, 3000), "over": (14, 10, 4000), "under": (6, 9, 3000)}.items():
    truth = rng.integers(0, k, n)
    perm = rng.permutation(max(c, k))
    pred = np.where(rng.random(n) < 0.7, perm[truth] % c, rng.integers(0, c, n))
    m = np.zeros((c, k), dtype=np.int64)
    np.add.at(m, (pred, truth), 1)
    rows, cols = linear_sum_assignment(m, maximize=True)
    mapping = np.full(c, -1, dtype=np.int64)
    mapping[rows] = cols
    out[f"{name}.truth"] = truth.astype(np.int64)
    out[f"{name}.pred"] = pred.astype(np.int64)
    out[f"{name}.shape"] = np.array([c, k], dtype=np.int64)
    out[f"{name}.mapping"] = mapping
    out[f"{name}.matched"] = np.array([m[rows, cols].sum()], dtype=np.int64)
    print(name, mapping.tolist(), m[rows, cols].sum())
save_file(out, os.path.join(HERE, "mapping.safetensors"), metadata={"script": "tests/parity/mapping.py", "scipy": scipy.__version__})
