"""Parity fixtures for CLIP (nodes/src/models/clip.rs) and the `labels/clip` zero-shot rule,
against open_clip 3.3.0 (PyPI open_clip_torch; torch 2.15).

    /path/to/python tests/parity/clip.py    # writes tests/parity/clip_*.{safetensors,json}

No CLIP weights exist on these machines: a tiny random-weight OpenCLIP model (open_clip.model.CLIP
with a 2-block ViT image tower and a 2-block text tower over the real 49 408-token vocabulary) is
saved under OpenCLIP's key names, with:
- image embeddings (`encode_image`) of CLIP-normalised inputs;
- the five prompts of the seed's Supp. E for three class names, tokenised by open_clip's
  tokenizer, their text embeddings (`encode_text`), and the zero-shot classifier
  `open_clip.build_zero_shot_classifier` builds from them (per class: the mean of the normalised
  prompt embeddings, renormalised), the images' cosine logits and argmax labels;
- tokenizer parity: `open_clip.tokenize` of strings with punctuation, contractions, numbers,
  HTML entities, curly quotes, accents, CJK and emoji (clip_tokenizer.json).
"""

import json
import os

import numpy as np
import open_clip
import torch
from open_clip.model import CLIP, CLIPTextCfg, CLIPVisionCfg
from safetensors.numpy import save_file

from common import HERE

PROMPTS = ["a photo of a {}.", "a blurry photo of a {}.", "a photo of many {}.",
           "a photo of the large {}.", "a photo of the small {}."]
CLASSES = ["t-shirt", "ankle boot", "bag"]

STRINGS = [
    "a photo of a cat.",
    "A Blurry PHOTO of the small dog!!!",
    "it's what they've said: we'll see, I'd've... don't",
    "  tabs\tand\nnewlines   collapse  ",
    "numbers 1234 and 3.14159, 10%",
    "&amp;lt;tag&amp;gt; &quot;quoted&quot; &#39;single&#39;",
    "\u201ccurly\u201d \u2018quotes\u2019",
    "caf\u00e9 na\u00efve r\u00e9sum\u00e9 \u00fcber stra\u00dfe",
    "\u732b\u3068\u72ac \u4e2d\u6587 \ud55c\uad6d\uc5b4",
    "emoji \U0001F600\U0001F436 and symbols \u00a9\u2122 <>{}[]",
    "a very long " + "sentence " * 100,
]


def main():
    torch.manual_seed(0)
    vision = CLIPVisionCfg(layers=2, width=32, head_width=8, mlp_ratio=4.0, patch_size=8, image_size=32)
    text = CLIPTextCfg(context_length=77, vocab_size=49408, width=8, heads=2, layers=2)
    model = CLIP(embed_dim=12, vision_cfg=vision, text_cfg=text, quick_gelu=False).eval()
    with torch.no_grad():
        for p in model.parameters():  # leave the default init's zeros and ones no chance to hide a bug
            p.add_(torch.randn_like(p) * 0.05)
    sd = {k: v.detach().numpy().astype(np.float32) for k, v in model.state_dict().items()}
    save_file(sd, os.path.join(HERE, "clip_tiny.safetensors"), metadata={
        "script": "tests/parity/clip.py", "open_clip": open_clip.__version__, "torch": torch.__version__,
        "embed_dim": "12", "vision": "layers 2, width 32, head_width 8, patch 8, image 32",
        "text": "layers 2, width 8, heads 2, context 77, vocab 49408"})

    tok = open_clip.get_tokenizer("ViT-B-32")
    g = torch.Generator().manual_seed(1)
    images = torch.randn(4, 3, 32, 32, generator=g)
    texts = [t.format(c) for c in CLASSES for t in PROMPTS]
    tokens = tok(texts)
    with torch.no_grad():
        img = model.encode_image(images)
        txt = model.encode_text(tokens)
        zs = open_clip.build_zero_shot_classifier(model, tokenizer=tok, classnames=CLASSES, templates=PROMPTS,
                                                  num_classes_per_batch=None)
        logits = torch.nn.functional.normalize(img, dim=-1) @ zs
    save_file({
        "images": images.numpy(), "image_embeddings": img.numpy(),
        "tokens": tokens.numpy().astype(np.int64), "text_embeddings": txt.numpy(),
        "classifier": np.ascontiguousarray(zs.numpy()), "logits": logits.numpy(), "labels": logits.argmax(-1).numpy().astype(np.int64),
    }, os.path.join(HERE, "clip_tiny_io.safetensors"), metadata={"classes": json.dumps(CLASSES),
                                                                  "prompts": json.dumps(PROMPTS)})
    cases = [{"text": s, "ids": [int(v) for v in tok([s])[0].tolist()]} for s in STRINGS]
    with open(os.path.join(HERE, "clip_tokenizer.json"), "w") as f:
        json.dump({"open_clip": open_clip.__version__, "cases": cases}, f, ensure_ascii=False, indent=1)
    print("clip fixtures:", len(sd), "tensors,", len(cases), "tokenizer cases")


if __name__ == "__main__":
    main()
