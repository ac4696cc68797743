"""Parity fixture for the probe's CNN (nodes/src/models/classifier.rs, `metrics/classifier`).

    /path/to/python tests/parity/classifier.py      # writes tests/parity/classifier.safetensors

torch 2.15. The network in torch.nn as the Rust module documents it (3×3 convolutions padded by 1,
ReLU, 2×2 max-pools flooring odd sides, a hidden linear layer with an explicit dropout mask,
mean cross-entropy), at two shapes:
- `a`: 1×16×16 images (the quickstart's), 4 filters, 8 hidden, 10 classes, batch 5: logits
  without dropout, the loss and every parameter's gradient with a dropout mask, then three
  torch.optim.Adam steps (lr 1e-3, each on its own batch and mask): the losses and the
  parameters after;
- `b`: 3×13×18 images (odd sides: pools floor 13→6→3, 18→9→4), 3 filters, 6 hidden, 4 classes,
  batch 3: logits, loss and gradients.
Parameters are stored under their torch names and layouts (`a.c1.weight` …).
"""

import os

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from safetensors.numpy import save_file

HERE = os.path.dirname(os.path.abspath(__file__))


class Net(nn.Module):
    def __init__(self, c, h, w, f, hidden, classes):
        super().__init__()
        self.c1 = nn.Conv2d(c, f, 3, padding=1)
        self.c2 = nn.Conv2d(f, f, 3, padding=1)
        self.c3 = nn.Conv2d(f, 2 * f, 3, padding=1)
        self.f1 = nn.Linear(2 * f * (h // 4) * (w // 4), hidden)
        self.f2 = nn.Linear(hidden, classes)

    def forward(self, x, keep=None):
        x = F.relu(self.c1(x))
        x = F.max_pool2d(F.relu(self.c2(x)), 2)
        x = F.max_pool2d(F.relu(self.c3(x)), 2)
        x = F.relu(self.f1(x.flatten(1)))
        if keep is not None:
            x = x * keep
        return self.f2(x)


def batch(g, n, c, h, w, hidden, classes, p=0.3):
    x = torch.rand(n, c, h, w, generator=g) * 2 - 1
    y = torch.randint(0, classes, (n,), generator=g)
    keep = (torch.rand(n, hidden, generator=g) >= p).float() / (1 - p)
    return x, y, keep


def case(prefix, seed, c, h, w, f, hidden, classes, n, steps):
    torch.manual_seed(seed)
    g = torch.Generator().manual_seed(seed + 1)
    net = Net(c, h, w, f, hidden, classes)
    out = {f"{prefix}.config": np.array([c, h, w, f, hidden, classes, n], dtype=np.int64)}
    for k, v in net.state_dict().items():
        out[f"{prefix}.{k}"] = v.numpy().copy()
    x, y, keep = batch(g, n, c, h, w, hidden, classes)
    with torch.no_grad():
        out[f"{prefix}.logits"] = net(x).numpy()
    loss = F.cross_entropy(net(x, keep), y)
    loss.backward()
    out.update({f"{prefix}.x": x.numpy(), f"{prefix}.y": y.numpy().astype(np.int64),
                f"{prefix}.keep": keep.numpy(), f"{prefix}.loss": np.array([loss.item()], dtype=np.float32)})
    for k, p in net.named_parameters():
        out[f"{prefix}.grad.{k}"] = p.grad.numpy().copy()
    if steps:
        opt = torch.optim.Adam(net.parameters(), lr=1e-3)
        losses = []
        for s in range(steps):
            x, y, keep = batch(g, n, c, h, w, hidden, classes)
            out.update({f"{prefix}.step{s}.x": x.numpy(), f"{prefix}.step{s}.y": y.numpy().astype(np.int64),
                        f"{prefix}.step{s}.keep": keep.numpy()})
            opt.zero_grad()
            loss = F.cross_entropy(net(x, keep), y)
            loss.backward()
            opt.step()
            losses.append(loss.item())
        out[f"{prefix}.step_losses"] = np.array(losses, dtype=np.float32)
        for k, v in net.state_dict().items():
            out[f"{prefix}.after.{k}"] = v.numpy().copy()
    return out


def main():
    out = {}
    out.update(case("a", 0, 1, 16, 16, 4, 8, 10, 5, 3))
    out.update(case("b", 7, 3, 13, 18, 3, 6, 4, 3, 0))
    save_file({k: np.ascontiguousarray(v) for k, v in out.items()}, os.path.join(HERE, "classifier.safetensors"),
              metadata={"torch": torch.__version__})
    print("wrote classifier.safetensors")


if __name__ == "__main__":
    main()
