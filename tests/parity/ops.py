"""Parity fixture for cedm's custom CPU operations (nodes/src/ops/, kernels in nodes/kernels/src/nn/).

    /path/to/python tests/parity/ops.py      # writes tests/parity/ops.safetensors

torch 2.15. Every operation with a hand-written backward pass, on random inputs of odd sizes
(and, for the convolution, shapes that reach each code path: the im2col product, images grouped
per product at small maps, oneDNN's per-chunk primitives, and large kernels that stay on im2col + GEMM):
the forward output and the gradient of sum(y * dy) with respect to every input, for a random dy.
The reference computes in float64 from the float32 inputs, so the Rust test measures its own f32
error. Semantics transcribed from what SongUNet and the TEMI heads compute:

- conv: F.conv2d, stride 1, padding k // 2, with bias.
- gn: F.silu(F.group_norm(x + shift[:, :, None, None], groups, gamma, beta, eps)) (shift and SiLU
  optional), as EDM's UNetBlock (norm0 → silu; norm1(x + affine(emb)) → silu).
- cat: torch.cat([a, b], 1); add_scale: (a + b) * s; up2: nearest 2x (EDM's [1,1] transposed
  resample filter); down2: 2x2 average (EDM's strided [1,1] filter).
- heads_shared: F.gelu(x @ W + b) split into heads (head-major); heads: F.gelu(x_h @ W_h + b_h);
  cosine: F.normalize(z, dim=-1) @ (g * v / ||v||_col) (DINO head's weight-normalised last layer).
- adam / adamw: torch.optim.Adam / torch.optim.AdamW, three steps from zero state.
- ema: p.lerp(ema, beta) (EDM's training loop).
"""

import os

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.numpy import save_file

from common import HERE

g = torch.Generator().manual_seed(15)
out = {}


def rand(*shape, scale=1.0, offset=0.0):
    return (torch.randn(*shape, generator=g) * scale + offset).float()


def put(name, t):
    out[name] = np.ascontiguousarray(t.detach().to(torch.float32).numpy())


def case(prefix, inputs, fn):
    """Store inputs, y = fn(*inputs) and the gradients of sum(y * dy) (computed in float64)."""
    leaves = [t.double().requires_grad_(True) for t in inputs.values()]
    y = fn(*leaves)
    dy = rand(*y.shape)
    (y * dy.double()).sum().backward()
    for (name, t), leaf in zip(inputs.items(), leaves):
        put(f"{prefix}.{name}", t)
        put(f"{prefix}.d{name}", leaf.grad)
    put(f"{prefix}.dy", dy)
    put(f"{prefix}.y", y)


# Convolutions: (n, cin, cout, h, w, k).
CONVS = [
    (3, 5, 7, 9, 7, 3),  # odd channels and a non-square map
    (2, 6, 4, 5, 5, 1),  # 1x1
    (1, 3, 2, 3, 3, 3),  # tiny: the plain im2col product
    (9, 8, 8, 4, 4, 3),  # small maps: images grouped per product
    (2, 96, 80, 5, 5, 3),  # cout*cin*9 >= 65536: a large kernel (im2col + GEMM even with oneDNN)
]
for i, (n, cin, cout, h, w, k) in enumerate(CONVS):
    fan = cin * k * k
    case(
        f"conv{i}",
        {"x": rand(n, cin, h, w), "w": rand(cout, cin, k, k, scale=fan**-0.5), "b": rand(cout)},
        lambda x, wt, b, k=k: F.conv2d(x, wt, b, padding=k // 2),
    )

# Group norms: (n, c, groups, h, w, eps, shift, silu).
GNS = [
    (3, 12, 3, 7, 5, 1e-6, True, True),
    (2, 20, 5, 3, 3, 1e-5, False, False),
    (1, 32, 8, 16, 16, 1e-6, True, True),
    (4, 8, 2, 1, 1, 1e-6, True, False),  # one pixel: the variance is mostly the shift's
]
for i, (n, c, groups, h, w, eps, shift, silu) in enumerate(GNS):
    inputs = {"x": rand(n, c, h, w, scale=2.0, offset=0.5), "gamma": rand(c, offset=1.0), "beta": rand(c)}
    if shift:
        inputs["shift"] = rand(n, c)

    def gn(x, gamma, beta, *s, groups=groups, eps=eps, silu=silu):
        if s:
            x = x + s[0][:, :, None, None]
        y = F.group_norm(x, groups, gamma, beta, eps)
        return F.silu(y) if silu else y

    case(f"gn{i}", inputs, gn)

# Layout operations.
case("cat", {"a": rand(2, 3, 5, 7), "b": rand(2, 4, 5, 7)}, lambda a, b: torch.cat([a, b], 1))
case("add_scale", {"a": rand(2, 3, 5, 7), "b": rand(2, 3, 5, 7)}, lambda a, b: (a + b) * 0.5**0.5)
case("up2", {"x": rand(2, 3, 5, 7)}, lambda x: F.interpolate(x, scale_factor=2, mode="nearest"))
case("down2", {"x": rand(2, 3, 6, 10)}, lambda x: F.avg_pool2d(x, 2))

# TEMI head layers.
H = 3
case(
    "heads_shared",
    {"x": rand(7, 5), "w": rand(1, 5, H * 6, scale=0.5), "b": rand(1, 1, H * 6)},
    lambda x, w, b: F.gelu(x @ w[0] + b[0]).reshape(7, H, 6).transpose(0, 1),
)
for gelu in (True, False):
    case(
        f"heads_{'gelu' if gelu else 'plain'}",
        {"x": rand(H, 7, 6), "w": rand(H, 6, 4, scale=0.5), "b": rand(H, 1, 4)},
        lambda x, w, b, gelu=gelu: F.gelu(x @ w + b) if gelu else x @ w + b,
    )
case(
    "cosine",
    {"z": rand(H, 7, 4), "v": rand(H, 4, 5), "g": rand(H, 1, 5, offset=1.0)},
    lambda z, v, gg: F.normalize(z, dim=-1) @ (gg * v / v.norm(dim=1, keepdim=True)),
)

# Optimiser updates: three steps from zero state.
for name, opt, kw in [
    ("adam", torch.optim.Adam, dict(lr=1e-3, betas=(0.9, 0.999), eps=1e-8)),
    ("adamw", torch.optim.AdamW, dict(lr=1e-2, betas=(0.9, 0.95), eps=1e-8, weight_decay=0.05)),
]:
    p0 = rand(3, 37)
    p = torch.nn.Parameter(p0.double().clone())
    o = opt([p], **kw)
    put(f"{name}.p0", p0)
    for step in range(1, 4):
        grad = rand(3, 37, scale=10.0**-step)
        put(f"{name}.g{step}", grad)
        p.grad = grad.double()
        o.step()
        st = o.state[p]
        put(f"{name}.p{step}", p)
        put(f"{name}.m{step}", st["exp_avg"])
        put(f"{name}.v{step}", st["exp_avg_sq"])

e, p = rand(3, 37), rand(3, 37)
put("ema.e", e)
put("ema.p", p)
put("ema.y", p.double().lerp(e.double(), 0.99))

save_file(out, os.path.join(HERE, "ops.safetensors"), metadata={"torch": torch.__version__})
print(f"wrote {len(out)} tensors to tests/parity/ops.safetensors")
