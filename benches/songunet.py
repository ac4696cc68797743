"""Reference throughput of one EDM training step in PyTorch: the DDPM++ SongUNet of
tests/parity/songunet.py (EDM's semantics, functional form) with EDM's preconditioning and loss,
backward, and torch.optim.Adam — what `cedm bench edm` compares against on the same config,
batch and device. Prints one JSON line.

    python benches/songunet.py --preset cifar --batch 64 --steps 10 --device cuda [--fp16]

--fp16 runs the forward/backward under torch.autocast(float16) with a GradScaler (EDM's
`--fp16` casts inside the network instead; the arithmetic is the same kind). Dropout is off on
both sides (the functional reference has none).
"""
import argparse
import json
import math
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
p.add_argument("--preset", default="cifar", choices=sorted(PRESETS))
p.add_argument("--label-dim", type=int, default=10)
p.add_argument("--batch", type=int, default=64)
p.add_argument("--steps", type=int, default=10)
p.add_argument("--warmup", type=int, default=3)
p.add_argument("--device", default="cpu")
p.add_argument("--fp16", action="store_true")
p.add_argument("--threads", type=int, default=os.cpu_count())
p.add_argument("--profile", action="store_true", help="a second run of --steps under torch.profiler: self CPU time by operator")
a = p.parse_args()
torch.set_num_threads(a.threads)
dev = torch.device(a.device)
cfg = dict(PRESETS[a.preset], label_dim=a.label_dim, augment_dim=9, channel_mult_emb=4, dropout=0.0)
net = Net(cfg, torch.Generator().manual_seed(0))
# EDM-like scale of the random weights; what matters here is the arithmetic, not the values.
net.p = {k: (v * 0.5).to(dev).requires_grad_() for k, v in net.p.items()}
opt = torch.optim.Adam(net.p.values(), lr=1e-4, betas=(0.9, 0.999), eps=1e-8)
scaler = torch.amp.GradScaler(enabled=a.fp16)
b, r, c = a.batch, cfg["img_resolution"], cfg["in_channels"]
g = torch.Generator(device=dev).manual_seed(1)


def step():
    y = torch.rand(b, c, r, r, device=dev, generator=g) * 2 - 1
    sigma = (torch.randn(b, device=dev, generator=g) * 1.2 - 1.2).exp()
    n = torch.randn(b, c, r, r, device=dev, generator=g) * sigma[:, None, None, None]
    labels = F.one_hot(torch.randint(0, a.label_dim, (b,), device=dev, generator=g), a.label_dim).float()
    aug = torch.zeros(b, 9, device=dev)
    with torch.autocast(device_type=dev.type, dtype=torch.float16, enabled=a.fp16):
        d = precond(net, y + n, sigma, labels, aug)
    w = ((sigma ** 2 + 0.25) / (sigma * 0.5) ** 2)[:, None, None, None]
    loss = (w * (d.float() - y) ** 2).sum() / b
    opt.zero_grad(set_to_none=True)
    scaler.scale(loss).backward()
    scaler.step(opt)
    scaler.update()
    return loss


def sync():
    if dev.type == "cuda":
        torch.cuda.synchronize()


for _ in range(a.warmup):
    step()
sync()
t = time.perf_counter()
for _ in range(a.steps):
    last = step()
last.item()
sync()
secs = time.perf_counter() - t
params = sum(v.numel() for v in net.p.values())
out = {"impl": f"torch {torch.__version__} ({a.device}{', fp16 autocast' if a.fp16 else ''})",
       "seconds": secs, "rate": a.steps * b / secs, "params": params}
if a.profile:
    import torch.profiler as tp

    t = time.perf_counter()
    with tp.profile(activities=[tp.ProfilerActivity.CPU]) as prof:
        for _ in range(a.steps):
            last = step()
        last.item()
    wall = time.perf_counter() - t
    rows = sorted(((e.key, e.self_cpu_time_total / 1e3 / a.steps, e.count / a.steps) for e in prof.key_averages()),
                  key=lambda r: -r[1])
    top = [{"op": k, "ms_per_step": ms, "calls_per_step": n} for k, ms, n in rows[:12]]
    # Self times of the listed operators; the rest of the (profiled) wall time is everything else.
    rest = 1e3 * wall / a.steps - sum(r["ms_per_step"] for r in top)
    out["profile"] = top + [{"op": "everything else (other ops, profiler, Python)", "ms_per_step": max(rest, 0.0)}]
out["peak_rss_mib"] = peak_rss_mib()
print(json.dumps(out))
