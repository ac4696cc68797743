"""Reference exact kNN in PyTorch CPU (what `cedm bench knn` compares against): L2-normalise,
blocked x @ x.T, self masked, topk. Prints one JSON line; writes the indices for agreement checks.

    python benches/knn.py --features F.safetensors --k 50 --block 1024 --out idx.npy
"""
import argparse
import json
import os
import time

import numpy as np
import torch
from safetensors.torch import load_file


def peak_rss_mib():
    """This process's peak RSS (VmHWM; getrusage would include the parent's at exec)."""
    with open("/proc/self/status") as f:
        return next(float(l.split()[1]) / 1024 for l in f if l.startswith("VmHWM:"))

p = argparse.ArgumentParser()
p.add_argument("--features", required=True)
p.add_argument("--k", type=int, default=50)
p.add_argument("--block", type=int, default=1024)
p.add_argument("--threads", type=int, default=os.cpu_count())
p.add_argument("--out", default=None)
a = p.parse_args()
torch.set_num_threads(a.threads)
x = load_file(a.features)["features"]
t = time.perf_counter()
x = torch.nn.functional.normalize(x, dim=1)
n = x.shape[0]
out = torch.empty(n, a.k, dtype=torch.int64)
with torch.inference_mode():
    for s in range(0, n, a.block):
        e = min(s + a.block, n)
        sim = x[s:e] @ x.T
        sim[torch.arange(e - s), torch.arange(s, e)] = -float("inf")
        out[s:e] = sim.topk(a.k, dim=1).indices
secs = time.perf_counter() - t
if a.out:
    np.save(a.out, out.numpy())
print(json.dumps({"peak_rss_mib": peak_rss_mib(), "impl": f"torch {torch.__version__}", "n": n, "d": x.shape[1], "k": a.k, "seconds": secs}))
