#!/usr/bin/python3
"""The Real-ESRGAN family beyond the in-tree reference set's four models: other
activations and factors (SRVGGNetCompact ×2 relu, ×3 prelu), one-channel
networks, RRDBNet at scale 1, at scale 3 (which enlarges by 4, as upstream),
with 4 channels in and 3 out, weights stored as F16 and BF16, batches of 3 and
odd sides. Each network gets random weights from a fixed seed, its outputs are
computed by the PyTorch classes of tools/train/reverie_models.py, and the
engine must match them through `reverie-dev check-reference` (relative L2 ≤
1e-4). Those classes are first checked against the recorded outputs of the
upstream classes (tests/reference/real-esrgan-tiny), so the new cases rest on
the same ground. Every network also makes a .pth that tools/convert-esrgan.py
converts back to its config. Skipped (77) where PyTorch is not installed."""
import json
import os
import subprocess
import sys
import tempfile

from needs_torch import ROOT  # noqa: E402 (skips where PyTorch is missing)
import torch  # noqa: E402
import torch.nn as nn  # noqa: E402
import reverie_models as RM  # noqa: E402
import stio  # noqa: E402

REF = os.path.join(ROOT, "tests", "reference", "real-esrgan-tiny")
CONVERT = os.path.join(ROOT, "tools", "convert-esrgan.py")

SR, RR = "SRVGGNetCompact", "RRDBNet"
MODELS = {
    "srvgg_relu_x2": ({"architecture": SR, "num_in_ch": 3, "num_out_ch": 3, "num_feat": 12,
                       "num_conv": 3, "upscale": 2, "act_type": "relu"}, torch.float32),
    "srvgg_prelu_x3": ({"architecture": SR, "num_in_ch": 3, "num_out_ch": 3, "num_feat": 8,
                        "num_conv": 2, "upscale": 3, "act_type": "prelu"}, torch.float32),
    "srvgg_gray_lrelu_x4": ({"architecture": SR, "num_in_ch": 1, "num_out_ch": 1, "num_feat": 8,
                             "num_conv": 2, "upscale": 4, "act_type": "leakyrelu"}, torch.float32),
    "srvgg_prelu_x4_f16": ({"architecture": SR, "num_in_ch": 3, "num_out_ch": 3, "num_feat": 16,
                            "num_conv": 4, "upscale": 4, "act_type": "prelu"}, torch.float16),
    "rrdb_x1": ({"architecture": RR, "num_in_ch": 3, "num_out_ch": 3, "scale": 1, "num_feat": 8,
                 "num_block": 1, "num_grow_ch": 4}, torch.float32),
    "rrdb_x3": ({"architecture": RR, "num_in_ch": 3, "num_out_ch": 3, "scale": 3, "num_feat": 8,
                 "num_block": 1, "num_grow_ch": 4}, torch.float32),
    "rrdb_4to3_x4": ({"architecture": RR, "num_in_ch": 4, "num_out_ch": 3, "scale": 4,
                      "num_feat": 12, "num_block": 2, "num_grow_ch": 6}, torch.float32),
    "rrdb_x2_bf16": ({"architecture": RR, "num_in_ch": 3, "num_out_ch": 3, "scale": 2, "num_feat": 8,
                      "num_block": 1, "num_grow_ch": 8}, torch.bfloat16),
    "rrdb_gray_x4": ({"architecture": RR, "num_in_ch": 1, "num_out_ch": 1, "scale": 4, "num_feat": 8,
                      "num_block": 1, "num_grow_ch": 4}, torch.float32),
}
# (batch, height, width), rounded down to the model's side multiple
SIZES = {"5x7": (1, 5, 7), "batch3_8x8": (3, 8, 8), "33x20": (1, 33, 20)}

n_ok = 0


def ok(cond, what):
    global n_ok
    n_ok += 1
    print(("ok" if cond else "not ok") + f" {n_ok} - {what}")
    return cond


def spread(model):
    """Random weights that keep every layer's output in use: non-zero biases, per-channel PReLU
    slopes of both signs, convs a little above their default gain."""
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.Conv2d):
                m.weight.mul_(1.5)
                m.bias.uniform_(-0.1, 0.1)
            elif isinstance(m, nn.PReLU):
                m.weight.uniform_(-0.2, 0.6)


