"""Reference k-means (scikit-learn KMeans, algorithm="lloyd") on the same features (what
`cedm bench kmeans` compares against). Prints one JSON line.

    python benches/kmeans.py --features F.safetensors --k 100 --n-init 1 --max-iter 300
"""
import argparse
import json
import time

import numpy as np
import sklearn
from safetensors.numpy import load_file
from sklearn.cluster import KMeans


def peak_rss_mib():
    """This process's peak RSS (VmHWM; getrusage would include the parent's at exec)."""
    with open("/proc/self/status") as f:
        return next(float(l.split()[1]) / 1024 for l in f if l.startswith("VmHWM:"))

p = argparse.ArgumentParser()
p.add_argument("--features", required=True)
p.add_argument("--k", type=int, default=100)
p.add_argument("--n-init", type=int, default=1)
p.add_argument("--max-iter", type=int, default=300)
p.add_argument("--tol", type=float, default=1e-4)
p.add_argument("--seed", type=int, default=0)
a = p.parse_args()
x = load_file(a.features)["features"].astype(np.float32)
t = time.perf_counter()
km = KMeans(n_clusters=a.k, n_init=a.n_init, max_iter=a.max_iter, tol=a.tol, algorithm="lloyd", random_state=a.seed).fit(x)
secs = time.perf_counter() - t
print(json.dumps({"peak_rss_mib": peak_rss_mib(), "impl": f"sklearn {sklearn.__version__}", "seconds": secs, "iterations": int(km.n_iter_), "inertia": float(km.inertia_)}))
