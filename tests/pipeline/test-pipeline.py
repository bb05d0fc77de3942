#!/usr/bin/python3
"""The embedded model end to end through reverie-cli: determinism, recipes,
batches, prompt following, variations, inpainting and bad input (prompt
following and edits are measured by reverie-dev eval).

Usage: test-pipeline.py REVERIE_CLI REVERIE_DEV CHECK [MODEL_DIR]
Exits 77 (skipped) when the embedded model is not there."""
import json
import os
import subprocess
import sys
import tempfile

from PIL import Image

CLI = sys.argv[1]
DEV = sys.argv[2]
CHECK = sys.argv[3]
MODEL = sys.argv[4] if len(sys.argv) > 4 else None
DEV_COMMANDS = ("eval", "bench", "check-reference")
TMP = tempfile.mkdtemp(prefix="reverie-pipeline-")


def run(*args, ok=True, timeout=600):
    cmd = [DEV if args and args[0] in DEV_COMMANDS else CLI] + list(args)
    if MODEL and args and args[0] in ("generate", "eval", "bench") and "--from" not in args:
        cmd += ["--model", MODEL]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if ok and p.returncode != 0:
        sys.exit("FAIL: %s\n%s%s" % (" ".join(cmd), p.stdout, p.stderr))
    return p


def pixels(path):
    return Image.open(path).convert("RGB").tobytes()


def path(name):
    return os.path.join(TMP, name)


def check(cond, what):
    print(("ok: " if cond else "FAIL: ") + what)
    if not cond:
        sys.exit(1)


def determinism():
    run("generate", "a red circle on a blue background", "-o", path("a.png"), "--seed", "42", "-q")
    run("generate", "a red circle on a blue background", "-o", path("b.png"), "--seed", "42", "-q")
    check(pixels(path("a.png")) == pixels(path("b.png")), "same seed and settings give the same pixels")
    run("generate", "a red circle on a blue background", "-o", path("c.png"), "--seed", "43", "-q")
    check(pixels(path("a.png")) != pixels(path("c.png")), "another seed gives another image")


def recipe():
    run("generate", "a green square above a white ring", "-o", path("r.png"), "--seed", "7",
        "--negative", "a black triangle", "--steps", "6", "-q")
    info = run("info", path("r.png")).stdout
    for needle in ("a green square above a white ring", "seed               7", "a black triangle",
                   "decoder_steps      6", "model_hash", "engine_version", "scheduler"):
        check(needle in info, "the recipe holds %r" % needle)
    run("generate", "--from", path("r.png"), "-o", path("r2.png"), "-q")
    check(pixels(path("r.png")) == pixels(path("r2.png")), "generate --from reproduces the image")
    # the same weights hash the same in another process (the hash names them in recipes)
    hashes = [line for p in ("r.png", "r2.png") for line in run("info", path(p)).stdout.splitlines()
              if line.startswith("model_hash")]
    check(len(hashes) == 2 and hashes[0] == hashes[1], "the model hash is the same in every run")


def batch():
    out = run("generate", "a yellow triangle", "-n", "2", "--seed", "100", "-o", path("n.png"), "-q").stdout
    check(os.path.exists(path("n-1.png")) and os.path.exists(path("n-2.png")), "-n 2 writes n-1.png and n-2.png")
    check("seed 101" in out, "the second image reports its own seed")
    run("generate", "a yellow triangle", "--seed", "101", "-o", path("alone.png"), "-q")
    check(pixels(path("n-2.png")) == pixels(path("alone.png")), "image 2 of a batch regenerates alone from its seed")


# The thresholds sit below what the shipped reverie-tiny measures on these
# fixed seeds (40 prompts: single 95%, relation 80%; 12 edits: background kept
# 100%, main shape kept 100%, inpainting 100%), with room for other Vulkan
# drivers' rounding; tools/train/README.md has the full figures. Raise them
# with the model.
def follows(min_single, min_relation, n):
    out = run("eval", "--n", str(n), "--seed", "9000", "--json", timeout=3600).stdout
    r = json.loads(out)
    print(json.dumps(r, indent=1))
    check(r["single"] >= min_single, "single-shape prompts satisfied %.1f%% >= %.1f%%" % (r["single"], min_single))
    check(r["relation"] >= min_relation, "relation prompts satisfied %.1f%% >= %.1f%%" % (r["relation"], min_relation))


def edits(n):
    out = run("eval", "--n", "0", "--variations", str(n), "--inpaint", str(n), "--seed", "500", "--json",
              timeout=3600).stdout
    r = json.loads(out)
    print(json.dumps(r, indent=1))
    check(r["variation_background"] >= 80, "variations keep the background (%.1f%%)" % r["variation_background"])
    check(r["variation_shape"] >= 70, "variations keep the main shape (%.1f%%)" % r["variation_shape"])
    check(r["inpaint_shape"] >= 70, "inpainting puts the new shape in the region (%.1f%%)" % r["inpaint_shape"])
    check(r["inpaint_unchanged_outside"] == 100, "inpainting leaves every pixel outside the mask unchanged")


def bad_input():
    p = run("generate", "x" * 50000, "-o", path("long.png"), "-q", ok=False)
    check(p.returncode == 0 and "ignored" in p.stderr, "a 50,000-character prompt works and the cut is reported")
    p = run("generate", "a red circle", "-o", path("bad.png"), "--size", "64xx", ok=False)
    check(p.returncode != 0 and "--size" in p.stderr, "a malformed size is refused clearly")
    p = run("generate", "a red circle", "-o", path("bad.png"), "--scheduler", "euler", ok=False)
    check(p.returncode != 0 and "scheduler" in p.stderr, "an unknown scheduler is refused clearly")
    p = run("generate", "a red circle", "-o", os.path.join(TMP, "no", "such", "dir", "x.png"), ok=False)
    check(p.returncode != 0 and "does not exist" in p.stderr, "an output folder that does not exist is refused")
    check(not os.path.exists(path("bad.png")), "nothing is written after an error")
    p = run("info", path("nothing.png"), ok=False)
    check(p.returncode != 0, "info on a missing file fails")
    with open(path("trunc.png"), "wb") as f:
        f.write(open(path("a.png") if os.path.exists(path("a.png")) else __file__, "rb").read()[:100])
    p = run("info", path("trunc.png"), ok=False)
    check(p.returncode != 0 and "reverie-cli:" in p.stderr, "a truncated PNG gives a clear error")


if __name__ == "__main__":
    if MODEL is None or not os.path.isdir(os.path.join(MODEL, "prior")):
        print("SKIP: the embedded model is not in %s" % MODEL)
        sys.exit(77)
    {
        "determinism": determinism,
        "recipe": recipe,
        "batch": batch,
        "follows": lambda: follows(float(os.environ.get("MIN_SINGLE", 75)), float(os.environ.get("MIN_RELATION", 60)),
                                   int(os.environ.get("EVAL_N", 40))),
        "edits": lambda: edits(int(os.environ.get("EVAL_EDITS", 12))),
        "bad-input": bad_input,
    }[CHECK]()
