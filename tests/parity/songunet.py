"""Parity fixture for SongUNet + EDM preconditioning (nodes/src/models/edm/songunet.rs, nodes/src/models/edm/precond.rs).

    /path/to/python tests/parity/songunet.py      # writes tests/parity/songunet.safetensors

torch 2.15. A tiny DDPM++ SongUNet (8 px, 2 channels, 16 model channels, channel_mult [1, 2],
1 block, attention at 4 px, label_dim 3, augment_dim 9) written from EDM's semantics
(NVlabs/edm training/networks.py: SongUNet, UNetBlock, PositionalEmbedding, EDMPrecond), with
random (not EDM-initialised) weights so that every path contributes, evaluated in eval mode.
Weights use EDM's parameter names. This reference was cross-checked once against the original
networks.py (same weights, max |Δ| < 1e-6); the original is not used or copied here.
"""

import math
import os

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.numpy import save_file

from common import HERE

CFG = dict(img_resolution=8, in_channels=2, label_dim=3, augment_dim=9, model_channels=16,
           channel_mult=[1, 2], channel_mult_emb=2, num_blocks=1, attn_resolutions=[4], dropout=0.0)


def groups(c):
    return min(32, c // 4)


class Net:
    """Parameters in a dict by EDM name; forward written out."""

    def __init__(self, cfg, g):
        self.cfg, self.p, self.g = cfg, {}, g
        mc = cfg["model_channels"]
        emb = mc * cfg["channel_mult_emb"]
        self.linear("map_label", cfg["label_dim"], mc)
        self.linear("map_augment", cfg["augment_dim"], mc, bias=False)
        self.linear("map_layer0", mc, emb)
        self.linear("map_layer1", emb, emb)
        self.enc, self.dec = [], []
        cout = cfg["in_channels"]
        skips = []
        for level, mult in enumerate(cfg["channel_mult"]):
            res = cfg["img_resolution"] >> level
            if level == 0:
                cin, cout = cout, mc
                self.conv(f"enc.{res}x{res}_conv", cin, cout, 3)
                self.enc.append((f"enc.{res}x{res}_conv", "conv", None))
            else:
                self.block(f"enc.{res}x{res}_down", cout, cout, emb, down=True)
                self.enc.append((f"enc.{res}x{res}_down", "block", dict(down=True, cin=cout)))
            skips.append(cout)
            for i in range(cfg["num_blocks"]):
                cin, cout = cout, mc * mult
                attn = res in cfg["attn_resolutions"]
                self.block(f"enc.{res}x{res}_block{i}", cin, cout, emb, attention=attn)
                self.enc.append((f"enc.{res}x{res}_block{i}", "block", dict(cin=cin)))
                skips.append(cout)
        levels = len(cfg["channel_mult"])
        for level, mult in reversed(list(enumerate(cfg["channel_mult"]))):
            res = cfg["img_resolution"] >> level
            if level == levels - 1:
                self.block(f"dec.{res}x{res}_in0", cout, cout, emb, attention=True)
                self.block(f"dec.{res}x{res}_in1", cout, cout, emb)
                self.dec += [(f"dec.{res}x{res}_in0", dict(cin=cout)), (f"dec.{res}x{res}_in1", dict(cin=cout))]
            else:
                self.block(f"dec.{res}x{res}_up", cout, cout, emb, up=True)
                self.dec.append((f"dec.{res}x{res}_up", dict(up=True, cin=cout)))
            for i in range(cfg["num_blocks"] + 1):
                cin, cout = cout + skips.pop(), mc * mult
                attn = i == cfg["num_blocks"] and res in cfg["attn_resolutions"]
                self.block(f"dec.{res}x{res}_block{i}", cin, cout, emb, attention=attn)
                self.dec.append((f"dec.{res}x{res}_block{i}", dict(cin=cin)))
        r0 = cfg["img_resolution"]
        self.gn(f"dec.{r0}x{r0}_aux_norm", cout)
        self.conv(f"dec.{r0}x{r0}_aux_conv", cout, cfg["in_channels"], 3)
        self.out = f"dec.{r0}x{r0}"

    def rnd(self, *shape, scale=0.3):
        return torch.randn(*shape, generator=self.g) * scale

    def linear(self, name, i, o, bias=True):
        self.p[f"{name}.weight"] = self.rnd(o, i, scale=1 / math.sqrt(i))
        if bias:
            self.p[f"{name}.bias"] = self.rnd(o, scale=0.1)

    def conv(self, name, i, o, k):
        self.p[f"{name}.weight"] = self.rnd(o, i, k, k, scale=1 / math.sqrt(i * k * k))
        self.p[f"{name}.bias"] = self.rnd(o, scale=0.1)

    def gn(self, name, c):
        self.p[f"{name}.weight"] = 1 + self.rnd(c, scale=0.1)
        self.p[f"{name}.bias"] = self.rnd(c, scale=0.1)

    def block(self, name, cin, cout, emb, up=False, down=False, attention=False):
        self.gn(f"{name}.norm0", cin)
        self.conv(f"{name}.conv0", cin, cout, 3)
        self.linear(f"{name}.affine", emb, cout)
        self.gn(f"{name}.norm1", cout)
        self.conv(f"{name}.conv1", cout, cout, 3)
        if cout != cin or up or down:
            self.conv(f"{name}.skip", cin, cout, 1)
        if attention:
            self.gn(f"{name}.norm2", cout)
            self.conv(f"{name}.qkv", cout, cout * 3, 1)
            self.conv(f"{name}.proj", cout, cout, 1)

    # --- forward -------------------------------------------------------------------------------

    def lin(self, name, x):
        b = self.p.get(f"{name}.bias")
        return F.linear(x, self.p[f"{name}.weight"], b)

    def cv(self, name, x, up=False, down=False):
        if up:
            x = x.repeat_interleave(2, dim=2).repeat_interleave(2, dim=3)
        if down:
            x = F.avg_pool2d(x, 2)
        w = self.p[f"{name}.weight"]
        return F.conv2d(x, w, self.p[f"{name}.bias"], padding=w.shape[-1] // 2)

    def norm(self, name, x):
        return F.group_norm(x, groups(x.shape[1]), self.p[f"{name}.weight"], self.p[f"{name}.bias"], eps=1e-6)

    def run_block(self, name, x, emb, up=False, down=False, cin=None):
        orig = x
        x = self.cv(f"{name}.conv0", F.silu(self.norm(f"{name}.norm0", x)), up=up, down=down)
        x = F.silu(self.norm(f"{name}.norm1", x + self.lin(f"{name}.affine", emb)[:, :, None, None]))
        x = self.cv(f"{name}.conv1", x)
        skip = self.cv(f"{name}.skip", orig, up=up, down=down) if f"{name}.skip.weight" in self.p else orig
        x = (x + skip) * math.sqrt(0.5)
        if f"{name}.qkv.weight" in self.p:
            n, c, h, w = x.shape
            qkv = self.cv(f"{name}.qkv", self.norm(f"{name}.norm2", x)).reshape(n, c, 3, h * w)
            q, k, v = qkv.unbind(2)
            a = torch.einsum("ncq,nck->nqk", q, k / math.sqrt(c)).softmax(dim=2)
            y = torch.einsum("nqk,nck->ncq", a, v).reshape(n, c, h, w)
            x = (self.cv(f"{name}.proj", y) + x) * math.sqrt(0.5)
        return x

    def forward(self, x, noise, labels, aug):
        mc = self.cfg["model_channels"]
        half = mc // 2
        freqs = (1 / 10000) ** (torch.arange(half, dtype=torch.float32, device=noise.device) / (half - 1))
        e = noise[:, None] * freqs[None]
        emb = torch.cat([e.sin(), e.cos()], dim=1)  # [cos, sin] swapped, as EDM's forward does
        emb = emb + self.lin("map_label", labels * math.sqrt(self.cfg["label_dim"]))
        emb = emb + self.lin("map_augment", aug)
        emb = F.silu(self.lin("map_layer1", F.silu(self.lin("map_layer0", emb))))
        skips = []
        for name, kind, kw in self.enc:
            if kind == "conv":
                x = self.cv(name, x)
            else:
                x = self.run_block(name, x, emb, down=kw.get("down", False))
            skips.append(x)
        for name, kw in self.dec:
            if x.shape[1] != kw["cin"]:
                x = torch.cat([x, skips.pop()], dim=1)
            x = self.run_block(name, x, emb, up=kw.get("up", False))
        return self.cv(f"{self.out}_aux_conv", F.silu(self.norm(f"{self.out}_aux_norm", x)))


def precond(net, x, sigma, labels, aug, sd=0.5):
    s = sigma.reshape(-1, 1, 1, 1)
    c_skip = sd ** 2 / (s ** 2 + sd ** 2)
    c_out = s * sd / (s ** 2 + sd ** 2).sqrt()
    c_in = 1 / (sd ** 2 + s ** 2).sqrt()
    c_noise = s.log() / 4
    return c_skip * x + c_out * net.forward(c_in * x, c_noise.flatten(), labels, aug)


def main():
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(1)
    net = Net(CFG, g)
    x = torch.randn(3, 2, 8, 8, generator=g)
    sigma = torch.tensor([0.05, 1.0, 20.0])
    labels = F.one_hot(torch.tensor([0, 2, 1]), 3).float()
    labels[2] = 0  # an unconditional row (all-zero label)
    aug = torch.randn(3, 9, generator=g) * 0.5
    with torch.no_grad():
        f_out = net.forward(x, sigma.log() / 4, labels, aug)
        d_out = precond(net, x, sigma, labels, aug)
    out = {k: v.numpy().astype(np.float32) for k, v in net.p.items()}
    out.update({"input.x": x.numpy(), "input.sigma": sigma.numpy(), "input.labels": labels.numpy(), "input.aug": aug.numpy(),
                "output.F": f_out.numpy(), "output.D": d_out.numpy()})
    save_file({k: np.ascontiguousarray(v, dtype=np.float32) for k, v in out.items()}, os.path.join(HERE, "songunet.safetensors"),
              metadata={"script": "tests/parity/songunet.py", "torch": torch.__version__, "config": str(CFG)})
    print("F", f_out.abs().mean().item(), "D", d_out.abs().mean().item(), len(net.p), "params")


if __name__ == "__main__":
    main()