def upstream_agrees():
    """The PyTorch classes give the upstream classes' recorded outputs."""
    with open(os.path.join(REF, "cases.json")) as f:
        index = json.load(f)
    good = True
    for case in index["cases"]:
        folder = os.path.join(REF, "models", case["model"])
        with open(os.path.join(folder, "config.json")) as f:
            net = RM.build(json.load(f))
        net.load_state_dict({k: torch.as_tensor(v) for k, v in
                             stio.load(os.path.join(folder, "model.safetensors")).items()})
        t = stio.load(os.path.join(REF, case["file"]))
        with torch.no_grad():
            y = net(torch.as_tensor(t["input"]))
        ref = torch.as_tensor(t["output"])
        rel = float((y - ref).norm() / ref.norm())
        good &= ok(rel <= 1e-5, f"{case['name']}: the PyTorch class matches upstream (rel L2 {rel:.2e})")
    return good


def make_set(out):
    torch.manual_seed(20261207)
    index = {"format_version": 1, "variant": "generated", "models": {}, "cases": []}
    for name, (cfg, dtype) in MODELS.items():
        folder = os.path.join(out, "models", name)
        os.makedirs(folder)
        net = RM.build(cfg)
        spread(net)
        stored = {k: v.to(dtype) for k, v in net.state_dict().items()}
        net.load_state_dict({k: v.float() for k, v in stored.items()})  # run what is stored
        stio.save(os.path.join(folder, "model.safetensors"), stored)
        with open(os.path.join(folder, "config.json"), "w") as f:
            json.dump(cfg, f)
        index["models"][name] = {"config": cfg, "weights_file": f"models/{name}/model.safetensors"}
        mult = getattr(net, "unshuffle", 1)  # RRDBNet's sides divide by its unshuffle
        for size, (b, h, w) in SIZES.items():
            h, w = max(mult, h // mult * mult), max(mult, w // mult * mult)
            x = torch.rand(b, cfg["num_in_ch"], h, w)
            with torch.no_grad():
                y = net(x)
            file = f"cases/{name}__{size}.safetensors"
            os.makedirs(os.path.join(out, "cases"), exist_ok=True)
            stio.save(os.path.join(out, file), {"input": x, "output": y})
            index["cases"].append({
                "name": f"{name}__{size}", "model": name, "file": file,
                "input": {"name": "input", "dtype": "F32", "shape": list(x.shape)},
                "output": {"name": "output", "dtype": "F32", "shape": list(y.shape)},
                "tolerance_rel_l2": 1e-4})
    with open(os.path.join(out, "cases.json"), "w") as f:
        json.dump(index, f, indent=1)
    return index


def engine_agrees(checker, out, index):
    r = subprocess.run([checker, "check-reference", out], capture_output=True, text=True,
                       timeout=600)
    # one line per case: name, kind, status, ...
    status = {}
    for line in r.stdout.splitlines():
        words = line.split()
        if len(words) >= 3 and not line.startswith(" "):
            status[words[0]] = words[2]
    for case in index["cases"]:
        got = status.get(case["name"])
        ok(got == "PASS", f"{case['name']}: the engine matches ({got})")
    ok(r.returncode == 0, f"check-reference exits 0 ({r.returncode}): {r.stderr.strip()[-300:]}")


def converts_back(tmp, out):
    for name, (cfg, _) in MODELS.items():
        folder = os.path.join(out, "models", name)
        sd = {k: torch.as_tensor(v) for k, v in stio.load(os.path.join(folder, "model.safetensors")).items()}
        pth = os.path.join(tmp, name + ".pth")
        torch.save({"params_ema": sd}, pth)
        extra = []
        if cfg.get("act_type") in ("relu", "leakyrelu"):
            extra += ["--act", cfg["act_type"]]  # no slopes in the weights to tell it by
        if cfg["architecture"] == RR and cfg["num_in_ch"] != cfg["num_out_ch"]:
            extra += ["--scale", str(cfg["scale"])]
        r = subprocess.run([sys.executable, CONVERT, pth, os.path.join(tmp, "conv", name), *extra],
                           capture_output=True, text=True, timeout=120)
        if not ok(r.returncode == 0, f"{name}: convert-esrgan.py converts it ({r.stderr.strip()[-200:]})"):
            continue
        with open(os.path.join(tmp, "conv", name, "config.json")) as f:
            got = json.load(f)
        want = dict(cfg)
        if cfg["architecture"] == RR and cfg["scale"] not in (1, 2):
            want["scale"] = 4  # the weights of scale 3 are those of scale 4
        ok(got == want, f"{name}: the converted config is the network's ({got})")


def main():
    checker = sys.argv[1]
    if not upstream_agrees():
        print("# the PyTorch classes disagree with upstream; the generated cases would prove nothing")
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "set")
        index = make_set(out)
        engine_agrees(checker, out, index)
        converts_back(tmp, out)
    print(f"1..{n_ok}")


if __name__ == "__main__":
    main()
