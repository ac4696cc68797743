"""Parity fixtures for metrics/fd and KID against clean-fid 0.1.35 (`cleanfid.fid`), and for
FD∞ against Chong & Forsyth's fit (nodes/src/algorithms/frechet.rs, kinds/metrics/fd.rs).

    /path/to/python tests/parity/fd_cleanfid.py    # writes tests/parity/fd_cleanfid.safetensors

Needs numpy, scipy, scikit-learn, safetensors and `pip install --no-deps clean-fid==0.1.35`:
`frechet_distance` and `kernel_distance` are numpy/scipy only, so their definitions are taken from the
installed `cleanfid/fid.py` and run with numpy and scipy (the module imports torch at the top for
its feature extractors; nothing else of it is needed).

- FD: clean-fid's `frechet_distance(mu1, sigma1, mu2, sigma2)` (scipy sqrtm, np.cov), for a
  sample set smaller than the dimension (the low-rank path) and one larger.
- KID: `kernel_distance(feats1, feats2, num_subsets=1, max_subset_size=m)` after `np.random.seed(s)`,
  with the subsets it draws recorded (it draws from feats2 first, then feats1).
- FD∞: FD (clean-fid's) on the recorded subsets of the sizes `np.linspace(lo, n, 15).astype(int32)`,
  scikit-learn's LinearRegression of FD on 1/N, its prediction at 0 — `calculate_FID_infinity`
  of github.com/mchong6/FID_Infinity (score_infinity.py), which is not packaged.
"""

import ast
import importlib.util
import os

import numpy as np
from safetensors.numpy import save_file
from scipy import linalg
from sklearn.linear_model import LinearRegression

def cleanfid_functions(*names):
    """clean-fid's own definitions of `names`, taken from the installed cleanfid/fid.py and run
    with numpy and scipy.linalg (the module itself imports torch for its feature extractors)."""
    spec = importlib.util.find_spec("cleanfid")
    if spec is None:
        raise SystemExit("pip install --no-deps clean-fid==0.1.35")
    path = os.path.join(list(spec.submodule_search_locations)[0], "fid.py")
    tree = ast.parse(open(path).read())
    body = [n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name in names]
    ns = {"np": np, "linalg": linalg}
    exec(compile(ast.Module(body=body, type_ignores=[]), path, "exec"), ns)
    return [ns[n] for n in names]


frechet_distance, kernel_distance = cleanfid_functions("frechet_distance", "kernel_distance")

from common import HERE

rng = np.random.RandomState(0)
d = 32
real = (rng.randn(400, d) * np.linspace(0.5, 2.0, d)).astype(np.float32)
fake_small = (rng.randn(20, d) * 1.1 + 0.2).astype(np.float32)
fake = (rng.randn(300, d) * np.linspace(0.6, 1.8, d) + 0.1).astype(np.float32)


def stats(x):
    x = x.astype(np.float64)
    return np.mean(x, axis=0), np.cov(x, rowvar=False)


mu_r, sig_r = stats(real)
fd_small = frechet_distance(*stats(fake_small), mu_r, sig_r)
fd = frechet_distance(*stats(fake), mu_r, sig_r)

m = 100
kid_idx_fake, kid_idx_real, kids = [], [], []
for s in range(4):
    np.random.seed(s)
    ir = np.random.choice(real.shape[0], m, replace=False)
    i_f = np.random.choice(fake.shape[0], m, replace=False)
    np.random.seed(s)
    kids.append(kernel_distance(fake, real, num_subsets=1, max_subset_size=m))
    kid_idx_fake.append(i_f)
    kid_idx_real.append(ir)

lo, n, points = 30, fake.shape[0], 15
sizes = np.linspace(lo, n, points).astype(np.int32)
subsets = np.full((points, n), -1, dtype=np.int64)
fds = []
for k, size in enumerate(sizes):
    idx = rng.permutation(n)[:size]
    subsets[k, :size] = idx
    fds.append(frechet_distance(*stats(fake[idx]), mu_r, sig_r))
reg = LinearRegression().fit(1 / sizes.reshape(-1, 1), np.array(fds).reshape(-1, 1))
fd_inf = reg.predict(np.array([[0]]))[0, 0]

save_file({
    "real": real, "fake": fake, "fake_small": fake_small,
    "fd": np.array([fd_small, fd], dtype=np.float64),
    "kid_fake": np.stack(kid_idx_fake).astype(np.int64), "kid_real": np.stack(kid_idx_real).astype(np.int64),
    "kid": np.array(kids, dtype=np.float64),
    "inf_sizes": sizes.astype(np.int64), "inf_subsets": subsets, "inf_fd": np.array(fds, dtype=np.float64),
    "fd_infinity": np.array([fd_inf], dtype=np.float64),
}, os.path.join(HERE, "fd_cleanfid.safetensors"), metadata={
    "script": "tests/parity/fd_cleanfid.py", "clean_fid": "0.1.35"})
print("fd", fd_small, fd, "kid", kids, "fd_inf", fd_inf)
