"""Parity fixture for TEMI (nodes/src/models/temi_heads.rs, nodes/src/kinds/cluster/temi.rs): loss and two optimiser steps of a tiny config.

    /path/to/python tests/parity/temi.py      # writes tests/parity/temi.safetensors

torch 2.15. Written from the TEMI paper and HHU-MMBS/TEMI-official-BMVC2023's semantics:
- each head: Linear(D, 16) → GELU → Linear(16, 16) → GELU → Linear(16, 8) → L2-normalise →
  weight-normalised Linear(8, C, bias=False) (g trainable, initialised to 1);
- student and teacher heads start equal; q_s = softmax(s / 0.1), q_t = softmax(t / 0.1);
- per head, the prior q̃ ← 0.9 q̃ + 0.1 · mean over the 2B teacher rows, before the loss;
- w = mean over heads of Σ_c q_t(c|x) q_t(c|x′) (no gradient);
- head loss = ½ Σ_{(v,w) ∈ {(x,x′),(x′,x)}} mean_b[w · −log Σ_c (q_s(c|v) q_t(c|w))^γ / q̃(c)];
  total = mean over heads; γ = 0.6;
- AdamW (β 0.9/0.999, ε 1e-8), decoupled weight decay 1e-4 on every ≥2-D parameter (weights,
  weight_v, weight_g of shape [C, 1]), none on biases; lr 1e-3; no warm-up, no frozen last layer;
- teacher ← 0.996 teacher + 0.004 student after each step.
Two steps on two different batches of (x, x′) pairs; everything is saved.
"""

import os

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from safetensors.numpy import save_file

from common import HERE

torch.manual_seed(0)
H, D, C, B = 2, 8, 5, 6
HID, BOT, GAMMA, TEMP = 16, 8, 0.6, 0.1
LR, WD, MOM, PMOM = 1e-3, 1e-4, 0.996, 0.9


class Head(nn.Module):
    def __init__(self):
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(D, HID), nn.GELU(), nn.Linear(HID, HID), nn.GELU(), nn.Linear(HID, BOT))
        for m in self.mlp:
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.2)  # larger than TEMI's 0.02 so the tiny case moves
                nn.init.normal_(m.bias, std=0.1)
        self.last_layer = nn.utils.parametrizations.weight_norm(nn.Linear(BOT, C, bias=False))
        with torch.no_grad():
            self.last_layer.parametrizations.weight.original0.fill_(1.0)  # g

    def forward(self, x):
        return self.last_layer(F.normalize(self.mlp(x), dim=-1))


student = nn.ModuleList([Head() for _ in range(H)])
teacher = nn.ModuleList([Head() for _ in range(H)])
teacher.load_state_dict(student.state_dict())
for p in teacher.parameters():
    p.requires_grad_(False)


def named(heads):
    out = {}
    for h, head in enumerate(heads):
        for i in (0, 2, 4):
            out[f"heads.{h}.mlp.{i}.weight"] = head.mlp[i].weight
            out[f"heads.{h}.mlp.{i}.bias"] = head.mlp[i].bias
        pw = head.last_layer.parametrizations.weight
        out[f"heads.{h}.last_layer.weight_g"] = pw.original0  # [C, 1]
        out[f"heads.{h}.last_layer.weight_v"] = pw.original1  # [C, BOT]
    return out


decay = [p for n, p in named(student).items() if not n.endswith(".bias")]
no_decay = [p for n, p in named(student).items() if n.endswith(".bias")]
opt = torch.optim.AdamW([{"params": decay, "weight_decay": WD}, {"params": no_decay, "weight_decay": 0.0}], lr=LR, betas=(0.9, 0.999), eps=1e-8)
prior = torch.full((H, C), 1.0 / C)

save = {f"init.{k}": v.detach().numpy().copy() for k, v in named(student).items()}
for step in range(2):
    x = torch.randn(B, D)
    xn = x + 0.3 * torch.randn(B, D)
    save[f"step{step}.x"] = x.numpy()
    save[f"step{step}.x_nn"] = xn.numpy()
    inp = torch.cat([x, xn])
    s_out = [hd(inp) for hd in student]
    with torch.no_grad():
        t_out = [hd(inp) for hd in teacher]
        weight = 0
        for h in range(H):
            pt = F.softmax(t_out[h] / TEMP, dim=-1)
            prior[h] = PMOM * prior[h] + (1 - PMOM) * pt.mean(0)
            t1, t2 = pt.chunk(2)
            weight = weight + (t1 * t2).sum(-1)
        weight = weight / H
    head_losses = []
    for h in range(H):
        ps = F.softmax(s_out[h] / TEMP, dim=-1).chunk(2)
        pt = F.softmax(t_out[h] / TEMP, dim=-1).chunk(2)
        tot = 0
        for w in range(2):
            for v in range(2):
                if v == w:
                    continue
                mi = -torch.log((((ps[v] * pt[w]) ** GAMMA) / prior[h]).sum(-1))
                tot = tot + (weight * mi).mean()
        head_losses.append(tot / 2)
    head_losses = torch.stack(head_losses)
    loss = head_losses.mean()
    opt.zero_grad()
    loss.backward()
    opt.step()
    with torch.no_grad():
        for ps_, pt_ in zip(student.parameters(), teacher.parameters()):
            pt_.mul_(MOM).add_((1 - MOM) * ps_)
    save[f"step{step}.loss"] = np.array([loss.item()], dtype=np.float32)
    save[f"step{step}.head_losses"] = head_losses.detach().numpy()
    save[f"step{step}.weight"] = weight.numpy()
    save[f"step{step}.prior"] = prior.numpy().copy()
    for k, v in named(student).items():
        save[f"step{step}.student.{k}"] = v.detach().numpy().copy()
    for k, v in named(teacher).items():
        save[f"step{step}.teacher.{k}"] = v.detach().numpy().copy()
    print(step, loss.item(), head_losses.tolist())

save = {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in save.items()}
save_file(save, os.path.join(HERE, "temi.safetensors"), metadata={"script": "tests/parity/temi.py", "torch": torch.__version__})
