"""Parity fixture for the k-NN probe of metrics/probe (nodes/src/algorithms/probe.rs):
scikit-learn's KNeighborsClassifier(n_neighbors=k) (uniform weights, Euclidean) fitted on
L2-normalised random features of 4 overlapping classes, predictions for k = 1, 5, 10.

    /path/to/python tests/parity/probe.py    # writes tests/parity/probe.safetensors
"""

import os

import numpy as np
import sklearn
from safetensors.numpy import save_file
from sklearn.neighbors import KNeighborsClassifier

from common import HERE

rng = np.random.RandomState(0)
d, classes = 24, 4
centres = rng.randn(classes, d)
labels = rng.randint(0, classes, 500)
train = (centres[labels] + 1.5 * rng.randn(500, d)).astype(np.float32)
qlab = rng.randint(0, classes, 300)
queries = (centres[qlab] + 1.5 * rng.randn(300, d)).astype(np.float32)


def unit(x):
    x = x.astype(np.float64)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


out = {"train": train, "labels": labels.astype(np.int64), "queries": queries}
for k in [1, 5, 10]:
    clf = KNeighborsClassifier(n_neighbors=k).fit(unit(train), labels)
    out[f"pred_k{k}"] = clf.predict(unit(queries)).astype(np.int64)
save_file(out, os.path.join(HERE, "probe.safetensors"),
          metadata={"script": "tests/parity/probe.py", "sklearn": sklearn.__version__})
print({k: (out[f"pred_k{k}"] == qlab).mean() for k in [1, 5, 10]})
