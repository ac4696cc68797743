"""Reference throughput of MobileNetV2 feature extraction in PyTorch CPU (what `cedm bench
features` compares against). Prints one JSON line.

    python benches/mobilenet_v2.py --resolution 96 --batch 64 --images 1024 [--threads 2]
"""
import argparse
import json
import os
import time

import torch
import torch.nn.functional as F
import torchvision


def peak_rss_mib():
    """This process's peak RSS (VmHWM; getrusage would include the parent's at exec)."""
    with open("/proc/self/status") as f:
        return next(float(l.split()[1]) / 1024 for l in f if l.startswith("VmHWM:"))

p = argparse.ArgumentParser()
p.add_argument("--resolution", type=int, default=96)
p.add_argument("--batch", type=int, default=64)
p.add_argument("--images", type=int, default=1024)
p.add_argument("--threads", type=int, default=os.cpu_count())
p.add_argument("--weights", default=None)
a = p.parse_args()
torch.set_num_threads(a.threads)
m = torchvision.models.mobilenet_v2()
if a.weights:
    m.load_state_dict(torch.load(a.weights, map_location="cpu"))
m.eval()
x = torch.rand(a.batch, 3, a.resolution, a.resolution)
with torch.inference_mode():
    for _ in range(2):
        F.adaptive_avg_pool2d(m.features(x), 1)
    t = time.perf_counter()
    done = 0
    while done < a.images:
        F.adaptive_avg_pool2d(m.features(x), 1).flatten(1)
        done += a.batch
    s = time.perf_counter() - t
print(json.dumps({"peak_rss_mib": peak_rss_mib(), "impl": f"torch {torch.__version__}", "images": done, "seconds": s, "img_per_s": done / s}))
