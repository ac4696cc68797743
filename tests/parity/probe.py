"""Parity fixture for the k-NN probe of metrics/probe (nodes/src/algorithms/probe.rs):
scikit-learn's KNeighborsClassifier(n_neighbors=k) (uniform weights, Euclidean) fitted on
L2-normalised random features of 4 overlapping classes, predictions for k = 1, 5, 10; and the
logistic-regression probe, make_pipeline(StandardScaler(), LogisticRegression(C)) fitted to
convergence (tol 1e-10) for C = 1 and C = 0.01: its coef_, predict_proba and predictions.

    /path/to/python tests/parity/probe.py    # writes tests/parity/probe.safetensors
"""

import os

import numpy as np
import sklearn
from safetensors.numpy import save_file
from sklearn.linear_model import LogisticRegression
from sklearn.neighbors import KNeighborsClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

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
for name, c in [("c1", 1.0), ("c001", 0.01)]:
    lr = make_pipeline(StandardScaler(), LogisticRegression(C=c, tol=1e-10, max_iter=100000))
    lr.fit(train.astype(np.float64), labels)  # in f64, as the Rust fit
    out[f"lr_{name}_coef"] = np.ascontiguousarray(lr[-1].coef_, dtype=np.float32)
    out[f"lr_{name}_proba"] = np.ascontiguousarray(lr.predict_proba(queries.astype(np.float64)), dtype=np.float32)
    out[f"lr_{name}_pred"] = lr.predict(queries.astype(np.float64)).astype(np.int64)
    print(name, (out[f"lr_{name}_pred"] == qlab).mean())
save_file(out, os.path.join(HERE, "probe.safetensors"),
          metadata={"script": "tests/parity/probe.py", "sklearn": sklearn.__version__})
print({k: (out[f"pred_k{k}"] == qlab).mean() for k in [1, 5, 10]})
