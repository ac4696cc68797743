"""Reference sampling throughput in PyTorch: EDM's deterministic Heun sampler
(NVlabs/edm generate.py `edm_sampler` with S_churn = 0: float64 time steps and update
arithmetic, the network in float32 under no_grad) on the DDPM++ SongUNet of
tests/parity/songunet.py with EDM's preconditioning — what `cedm bench sample` compares against
on the same preset, image count and batch. Prints one JSON line.

    python benches/sample.py --preset quickstart --images 256 --batch 256 --steps 18
"""
import argparse
import json
import os
import sys
import time

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "parity"))
from songunet import Net, precond  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from songunet_presets import PRESETS  # noqa: E402


def peak_rss_mib():
    """This process's peak RSS (VmHWM; getrusage would include the parent's at exec)."""
    with open("/proc/self/status") as f:
        return next(float(l.split()[1]) / 1024 for l in f if l.startswith("VmHWM:"))

p = argparse.ArgumentParser()
p.add_argument("--preset", default="quickstart", choices=sorted(PRESETS))
p.add_argument("--label-dim", type=int, default=10)
p.add_argument("--images", type=int, default=256)
p.add_argument("--batch", type=int, default=256)
p.add_argument("--steps", type=int, default=18)
p.add_argument("--threads", type=int, default=os.cpu_count())
a = p.parse_args()
torch.set_num_threads(a.threads)
cfg = dict(PRESETS[a.preset], label_dim=a.label_dim, augment_dim=9, channel_mult_emb=4, dropout=0.0)
net = Net(cfg, torch.Generator().manual_seed(0))
net.p = {k: v * 0.5 for k, v in net.p.items()}
r, c = cfg["img_resolution"], cfg["in_channels"]


def edm_sampler(latents, labels, num_steps, sigma_min=0.002, sigma_max=80.0, rho=7.0):
    # Time step discretisation (EDM eq. 5), float64, t_N = 0.
    i = torch.arange(num_steps, dtype=torch.float64)
    t = (sigma_max ** (1 / rho) + i / (num_steps - 1) * (sigma_min ** (1 / rho) - sigma_max ** (1 / rho))) ** rho
    t = torch.cat([t, torch.zeros_like(t[:1])])
    aug = torch.zeros(latents.shape[0], 9)
    den = lambda x, s: precond(net, x.float(), torch.full((x.shape[0],), float(s)), labels, aug).double()
    x_next = latents.double() * t[0]
    for k, (t_cur, t_next) in enumerate(zip(t[:-1], t[1:])):
        x_cur = x_next
        d_cur = (x_cur - den(x_cur, t_cur)) / t_cur
        x_next = x_cur + (t_next - t_cur) * d_cur
        if k < num_steps - 1:
            d_prime = (x_next - den(x_next, t_next)) / t_next
            x_next = x_cur + (t_next - t_cur) * (0.5 * d_cur + 0.5 * d_prime)
    return x_next


g = torch.Generator().manual_seed(1)
with torch.no_grad():
    # Warm-up: one batch of one step (allocator, oneDNN kernel generation).
    edm_sampler(torch.randn(min(a.batch, a.images), c, r, r, generator=g), None if a.label_dim == 0 else
                F.one_hot(torch.zeros(min(a.batch, a.images), dtype=torch.long), a.label_dim).float(), 2)
    t0 = time.perf_counter()
    done = 0
    while done < a.images:
        b = min(a.batch, a.images - done)
        z = torch.randn(b, c, r, r, generator=g)
        labels = None if a.label_dim == 0 else F.one_hot(torch.randint(0, a.label_dim, (b,), generator=g), a.label_dim).float()
        x = edm_sampler(z, labels, a.steps)
        done += b
    secs = time.perf_counter() - t0
print(json.dumps({"peak_rss_mib": peak_rss_mib(), "impl": f"torch {torch.__version__} (cpu)", "seconds": secs, "rate": a.images / secs}))
