"""Parity fixture for TEMI (nodes/src/models/temi_heads.rs, nodes/src/kinds/cluster/temi.rs): the
loss and six optimiser steps of a tiny config over three epochs, with every schedule moving.

    /path/to/python tests/parity/temi.py      # writes tests/parity/temi.safetensors

torch 2.15. A transcription of HHU-MMBS/TEMI-official-BMVC2023 (commit of the mirror used by
docs/reproducing.md):
- the head is `model_builders/multi_head.py` DINOHead with `nlayers=2` (main_args.py:119, the
  default): Linear(D, hidden) → GELU → Linear(hidden, bottleneck) → L2-normalise →
  weight-normalised Linear(bottleneck, C, bias=False), g filled with 1 and trainable
  (`norm_last_layer=False`, main_args.py:114); student and teacher start equal;
- q_s = softmax(s / student_temp) (losses/mi.py:25, 0.1), q_t = softmax(t / teacher_temp[epoch])
  with the teacher temperature warm-up of losses/mi.py:30-33 (linspace over
  warmup_teacher_temp_epochs, then constant);
- per head, the prior pk ← m·pk + (1−m)·mean over the 2B teacher rows, before the loss
  (losses/multihead_losses.py:79, probs_momentum 0.9);
- w = mean over heads of Σ_c q_t(c|x) q_t(c|x′) (no gradient), head loss as
  MultiHeadWeightProbBase.forward (losses/multihead_losses.py:47-71) with beta_mi
  (losses/loss_utils.py:8); total = mean over heads;
- AdamW with utils.get_params_groups (utils.py:595: no decay on biases and 1-D params; weight_g
  [C, 1] is 2-D and decays); per iteration, lr ← lr_schedule[it] on both groups and
  weight_decay ← wd_schedule[it] on the first (train_main.py:262-265); the schedules are
  utils.cosine_scheduler (utils.py:159) as train_main.py:177-191 builds them: lr with linear
  warm-up and the batch/256 scaling, wd from weight_decay to weight_decay_end, teacher momentum
  from momentum_teacher to max_momentum_teacher;
- last-layer gradients dropped during the first freeze_last_layer epochs (utils.py:115);
- teacher ← m·teacher + (1−m)·student after each step with m = momentum_schedule[it]
  (train_main.py:304).
The values below are chosen so that every schedule moves within six steps (they are not TEMI's
defaults); the init uses a larger std than TEMI's 0.02 so that the tiny case moves.
"""

import math
import os

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from safetensors.numpy import save_file

from common import HERE

torch.manual_seed(0)
H, D, C, B = 2, 8, 5, 6
HID, BOT, GAMMA = 16, 8, 0.6
EPOCHS, ITERS = 3, 2
CFG = dict(
    lr=4e-3, min_lr=1e-3, warmup_epochs=1, weight_decay=1e-3, weight_decay_end=1e-2,
    momentum_teacher=0.99, max_momentum_teacher=1.0, student_temp=0.1, teacher_temp=0.1,
    warmup_teacher_temp=0.04, warmup_teacher_temp_epochs=2, prior_momentum=0.9,
    freeze_last_layer=1,
)


def cosine_scheduler(base_value, final_value, epochs, niter_per_ep, warmup_epochs=0, start_warmup_value=0):
    # utils.py:159-170
    warmup_schedule = np.array([])
    warmup_iters = warmup_epochs * niter_per_ep
    if warmup_epochs > 0:
        warmup_schedule = np.linspace(start_warmup_value, base_value, warmup_iters)
    iters = np.arange(epochs * niter_per_ep - warmup_iters)
    schedule = final_value + 0.5 * (base_value - final_value) * (1 + np.cos(np.pi * iters / len(iters)))
    return np.concatenate((warmup_schedule, schedule))


class Head(nn.Module):
    def __init__(self):
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(D, HID), nn.GELU(), nn.Linear(HID, BOT))
        for m in self.mlp:
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.2)
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
        for i in (0, 2):
            out[f"heads.{h}.mlp.{i}.weight"] = head.mlp[i].weight
            out[f"heads.{h}.mlp.{i}.bias"] = head.mlp[i].bias
        pw = head.last_layer.parametrizations.weight
        out[f"heads.{h}.last_layer.weight_g"] = pw.original0  # [C, 1]
        out[f"heads.{h}.last_layer.weight_v"] = pw.original1  # [C, BOT]
    return out


