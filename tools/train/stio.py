"""Minimal safetensors reader/writer (the format: u64 header length, JSON header, raw LE data)."""
import json
import struct

import numpy as np
import torch

_DT = {
    "F32": (np.float32, torch.float32), "F16": (np.float16, torch.float16),
    "F64": (np.float64, torch.float64), "I64": (np.int64, torch.int64),
    "I32": (np.int32, torch.int32), "U8": (np.uint8, torch.uint8),
    "I8": (np.int8, torch.int8), "BOOL": (np.bool_, torch.bool),
}
_TORCH2ST = {v[1]: k for k, v in _DT.items()}
_TORCH2ST[torch.bfloat16] = "BF16"


def load(path):
    """Return {name: torch.Tensor} for every tensor of a safetensors file (BF16 widened to F32)."""
    with open(path, "rb") as f:
        data = f.read()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + n])
    base = 8 + n
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        a, b = info["data_offsets"]
        raw = data[base + a: base + b]
        shape = info["shape"]
        if info["dtype"] == "BF16":
            u = np.frombuffer(raw, dtype="<u2").astype(np.uint32) << 16
            arr = u.view(np.float32).reshape(shape)
        else:
            arr = np.frombuffer(raw, dtype=np.dtype(_DT[info["dtype"]][0]).newbyteorder("<")).reshape(shape)
        out[name] = torch.from_numpy(arr.copy())
    return out


def save(path, tensors, metadata=None):
    """Write {name: tensor} to a safetensors file; names sorted, data 8-byte aligned."""
    meta = {"format": "pt"}
    if metadata:
        meta.update(metadata)
    header = {"__metadata__": meta}
    blobs = []
    off = 0
    for name in sorted(tensors):
        t = tensors[name].detach().cpu().contiguous()
        if t.dtype == torch.bfloat16:
            raw = t.view(torch.int16).numpy().astype("<i2").tobytes()
        else:
            arr = t.numpy()
            raw = arr.astype(arr.dtype.newbyteorder("<"), copy=False).tobytes()
        header[name] = {"dtype": _TORCH2ST[t.dtype], "shape": list(t.shape), "data_offsets": [off, off + len(raw)]}
        blobs.append(raw)
        off += len(raw)
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for raw in blobs:
            f.write(raw)
