"""Parity fixtures for the iBOT and MoCo-v3 ViT presets of `features/vit`: their official
checkpoint layouts, as tiny random-weight `.pth` files, and the CLS features they must give.

    /path/to/python tests/parity/vit_checkpoints.py   # writes tests/parity/vit_{ibot,mocov3}_tiny.*

torch 2.15, timm 1.0. No iBOT or MoCo-v3 weights exist on these machines. Both are DINO's ViT
(no LayerScale, LayerNorm eps 1e-6, qkv with bias, CLS after the final norm), so the forward is
`vit.reference` (cross-checked against timm there); what differs is the file:
- iBOT (bytedance/ibot): `checkpoint_teacher.pth` as extract_backbone_weights.py:27-41 writes it,
  `{'state_dict': {backbone keys without prefix}}`, here with a stray `head.*` as some copies have;
  ViT-L/16 has no LayerScale (models/vision_transformer.py:100-104, init_values=0 at :139).
- MoCo-v3 (facebookresearch/moco-v3): `vit-b-300ep.pth.tar` as main_moco.py:310-316 writes it,
  `{'epoch', 'arch', 'state_dict'}` with the DDP-wrapped model's `module.base_encoder.*`,
  `module.momentum_encoder.*` (each with its projector `head.*`, BatchNorm running stats
  included) and `module.predictor.*` (moco/builder.py:27-52). TEMI loads the **momentum**
  encoder (TEMI-official-BMVC2023 model_builders/model_builders.py:128-129: it strips `module.`
  and `momentum_encoder.`, loads with strict=False); MoCo-v3's own main_lincls.py:177-185 the
  base encoder. The two encoders get different weights so that the test sees which was loaded.
"""

import os

import numpy as np
import torch
from safetensors.numpy import save_file

from common import HERE
from vit import init_weights, reference, timm_check


def projector(g, d):
    r = lambda *s: torch.randn(*s, generator=g)
    return {
        "head.0.weight": r(16, d), "head.1.weight": r(16), "head.1.bias": r(16),
        "head.1.running_mean": r(16), "head.1.running_var": r(16).abs(),
        "head.1.num_batches_tracked": torch.tensor(7),
        "head.3.weight": r(8, 16),
    }


CFG = dict(patch=8, dim=32, depth=2, heads=4, mlp_ratio=4.0, grid=4, registers=0, dinov2=False, swiglu=False)
SIZES = (32, 40)


def fixture(name, feats, ckpt, meta):
    torch.save(ckpt, os.path.join(HERE, f"{name}.pth"))
    g = torch.Generator().manual_seed(3)
    out = {}
    for s in SIZES:
        x = torch.randn(2, 3, s, s, generator=g)
        out[f"input_{s}"] = x.numpy().astype(np.float32)
        for tag, w in feats.items():
            with torch.no_grad():
                if s == CFG["patch"] * CFG["grid"]:
                    timm_check(w, CFG, x)
                out[f"cls_{tag}_{s}"] = reference(w, CFG, x).numpy().astype(np.float32)
    meta = dict(meta, script="tests/parity/vit_checkpoints.py", torch=torch.__version__)
    meta.update({k: str(v) for k, v in CFG.items()})
    save_file(out, os.path.join(HERE, f"{name}.safetensors"), metadata=meta)
    print(name, sorted(out))


def main():
    g = torch.Generator().manual_seed(11)
    ibot = init_weights(CFG, seed=201)
    sd = dict(ibot)
    sd.update({"head.mlp.0.weight": torch.randn(16, CFG["dim"], generator=g), "head.last_layer.weight_g": torch.ones(8, 1)})
    fixture("vit_ibot_tiny", {"teacher": ibot}, {"state_dict": sd}, {"layout": "ibot checkpoint_teacher.pth"})

    base, momentum = init_weights(CFG, seed=301), init_weights(CFG, seed=302)
    sd = {}
    for enc, w in (("base_encoder", base), ("momentum_encoder", momentum)):
        for k, v in {**w, **projector(g, CFG["dim"])}.items():
            sd[f"module.{enc}.{k}"] = v
    sd["module.predictor.0.weight"] = torch.randn(16, 8, generator=g)
    ckpt = {"epoch": 300, "arch": "vit_base", "state_dict": sd}
    fixture("vit_mocov3_tiny", {"momentum": momentum, "base": base}, ckpt, {"layout": "moco-v3 vit-b-300ep.pth.tar"})


if __name__ == "__main__":
    main()
