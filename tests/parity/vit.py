"""Parity fixtures for the DINO / DINOv2 ViT (nodes/src/models/vit.rs).

    /path/to/python tests/parity/vit.py      # writes tests/parity/vit_*.safetensors

torch 2.15, timm 1.0. No DINO weights exist on these machines, so tiny random-weight networks are
built with the official architectures' semantics:
- DINO (facebookresearch/dino, vision_transformer.py): patch embedding, CLS token, learned
  position embedding interpolated bicubically with `scale_factor=(w0 + 0.1) / sqrt(N)` for other
  sizes, pre-norm blocks (LayerNorm eps 1e-6, qkv with bias, exact GELU MLP), final norm, CLS.
- DINOv2 (facebookresearch/dinov2, models/vision_transformer.py): the same plus LayerScale
  (`ls1.gamma`, `ls2.gamma`), optional register tokens inserted after the CLS token (after the
  position embedding), optional SwiGLU FFN (`mlp.w12`, `mlp.w3`, ViT-g/14), position embedding
  interpolated with `scale_factor=(w0 + 0.1) / M`, antialias off.
The reference forward below is written from those semantics and cross-checked against timm's
VisionTransformer (same weights, native size, where timm has the same architecture). Weights are
saved under the official checkpoint key names; expected CLS features at the native size and at a
size that needs position-embedding interpolation.
"""

import math
import os

import numpy as np
import timm
import torch
import torch.nn.functional as F
from safetensors.numpy import save_file

from common import HERE


def init_weights(cfg, seed):
    g = torch.Generator().manual_seed(seed)
    d, p = cfg["dim"], cfg["patch"]
    hidden = int(d * cfg["mlp_ratio"])
    r = lambda *s: torch.randn(*s, generator=g) * 0.2
    w = {
        "patch_embed.proj.weight": r(d, 3, p, p),
        "patch_embed.proj.bias": r(d),
        "cls_token": r(1, 1, d),
        "pos_embed": r(1, 1 + cfg["grid"] ** 2, d),
        "norm.weight": 1 + r(d),
        "norm.bias": r(d),
    }
    if cfg["registers"]:
        w["register_tokens"] = r(1, cfg["registers"], d)
    if cfg["dinov2"]:
        w["mask_token"] = r(1, d)  # present in DINOv2 checkpoints, unused at inference
    for i in range(cfg["depth"]):
        b = f"blocks.{i}."
        w.update({
            b + "norm1.weight": 1 + r(d), b + "norm1.bias": r(d),
            b + "attn.qkv.weight": r(3 * d, d), b + "attn.qkv.bias": r(3 * d),
            b + "attn.proj.weight": r(d, d), b + "attn.proj.bias": r(d),
            b + "norm2.weight": 1 + r(d), b + "norm2.bias": r(d),
        })
        if cfg["swiglu"]:
            sh = (int(hidden * 2 / 3) + 7) // 8 * 8
            w.update({b + "mlp.w12.weight": r(2 * sh, d), b + "mlp.w12.bias": r(2 * sh),
                      b + "mlp.w3.weight": r(d, sh), b + "mlp.w3.bias": r(d)})
        else:
            w.update({b + "mlp.fc1.weight": r(hidden, d), b + "mlp.fc1.bias": r(hidden),
                      b + "mlp.fc2.weight": r(d, hidden), b + "mlp.fc2.bias": r(d)})
        if cfg["dinov2"]:
            w.update({b + "ls1.gamma": r(d), b + "ls2.gamma": r(d)})
    return w


def pos_embed_for(w, cfg, gh, gw):
    pe = w["pos_embed"]
    n = pe.shape[1] - 1
    m = int(math.sqrt(n))
    if gh == m and gw == m:
        return pe
    cls, patch = pe[:, :1], pe[:, 1:]
    d = pe.shape[-1]
    patch = patch.reshape(1, m, m, d).permute(0, 3, 1, 2)
    # Both DINO and DINOv2 pass scale_factor = (grid + 0.1) / M (DINOv2: interpolate_offset 0.1,
    # antialias off), which fixes the output size to `grid` and the sampling positions to 1/scale.
    patch = F.interpolate(patch, scale_factor=((gh + 0.1) / m, (gw + 0.1) / m), mode="bicubic")
    assert patch.shape[-2:] == (gh, gw)
    patch = patch.permute(0, 2, 3, 1).reshape(1, gh * gw, d)
    return torch.cat([cls, patch], dim=1)


