#!/usr/bin/python3
"""tools/convert-esrgan.py on checkpoints made from the in-tree Real-ESRGAN
reference models: each is saved as a .pth the way Real-ESRGAN ships them
({"params_ema": state_dict}), converted back, and the config and weights must
come out as they were; the converted folders then pass the engine's reference
check. Also: the 2018 ESRGAN names, and a clear error where the activation
cannot be told. Skipped (77) where PyTorch is not installed."""
import json
import os
import shutil
import subprocess
import sys
import tempfile

from needs_torch import ROOT  # noqa: E402 (skips where PyTorch is missing)
import torch  # noqa: E402
import stio  # noqa: E402

CONVERT = os.path.join(ROOT, "tools", "convert-esrgan.py")
REF = os.path.join(ROOT, "tests", "reference", "real-esrgan-tiny")


def convert(pth, out, *extra):
    return subprocess.run([sys.executable, CONVERT, pth, out, *extra], capture_output=True,
                          text=True, timeout=120)


def main():
    checker = sys.argv[1] if len(sys.argv) > 1 else None
    n = 0
    with tempfile.TemporaryDirectory() as tmp:
        copy = os.path.join(tmp, "set")
        shutil.copytree(REF, copy)
        for name in sorted(os.listdir(os.path.join(REF, "models"))):
            src = os.path.join(REF, "models", name)
            tensors = stio.load(os.path.join(src, "model.safetensors"))
            sd = {k: torch.from_numpy(v.copy()) if not torch.is_tensor(v) else v
                  for k, v in tensors.items()}
            pth = os.path.join(tmp, name + ".pth")
            torch.save({"params_ema": sd}, pth)
            out = os.path.join(copy, "models", name)
            shutil.rmtree(out)
            with open(os.path.join(src, "config.json")) as f:
                want = json.load(f)
            # without PReLU slopes the activation is not in the weights
            act = want.get("act_type", "prelu")
            r = convert(pth, out, *([] if act == "prelu" else ["--act", act]))
            assert r.returncode == 0, r.stderr
            with open(os.path.join(out, "config.json")) as f:
                got = json.load(f)
            assert got == want, f"{name}: {got} != {want}"
            back = stio.load(os.path.join(out, "model.safetensors"))
            assert sorted(back) == sorted(sd), name
            for k in sd:
                assert torch.equal(torch.as_tensor(back[k]), sd[k]), f"{name}: {k} differs"
            n += 1
            print(f"ok {n} - {name} round trip")

        # the 2018 ESRGAN names of an RRDBNet
        tensors = stio.load(os.path.join(REF, "models", "rrdb_x4", "model.safetensors"))
        old = {}
        for k, v in tensors.items():
            v = torch.as_tensor(v)
            parts = k.split(".")
            if parts[0] == "body":
                old[f"model.1.sub.{parts[1]}.RDB{parts[2][3]}.conv{parts[3][4]}.0.{parts[4]}"] = v
            else:
                names = {"conv_first": "model.0", "conv_body": "model.1.sub.2", "conv_up1": "model.3",
                         "conv_up2": "model.6", "conv_hr": "model.8", "conv_last": "model.10"}
                old[f"{names[parts[0]]}.{parts[1]}"] = v
        torch.save(old, os.path.join(tmp, "old.pth"))
        r = convert(os.path.join(tmp, "old.pth"), os.path.join(tmp, "old"))
        assert r.returncode == 0, r.stderr
        back = stio.load(os.path.join(tmp, "old", "model.safetensors"))
        assert sorted(back) == sorted(tensors), sorted(set(back) ^ set(tensors))
        n += 1
        print(f"ok {n} - ESRGAN names")

        # no PReLU slopes: the activation must be named
        tensors = stio.load(os.path.join(REF, "models", "srvgg_lrelu_x4", "model.safetensors"))
        torch.save({k: torch.as_tensor(v) for k, v in tensors.items()}, os.path.join(tmp, "c.pth"))
        r = convert(os.path.join(tmp, "c.pth"), os.path.join(tmp, "c"))
        assert r.returncode != 0 and "--act" in r.stderr, r.stderr
        assert not os.path.exists(os.path.join(tmp, "c", "config.json"))
        r = convert(os.path.join(tmp, "c.pth"), os.path.join(tmp, "c"), "--act", "leakyrelu")
        assert r.returncode == 0, r.stderr
        n += 1
        print(f"ok {n} - activation asked for")

        # a file that is not a checkpoint
        with open(os.path.join(tmp, "bad.pth"), "wb") as f:
            f.write(b"not a pickle")
        r = convert(os.path.join(tmp, "bad.pth"), os.path.join(tmp, "bad"))
        assert r.returncode != 0 and "bad.pth" in r.stderr, r.stderr
        n += 1
        print(f"ok {n} - unreadable file")

        # the converted folders run in the engine as the originals do
        if checker:
            r = subprocess.run([checker, "check-reference", copy], capture_output=True, text=True,
                               timeout=600)
            assert r.returncode == 0, r.stdout[-2000:] + r.stderr
            n += 1
            print(f"ok {n} - converted models pass the reference check")
    print(f"1..{n}")


if __name__ == "__main__":
    main()