decay = [p for n, p in named(student).items() if not n.endswith(".bias")]
no_decay = [p for n, p in named(student).items() if n.endswith(".bias")]
opt = torch.optim.AdamW([{"params": decay}, {"params": no_decay, "weight_decay": 0.0}], betas=(0.9, 0.999), eps=1e-8)
bs_factor = B / 256.0
lr_schedule = cosine_scheduler(CFG["lr"] * bs_factor, CFG["min_lr"] * bs_factor, EPOCHS, ITERS, warmup_epochs=CFG["warmup_epochs"])
wd_schedule = cosine_scheduler(CFG["weight_decay"], CFG["weight_decay_end"], EPOCHS, ITERS)
momentum_schedule = cosine_scheduler(CFG["momentum_teacher"], CFG["max_momentum_teacher"], EPOCHS, ITERS)
W = CFG["warmup_teacher_temp_epochs"]
teacher_temp_schedule = np.concatenate((
    np.linspace(CFG["warmup_teacher_temp"], CFG["teacher_temp"], W),
    np.ones(EPOCHS - W) * CFG["teacher_temp"],
))
prior = torch.full((H, C), 1.0 / C)

save = {f"init.{k}": v.detach().numpy().copy() for k, v in named(student).items()}
step = 0
for epoch in range(EPOCHS):
    for it_in in range(ITERS):
        it = epoch * ITERS + it_in
        for i, g in enumerate(opt.param_groups):
            g["lr"] = lr_schedule[it]
            if i == 0:
                g["weight_decay"] = wd_schedule[it]
        ttemp = teacher_temp_schedule[epoch]
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
                pt = F.softmax(t_out[h] / ttemp, dim=-1)
                prior[h] = CFG["prior_momentum"] * prior[h] + (1 - CFG["prior_momentum"]) * pt.mean(0)
                t1, t2 = pt.chunk(2)
                weight = weight + (t1 * t2).sum(-1)
            weight = weight / H
        head_losses = []
        for h in range(H):
            ps = F.softmax(s_out[h] / CFG["student_temp"], dim=-1).chunk(2)
            pt = F.softmax(t_out[h] / ttemp, dim=-1).chunk(2)
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
        if epoch < CFG["freeze_last_layer"]:
            for n, p in named(student).items():
                if "last_layer" in n:
                    p.grad = None
        opt.step()
        with torch.no_grad():
            m = momentum_schedule[it]
            for ps_, pt_ in zip(student.parameters(), teacher.parameters()):
                pt_.mul_(m).add_((1 - m) * ps_.detach())
        save[f"step{step}.loss"] = np.array([loss.item()], dtype=np.float32)
        save[f"step{step}.head_losses"] = head_losses.detach().numpy()
        save[f"step{step}.weight"] = weight.numpy()
        save[f"step{step}.prior"] = prior.numpy().copy()
        save[f"step{step}.schedule"] = np.array([lr_schedule[it], wd_schedule[it], momentum_schedule[it], ttemp], dtype=np.float64)
        for k, v in named(student).items():
            save[f"step{step}.student.{k}"] = v.detach().numpy().copy()
        for k, v in named(teacher).items():
            save[f"step{step}.teacher.{k}"] = v.detach().numpy().copy()
        print(step, loss.item(), head_losses.tolist(), save[f"step{step}.schedule"].tolist())
        step += 1

save = {k: np.ascontiguousarray(v, dtype=np.float64 if k.endswith(".schedule") else np.float32) for k, v in save.items()}
meta = {"script": "tests/parity/temi.py", "torch": torch.__version__, "epochs": str(EPOCHS), "iters": str(ITERS), "batch": str(B)}
meta.update({k: repr(v) for k, v in CFG.items()})
save_file(save, os.path.join(HERE, "temi.safetensors"), metadata=meta)