def reference(w, cfg, x):
    d, heads = cfg["dim"], cfg["heads"]
    p = cfg["patch"]
    b, _, h, wd = x.shape
    t = F.conv2d(x, w["patch_embed.proj.weight"], w["patch_embed.proj.bias"], stride=p)
    gh, gw = t.shape[-2:]
    t = t.flatten(2).transpose(1, 2)
    t = torch.cat([w["cls_token"].expand(b, -1, -1), t], dim=1)
    t = t + pos_embed_for(w, cfg, gh, gw)
    if cfg["registers"]:
        t = torch.cat([t[:, :1], w["register_tokens"].expand(b, -1, -1), t[:, 1:]], dim=1)
    for i in range(cfg["depth"]):
        pre = f"blocks.{i}."
        y = F.layer_norm(t, (d,), w[pre + "norm1.weight"], w[pre + "norm1.bias"], eps=1e-6)
        qkv = F.linear(y, w[pre + "attn.qkv.weight"], w[pre + "attn.qkv.bias"])
        n = t.shape[1]
        qkv = qkv.reshape(b, n, 3, heads, d // heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]
        a = ((q * (d // heads) ** -0.5) @ k.transpose(-2, -1)).softmax(dim=-1)
        y = (a @ v).transpose(1, 2).reshape(b, n, d)
        y = F.linear(y, w[pre + "attn.proj.weight"], w[pre + "attn.proj.bias"])
        if cfg["dinov2"]:
            y = y * w[pre + "ls1.gamma"]
        t = t + y
        y = F.layer_norm(t, (d,), w[pre + "norm2.weight"], w[pre + "norm2.bias"], eps=1e-6)
        if cfg["swiglu"]:
            x12 = F.linear(y, w[pre + "mlp.w12.weight"], w[pre + "mlp.w12.bias"])
            x1, x2 = x12.chunk(2, dim=-1)
            y = F.linear(F.silu(x1) * x2, w[pre + "mlp.w3.weight"], w[pre + "mlp.w3.bias"])
        else:
            y = F.linear(F.gelu(F.linear(y, w[pre + "mlp.fc1.weight"], w[pre + "mlp.fc1.bias"])),
                         w[pre + "mlp.fc2.weight"], w[pre + "mlp.fc2.bias"])
        if cfg["dinov2"]:
            y = y * w[pre + "ls2.gamma"]
        t = t + y
    t = F.layer_norm(t, (d,), w["norm.weight"], w["norm.bias"], eps=1e-6)
    return t[:, 0]


def timm_check(w, cfg, x):
    """timm's VisionTransformer with the same weights must agree at the native size."""
    kwargs = dict(img_size=cfg["patch"] * cfg["grid"], patch_size=cfg["patch"], embed_dim=cfg["dim"],
                  depth=cfg["depth"], num_heads=cfg["heads"], mlp_ratio=cfg["mlp_ratio"], num_classes=0,
                  global_pool="token", qkv_bias=True, norm_layer=lambda dd, **kw: torch.nn.LayerNorm(dd, eps=1e-6, **kw),
                  reg_tokens=cfg["registers"], no_embed_class=False)
    if cfg["dinov2"]:
        kwargs["init_values"] = 1e-5
    if cfg["swiglu"]:
        return  # timm's SwiGLU packs weights differently; the reference is checked without it
    m = timm.models.vision_transformer.VisionTransformer(**kwargs).eval()
    sd = {k: v for k, v in w.items() if k not in ("mask_token", "register_tokens")}
    if cfg["registers"]:
        sd["reg_token"] = w["register_tokens"]
    missing, unexpected = m.load_state_dict(sd, strict=False)
    assert not unexpected and all("reg_token" in k for k in missing), (missing, unexpected)
    if cfg["registers"]:
        # timm adds the position embedding to CLS+patches and places registers before them
        # (same values as DINOv2's order for the CLS output up to token order in attention).
        pass
    with torch.no_grad():
        got = m(x)
    ref = reference(w, cfg, x)
    assert torch.allclose(got, ref, atol=1e-5), (got - ref).abs().max()


CONFIGS = {
    "vit_dino_tiny": dict(patch=8, dim=32, depth=2, heads=4, mlp_ratio=4.0, grid=4, registers=0, dinov2=False, swiglu=False, sizes=(32, 40)),
    "vit_dinov2_tiny": dict(patch=7, dim=32, depth=2, heads=4, mlp_ratio=4.0, grid=6, registers=0, dinov2=True, swiglu=False, sizes=(42, 28)),
    "vit_dinov2_tiny_reg_swiglu": dict(patch=7, dim=48, depth=2, heads=4, mlp_ratio=4.0, grid=5, registers=2, dinov2=True, swiglu=True, sizes=(35, 21)),
}

def main():
    for i, (name, cfg) in enumerate(CONFIGS.items()):
        w = init_weights(cfg, seed=100 + i)
        g = torch.Generator().manual_seed(7 + i)
        out = {k: v.numpy().astype(np.float32) for k, v in w.items()}
        for s in cfg["sizes"]:
            x = torch.randn(2, 3, s, s, generator=g)
            with torch.no_grad():
                y = reference(w, cfg, x)
                if s == cfg["patch"] * cfg["grid"] and not cfg["registers"]:
                    timm_check(w, cfg, x)
            out[f"input_{s}"] = x.numpy().astype(np.float32)
            out[f"cls_{s}"] = y.numpy().astype(np.float32)
        meta = {k: str(v) for k, v in cfg.items()}
        meta["script"] = "tests/parity/vit.py"
        meta["torch"] = torch.__version__
        save_file(out, os.path.join(HERE, f"{name}.safetensors"), metadata=meta)
        print(name, {k: v.shape for k, v in out.items() if k.startswith("cls")})


if __name__ == "__main__":
    main()
