"""Parity fixture for cluster metrics (nodes/src/algorithms/scores.rs) against scikit-learn and SciPy.

    /path/to/python tests/parity/cluster_metrics.py   # writes tests/parity/cluster_metrics.safetensors

scikit-learn NMI (arithmetic), adjusted MI, adjusted Rand; ACC as TEMI's / self-classifier's
`compute_metrics` (Hungarian matching on the K×K count matrix with scipy's
linear_sum_assignment, K = max id + 1; under over-clustering, clusters matched to a class that
does not occur are mapped to their majority class). Cases include over-clustering,
under-clustering, non-contiguous ids and a 20 000-item case with 100 clusters.
"""

import os

import numpy as np
import scipy
import sklearn
from safetensors.numpy import save_file
from scipy.optimize import linear_sum_assignment
from sklearn.metrics import adjusted_mutual_info_score, adjusted_rand_score, normalized_mutual_info_score

from common import HERE


def acc(targets, preds):
    k = max(targets.max(), preds.max()) + 1
    m = np.zeros((k, k), dtype=np.int64)
    for p, t in zip(preds, targets):
        m[p, t] += 1
    re = np.dstack(linear_sum_assignment(m.max() - m))[0]
    if len(np.unique(preds)) > len(np.unique(targets)):
        for c in np.unique(preds):
            if re[c, 1] not in targets:
                re[c, 1] = m[c].argmax()
    return m[re[:, 0], re[:, 1]].sum() / len(preds)


rng = np.random.default_rng(0)
cases = {}


def noisy(truth, nclusters, agree, relabel=None):
    pred = truth.copy() % nclusters
    flip = rng.random(len(truth)) > agree
    pred[flip] = rng.integers(0, nclusters, flip.sum())
    if relabel is not None:
        pred = relabel[pred]
    return pred


t = rng.integers(0, 10, 500)
cases["random"] = (t, noisy(t, 10, 0.6))
# Over-clustering: 30 clusters, each mostly inside one class.
t2 = rng.integers(0, 10, 800)
p2 = t2 * 3 + rng.integers(0, 3, 800)
flip = rng.random(800) > 0.8
p2[flip] = rng.integers(0, 30, flip.sum())
cases["overclustering"] = (t2, p2)
# Non-contiguous ids on both sides.
t3 = np.array([0, 3, 7])[rng.integers(0, 3, 300)]
p3 = noisy(t3, 11, 0.7, relabel=np.array([2, 5, 11, 40, 41, 3, 9, 17, 23, 24, 30]))
cases["noncontiguous"] = (t3, p3)
# Under-clustering.
t4 = rng.integers(0, 10, 400)
cases["underclustering"] = (t4, t4 // 3)
# Large: 20k items, 10 classes, 100 clusters.
t5 = rng.integers(0, 10, 20000)
p5 = t5 * 10 + rng.integers(0, 10, 20000)
flip = rng.random(20000) > 0.7
p5[flip] = rng.integers(0, 100, flip.sum())
cases["large"] = (t5, p5)

out = {}
for name, (truth, pred) in cases.items():
    truth = truth.astype(np.int64)
    pred = pred.astype(np.int64)
    out[f"{name}.truth"] = truth
    out[f"{name}.pred"] = pred
    out[f"{name}.scores"] = np.array([
        acc(truth, pred),
        normalized_mutual_info_score(truth, pred),
        adjusted_mutual_info_score(truth, pred),
        adjusted_rand_score(truth, pred),
    ], dtype=np.float64)
    print(name, out[f"{name}.scores"])
save_file(out, os.path.join(HERE, "cluster_metrics.safetensors"),
          metadata={"script": "tests/parity/cluster_metrics.py", "sklearn": sklearn.__version__, "scipy": scipy.__version__})
