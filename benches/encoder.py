"""Reference throughput of a transformer encoder in PyTorch CPU (what `cedm bench encoder`
compares against): a DINO / DINOv2 / iBOT / MoCo-v3 ViT preset as timm builds the same
architecture (random weights: DINOv2 checkpoints cannot be fetched here, and the arithmetic does
not depend on the values), or OpenCLIP's image tower (`clip:MODEL`, open_clip). Prints one JSON
line.

    python benches/encoder.py --model dinov2_vitl14 --resolution 224 --batch 16 --images 32
    python benches/encoder.py --model clip:ViT-B-32 --export random.safetensors   # weights for cedm
    python benches/encoder.py --model clip:ViT-B-32 --weights random.safetensors --batch 16
"""
import argparse
import json
import os
import time

import torch

# cedm's ViT presets (nodes/src/models/vit.rs) → the timm model with the same architecture.
TIMM = {
    "dino_vits16": "vit_small_patch16_224", "dino_vitb16": "vit_base_patch16_224",
    "dino_vits8": "vit_small_patch8_224", "dino_vitb8": "vit_base_patch8_224",
    "dinov2_vits14": "vit_small_patch14_dinov2", "dinov2_vitb14": "vit_base_patch14_dinov2",
    "dinov2_vitl14": "vit_large_patch14_dinov2", "dinov2_vitg14": "vit_giant_patch14_dinov2",
    "dinov2_vits14_reg": "vit_small_patch14_reg4_dinov2", "dinov2_vitb14_reg": "vit_base_patch14_reg4_dinov2",
    "dinov2_vitl14_reg": "vit_large_patch14_reg4_dinov2", "dinov2_vitg14_reg": "vit_giant_patch14_reg4_dinov2",
    "ibot_vitb16": "vit_base_patch16_224", "ibot_vitl16": "vit_large_patch16_224",
    "mocov3_vits16": "vit_small_patch16_224", "mocov3_vitb16": "vit_base_patch16_224",
}


def peak_rss_mib():
    """This process's peak RSS (VmHWM; getrusage would include the parent's at exec)."""
    with open("/proc/self/status") as f:
        return next(float(l.split()[1]) / 1024 for l in f if l.startswith("VmHWM:"))


p = argparse.ArgumentParser()
p.add_argument("--model", default="dinov2_vitl14")
p.add_argument("--resolution", type=int, default=224)
p.add_argument("--batch", type=int, default=16)
p.add_argument("--images", type=int, default=32)
p.add_argument("--threads", type=int, default=os.cpu_count())
p.add_argument("--weights", default=None, help="CLIP: a safetensors state dict")
p.add_argument("--export", default=None, help="CLIP: write a random model's state dict here and exit")
a = p.parse_args()
torch.set_num_threads(a.threads)
torch.manual_seed(0)

if a.model.startswith("clip:"):
    import open_clip
    from safetensors.torch import load_file, save_file

    m = open_clip.create_model(a.model[len("clip:"):], pretrained=None)
    if a.export:
        save_file({k: v.contiguous() for k, v in m.state_dict().items()}, a.export)
        print(json.dumps({"exported": a.export}))
        raise SystemExit
    if a.weights:
        m.load_state_dict(load_file(a.weights))
    side = m.visual.image_size
    side = side[0] if isinstance(side, (tuple, list)) else side
    run = m.encode_image
    impl = f"open_clip {open_clip.__version__}, torch {torch.__version__}"
else:
    import timm

    m = timm.create_model(TIMM[a.model], pretrained=False, img_size=a.resolution, num_classes=0)
    side = a.resolution
    run = m  # the CLS token after the final norm (global_pool 'token', no head)
    impl = f"timm {timm.__version__}, torch {torch.__version__}"
m.eval()
x = torch.rand(a.batch, 3, side, side)
with torch.inference_mode():
    run(x)
    t = time.perf_counter()
    done = 0
    while done < a.images:
        run(x)
        done += a.batch
    s = time.perf_counter() - t
print(json.dumps({"peak_rss_mib": peak_rss_mib(), "impl": impl, "images": done, "seconds": s, "img_per_s": done / s}))
