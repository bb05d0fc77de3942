#!/usr/bin/python3
"""Converts a Real-ESRGAN-family .pth checkpoint into a folder Reverie reads:
config.json ({"architecture": ..., constructor arguments}) and
model.safetensors (float32, the PyTorch state-dict names).

Reverie never unpickles a file. This script does, on your machine, with
PyTorch's weights-only loader (torch.load(weights_only=True)), which refuses
pickles that would run code. The architecture and its sizes are inferred from
the tensor names and shapes:

  SRVGGNetCompact   body.<i>.weight/bias (realesr-general-x4v3,
                    realesr-animevideov3, ...)
  RRDBNet           conv_first, body.<k>.rdb<j>.conv<n>, conv_body, conv_up1,
                    conv_up2, conv_hr, conv_last (RealESRGAN_x4plus, x2plus);
                    the older ESRGAN names (model.0, model.1.sub.<k>.RDB<j>...)
                    are renamed

Where the tensors cannot tell: --act for an SRVGGNetCompact without PReLU
slopes, --scale for an RRDBNet with other channel counts in than out.

Usage (Debian: apt-get install python3-torch):
  /usr/bin/python3 tools/convert-esrgan.py realesr-general-x4v3.pth OUT_DIR
  reverie-cli upscale picture.png -o big.png --model OUT_DIR
"""
import argparse
import json
import os
import re
import struct
import sys
import tempfile

try:
    import torch
except ImportError:
    sys.exit("convert-esrgan: PyTorch is needed to read .pth files "
             "(apt-get install python3-torch, then run with /usr/bin/python3)")


def fail(msg):
    sys.exit(f"convert-esrgan: {msg}")


def load_state_dict(path):
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # the weights-only unpickler names what it refused
        fail(f"{path}: cannot be read as plain weights ({e})")
    # Real-ESRGAN and BasicSR keep the weights under params_ema or params
    for key in ("params_ema", "params", "state_dict", "model"):
        if isinstance(obj, dict) and key in obj and isinstance(obj[key], dict):
            obj = obj[key]
            break
    if not isinstance(obj, dict) or not obj:
        fail(f"{path}: no state dict of tensors inside")
    sd = {}
    for k, v in obj.items():
        if not torch.is_tensor(v):
            fail(f"{path}: {k} is not a tensor")
        sd[k[7:] if k.startswith("module.") else k] = v
    return sd


def old_esrgan_names(sd):
    """The 2018 ESRGAN layout (model.0, model.1.sub.<k>.RDB<j>.conv<n>.0, ...)
    renamed to RRDBNet's."""
    if "model.0.weight" not in sd:
        return sd
    subs = sorted({int(m.group(1)) for k in sd for m in [re.match(r"model\.1\.sub\.(\d+)\.", k)] if m})
    body_end = subs[-1] if subs else 0
    out = {}
    for k, v in sd.items():
        m = re.match(r"model\.1\.sub\.(\d+)\.RDB(\d)\.conv(\d)\.0\.(weight|bias)$", k)
        if m:
            out[f"body.{m.group(1)}.rdb{m.group(2)}.conv{m.group(3)}.{m.group(4)}"] = v
            continue
        m = re.match(r"model\.1\.sub\.(\d+)\.(weight|bias)$", k)
        if m and int(m.group(1)) == body_end:
            out[f"conv_body.{m.group(2)}"] = v
            continue
        names = {"model.0": "conv_first", "model.3": "conv_up1", "model.6": "conv_up2",
                 "model.8": "conv_hr", "model.10": "conv_last"}
        m = re.match(r"(model\.\d+)\.(weight|bias)$", k)
        if m and m.group(1) in names:
            out[f"{names[m.group(1)]}.{m.group(2)}"] = v
            continue
        fail(f"unknown tensor {k} in an ESRGAN-style checkpoint")
    return out


