"""Parity fixture for MobileNetV2 features (nodes/src/models/mobilenet_v2.rs).

    /path/to/python tests/parity/mobilenet_v2.py      # writes tests/parity/mobilenet_v2.safetensors

torch 2.15, torchvision 0.29. Real weights (assets/weights/mobilenet_v2-b0353104.pth, fetched by
scripts/fetch_assets.sh) on the first 4 real Fashion-MNIST training images; preprocessing as the
features node does it: grey → RGB, resize 28 → 96 bilinear (antialias=True), ImageNet mean/std.
"""

import os

import numpy as np
import torch
import torch.nn.functional as F
import torchvision
from safetensors.numpy import save_file

from common import ASSETS, HERE, fashion_train

torch.manual_seed(0)
images = fashion_train(4)
x = torch.from_numpy(images).float().repeat(1, 3, 1, 1)
x = F.interpolate(x, size=(96, 96), mode="bilinear", align_corners=False, antialias=True)
mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
x = (x / 255.0 - mean) / std

model = torchvision.models.mobilenet_v2()
state = torch.load(os.path.join(ASSETS, "weights", "mobilenet_v2-b0353104.pth"), map_location="cpu")
model.load_state_dict(state)
model.eval()
with torch.no_grad():
    f = model.features(x)
    feats = F.adaptive_avg_pool2d(f, 1).flatten(1)

save_file(
    {"images": images, "input": x.numpy().astype(np.float32), "features": feats.numpy().astype(np.float32)},
    os.path.join(HERE, "mobilenet_v2.safetensors"),
    metadata={"script": "tests/parity/mobilenet_v2.py", "torch": torch.__version__, "torchvision": torchvision.__version__},
)
print("features", feats.shape, float(feats.abs().mean()))
