"""Reference TEMI training step in PyTorch CPU with the same heads (what `cedm bench temi`
compares against): H DINOHead-style heads in a ModuleList as the TEMI code builds them, student
and teacher, the TEMI loss (gamma 0.6), AdamW, teacher EMA. Prints one JSON line with seconds per
step and per epoch of N items.

    python benches/temi.py --heads 50 --batch 512 --dim 1280 --clusters 100 --items 60000 --steps 5
"""
import argparse
import json
import os
import time

import torch
import torch.nn as nn
import torch.nn.functional as F


def peak_rss_mib():
    """This process's peak RSS (VmHWM; getrusage would include the parent's at exec)."""
    with open("/proc/self/status") as f:
        return next(float(l.split()[1]) / 1024 for l in f if l.startswith("VmHWM:"))

p = argparse.ArgumentParser()
p.add_argument("--heads", type=int, default=50)
p.add_argument("--batch", type=int, default=512)
p.add_argument("--dim", type=int, default=1280)
p.add_argument("--clusters", type=int, default=100)
p.add_argument("--items", type=int, default=60000)
p.add_argument("--steps", type=int, default=5)
p.add_argument("--nlayers", type=int, default=2)  # TEMI's --nlayers: D→512→256
p.add_argument("--threads", type=int, default=os.cpu_count())
a = p.parse_args()
torch.set_num_threads(a.threads)
torch.manual_seed(0)


def head():
    layers = [nn.Linear(a.dim, 512), nn.GELU()]
    for _ in range(a.nlayers - 2):
        layers += [nn.Linear(512, 512), nn.GELU()]
    layers += [nn.Linear(512, 256)]
    mlp = nn.Sequential(*layers)
    last = nn.utils.parametrizations.weight_norm(nn.Linear(256, a.clusters, bias=False))
    return nn.ModuleDict({"mlp": mlp, "last": last})


def fwd(h, x):
    return h["last"](F.normalize(h["mlp"](x), dim=-1))


student = nn.ModuleList([head() for _ in range(a.heads)])
teacher = nn.ModuleList([head() for _ in range(a.heads)])
teacher.load_state_dict(student.state_dict())
for q in teacher.parameters():
    q.requires_grad_(False)
opt = torch.optim.AdamW(student.parameters(), lr=2e-4, weight_decay=1e-4)
prior = torch.full((a.heads, a.clusters), 1.0 / a.clusters)
x = torch.randn(a.batch, a.dim)
xn = x + 0.1 * torch.randn(a.batch, a.dim)
inp = torch.cat([x, xn])


def step():
    s_out = [fwd(h, inp) for h in student]
    with torch.no_grad():
        t_out = [fwd(h, inp) for h in teacher]
        w = 0
        for i in range(a.heads):
            pt = F.softmax(t_out[i] / 0.1, -1)
            prior[i] = 0.9 * prior[i] + 0.1 * pt.mean(0)
            t1, t2 = pt.chunk(2)
            w = w + (t1 * t2).sum(-1)
        w = w / a.heads
    losses = []
    for i in range(a.heads):
        ps = F.softmax(s_out[i] / 0.1, -1).chunk(2)
        pt = F.softmax(t_out[i] / 0.1, -1).chunk(2)
        l = 0
        for (v, u) in [(0, 1), (1, 0)]:
            l = l + (w * -torch.log((((ps[v] * pt[u]) ** 0.6) / prior[i]).sum(-1))).mean()
        losses.append(l / 2)
    loss = torch.stack(losses).mean()
    opt.zero_grad()
    loss.backward()
    opt.step()
    with torch.no_grad():
        for ps_, pt_ in zip(student.parameters(), teacher.parameters()):
            pt_.mul_(0.996).add_(0.004 * ps_)


step()
t = time.perf_counter()
for _ in range(a.steps):
    step()
s = (time.perf_counter() - t) / a.steps
print(json.dumps({"peak_rss_mib": peak_rss_mib(), "impl": f"torch {torch.__version__}", "seconds_per_step": s, "seconds": s * (a.items // a.batch), "steps_per_epoch": a.items // a.batch}))
