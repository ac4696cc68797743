"""Reference Fréchet distance with scipy (pytorch-fid / EDM's formula: scipy.linalg.sqrtm of
Σ₁Σ₂, real part) on two statistics files written by `cedm bench frechet`. Prints one JSON line.

    python benches/frechet.py A.npz B.npz
"""
import json
import sys
import time
import warnings

import numpy as np
import scipy
import scipy.linalg


def peak_rss_mib():
    """This process's peak RSS (VmHWM; getrusage would include the parent's at exec)."""
    with open("/proc/self/status") as f:
        return next(float(l.split()[1]) / 1024 for l in f if l.startswith("VmHWM:"))

warnings.filterwarnings("ignore")
a, b = np.load(sys.argv[1]), np.load(sys.argv[2])
mu1, s1, mu2, s2 = a["mu"], a["sigma"], b["mu"], b["sigma"]
t = time.perf_counter()
covmean, _ = scipy.linalg.sqrtm(s1.dot(s2), disp=False)
d = mu1 - mu2
fd = float(d.dot(d) + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean.real))
s = time.perf_counter() - t
print(json.dumps({"peak_rss_mib": peak_rss_mib(), "impl": f"scipy {scipy.__version__} sqrtm", "seconds": s, "fd": fd}))