def infer(sd, act, scale=None):
    if "conv_first.weight" in sd:
        first = sd["conv_first.weight"]
        feat = first.shape[0]
        out_ch = sd["conv_last.weight"].shape[0]
        blocks = sorted({int(m.group(1)) for k in sd for m in [re.match(r"body\.(\d+)\.rdb", k)] if m})
        grow = sd["body.0.rdb1.conv1.weight"].shape[0] if blocks else 32
        in_ch = first.shape[1]
        # conv_first sees the picture unshuffled by 2 (scale 2) or 4 (scale 1)
        if scale is not None:
            per = {4: 1, 2: 4, 1: 16}[scale]
            if in_ch % per != 0:
                fail(f"conv_first takes {in_ch} channels: not a picture unshuffled for scale {scale}")
            num_in = in_ch // per
        elif in_ch == out_ch:
            scale, num_in = 4, in_ch
        elif in_ch == 4 * out_ch:
            scale, num_in = 2, out_ch
        elif in_ch == 16 * out_ch:
            scale, num_in = 1, out_ch
        else:
            fail(f"conv_first takes {in_ch} channels and conv_last gives {out_ch}: "
                 "not a scale of 1, 2 or 4 with as many channels in as out; give --scale")
        if blocks != list(range(len(blocks))):
            fail("the RRDB blocks are not numbered 0, 1, 2, ...")
        return {"architecture": "RRDBNet", "num_in_ch": num_in, "num_out_ch": out_ch,
                "scale": scale, "num_feat": feat, "num_block": len(blocks), "num_grow_ch": grow}
    idx = sorted({int(m.group(1)) for k in sd for m in [re.match(r"body\.(\d+)\.weight$", k)] if m})
    if not idx:
        fail("neither SRVGGNetCompact (body.<i>.weight) nor RRDBNet (conv_first.weight) tensors")
    convs = [i for i in idx if sd[f"body.{i}.weight"].ndim == 4]
    slopes = [i for i in idx if sd[f"body.{i}.weight"].ndim == 1]
    if convs != list(range(0, 2 * len(convs), 2)):
        fail("the convs of body are not at indices 0, 2, 4, ...")
    first, last = sd["body.0.weight"], sd[f"body.{convs[-1]}.weight"]
    in_ch, feat = first.shape[1], first.shape[0]
    r2 = last.shape[0] // in_ch
    r = int(round(r2 ** 0.5))
    if r * r * in_ch != last.shape[0]:
        fail(f"the last conv gives {last.shape[0]} channels: not {in_ch}·r² for a whole r")
    if slopes:
        kind = "prelu"
    elif act:
        kind = act
    else:
        fail("the checkpoint has no PReLU slopes, so its activation cannot be told from the "
             "weights: give --act leakyrelu or --act relu")
    return {"architecture": "SRVGGNetCompact", "num_in_ch": in_ch, "num_out_ch": in_ch,
            "num_feat": feat, "num_conv": len(convs) - 2, "upscale": r, "act_type": kind}


def write_safetensors(path, tensors):
    header, offset, blobs = {}, 0, []
    for name in sorted(tensors):
        data = tensors[name].detach().to(torch.float32).contiguous().numpy().tobytes()
        header[name] = {"dtype": "F32", "shape": list(tensors[name].shape),
                        "data_offsets": [offset, offset + len(data)]}
        offset += len(data)
        blobs.append(data)
    header["__metadata__"] = {"format": "pt"}
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path) or ".")
    with os.fdopen(fd, "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text)
        for b in blobs:
            f.write(b)
    os.replace(tmp, path)


def main():
    ap = argparse.ArgumentParser(description="Convert a Real-ESRGAN-family .pth to a Reverie "
                                             "upscaler folder (config.json + model.safetensors).")
    ap.add_argument("pth")
    ap.add_argument("out_dir")
    ap.add_argument("--act", choices=["prelu", "leakyrelu", "relu"],
                    help="SRVGGNetCompact's activation when the file has no PReLU slopes")
    ap.add_argument("--scale", type=int, choices=[1, 2, 4],
                    help="RRDBNet's scale where the channel counts do not tell it (a network "
                         "whose picture has other channels in than out)")
    a = ap.parse_args()
    sd = old_esrgan_names(load_state_dict(a.pth))
    cfg = infer(sd, a.act, a.scale)
    os.makedirs(a.out_dir, exist_ok=True)
    write_safetensors(os.path.join(a.out_dir, "model.safetensors"), sd)
    tmp = os.path.join(a.out_dir, "config.json.tmp")
    with open(tmp, "w") as f:
        json.dump(cfg, f, indent=2)
        f.write("\n")
    os.replace(tmp, os.path.join(a.out_dir, "config.json"))
    n = sum(v.numel() for v in sd.values())
    print(f"{a.out_dir}: {cfg['architecture']}, ×{cfg.get('upscale', cfg.get('scale'))}, "
          f"{n:,} parameters")
    print(json.dumps(cfg))


if __name__ == "__main__":
    main()
