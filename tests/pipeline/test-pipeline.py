#!/usr/bin/python3
"""The embedded model end to end through reverie-cli: determinism, recipes,
batches, prompt following, variations, inpainting, outpainting (extend) and bad input (prompt
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


def extend():
    """Outpainting: the source's pixels come out exactly, the canvas has the
    borders' size, the same seed gives the same bytes, candidates use seed + k,
    transparent pixels are filled, and bad borders are refused clearly."""
    prompt = "a red circle on a blue background"
    fast = ["--steps", "4", "--prior-steps", "2", "-q"]
    run("generate", prompt, "-o", path("e-src.png"), "--seed", "11", *fast)
    src = Image.open(path("e-src.png")).convert("RGB")
    run("extend", path("e-src.png"), prompt, "--left", "32", "--right", "32", "--top", "32",
        "--bottom", "32", "--seed", "5", "-o", path("e1.png"), *fast)
    out = Image.open(path("e1.png"))
    check(out.size == (128, 128), "extending 64x64 by 32 on every side gives 128x128 (%dx%d)" % out.size)
    check(out.convert("RGB").crop((32, 32, 96, 96)).tobytes() == src.tobytes(),
          "the original 64x64 pixels are unchanged, bit for bit")
    check(out.convert("RGB").crop((0, 0, 32, 128)).getextrema() != ((0, 0), (0, 0), (0, 0)),
          "the new border is painted")
    run("extend", path("e-src.png"), prompt, "--left", "32", "--right", "32", "--top", "32",
        "--bottom", "32", "--seed", "5", "-o", path("e2.png"), *fast)
    check(open(path("e1.png"), "rb").read() == open(path("e2.png"), "rb").read() or
          pixels(path("e1.png")) == pixels(path("e2.png")), "the same seed gives the same picture")
    info = run("info", path("e1.png")).stdout
    for needle in ("kind               extend", "extend_left        32", "extend_bottom      32",
                   "source_sha256", '"x": 64, "y": 64, "width": 64, "height": 64'):
        check(needle in info, "the recipe holds %r" % needle)
    text = Image.open(path("e1.png")).text
    frames = json.loads(text["reverie:frames"])
    # four frames side by side, each holding a quarter of the source: one batch
    check(sorted((f["x"], f["y"]) for f in frames) == [(0, 0), (0, 64), (64, 0), (64, 64)] and
          all(f["width"] == 64 and f["height"] == 64 for f in frames),
          "the recipe lists the 4 corner frames of 64x64: %s" % frames)
    check(float(text.get("reverie:extend_context", -1)) == 1.0 and float(text["reverie:decoder_guidance"]) == 1.0,
          "the recipe records the model set's extend context (1) and guidance (1)")
    # the prompt alone conditions the frames with --context 0 (another picture, the same source pixels)
    run("extend", path("e-src.png"), prompt, "--left", "32", "--right", "32", "--top", "32",
        "--bottom", "32", "--seed", "5", "--context", "0", "-o", path("e-prompt.png"), *fast)
    ep = Image.open(path("e-prompt.png"))
    check(ep.convert("RGB").crop((32, 32, 96, 96)).tobytes() == src.tobytes() and
          pixels(path("e-prompt.png")) != pixels(path("e1.png")) and
          float(ep.text["reverie:extend_context"]) == 0.0,
          "--context 0 paints other borders around the same source and is recorded")
    p = run("extend", path("e-src.png"), prompt, "--left", "8", "--context", "1.5", "-o", path("e-bad.png"),
            ok=False)
    check(p.returncode != 0 and "--context" in p.stderr, "--context over 1 is refused clearly")
    # a border wider than half a frame on one side: frames that would not see the source are
    # not used; the frames grow outward from it on a half-frame grid, each seeing the last
    run("extend", path("e-src.png"), prompt, "--left", "96", "--seed", "6", "-o", path("e-wide.png"), *fast)
    wide = Image.open(path("e-wide.png"))
    wf = json.loads(wide.text["reverie:frames"])
    check(wide.size == (160, 64) and wide.convert("RGB").crop((96, 0, 160, 64)).tobytes() == src.tobytes(),
          "--left 96 gives 160x64 with the source on the right, unchanged")
    check([f["x"] for f in wf] == [64, 32, 0], "its frames run outward from the source: %s" % wf)

    # asymmetric borders; -n 2: candidate 2 is seed + 1 alone
    run("extend", path("e-src.png"), prompt, "--right", "16", "--top", "8", "--seed", "20", "-n", "2",
        "-o", path("en.png"), *fast)
    check(Image.open(path("en-1.png")).size == (80, 72), "--right 16 --top 8 gives 80x72")
    check(Image.open(path("en-1.png")).convert("RGB").crop((0, 8, 64, 72)).tobytes() == src.tobytes(),
          "asymmetric borders keep the original where it was placed")
    run("extend", path("e-src.png"), prompt, "--right", "16", "--top", "8", "--seed", "21",
        "-o", path("en-alone.png"), *fast)
    check(pixels(path("en-2.png")) == pixels(path("en-alone.png")), "candidate 2 of -n 2 is seed + 1 alone")

    # transparent pixels are filled too, without borders
    hole = Image.open(path("e-src.png")).convert("RGBA")
    for y in range(64):
        for x in range(40, 64):
            hole.putpixel((x, y), (0, 0, 0, 0))
    hole.save(path("e-hole.png"))
    run("extend", path("e-hole.png"), prompt, "--seed", "3", "-o", path("e-hole-out.png"), *fast)
    filled = Image.open(path("e-hole-out.png"))
    check(filled.size == (64, 64) and filled.mode == "RGBA", "a transparent area is filled in place")
    check(filled.crop((40, 0, 64, 64)).getextrema()[3] == (255, 255), "the transparent area is opaque now")
    check(filled.crop((0, 0, 40, 64)).tobytes() == hole.crop((0, 0, 40, 64)).tobytes(),
          "the opaque pixels are unchanged")

    # bad input
    clear = Image.new("RGBA", (32, 32), (0, 0, 0, 0))
    clear.save(path("e-clear.png"))
    for args, needle, what in (
            ([], "Nothing to fill", "zero borders on an opaque picture"),
            (["--left", "-4"], "0 or more", "a negative border"),
            (["--left", "5000"], "4096", "a canvas over 4096 pixels a side"),
            (["--left", "8", "--image-is-clear"], "entirely transparent", "an entirely transparent picture")):
        src_path = path("e-clear.png") if "--image-is-clear" in args else path("e-src.png")
        args = [a for a in args if a != "--image-is-clear"]
        p = run("extend", src_path, prompt, *args, "-o", path("e-bad.png"), "-q", ok=False)
        check(p.returncode != 0 and needle in p.stderr, "%s is refused clearly (%s)" % (what, p.stderr.strip()))
    check(not os.path.exists(path("e-bad.png")), "nothing is written after an error")
    p = run("extend", path("e-src.png"), "-o", path("e-bad.png"), "--left", "8", ok=False)
    check(p.returncode != 0 and "usage" in p.stderr, "a missing prompt gives the usage")


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
        "extend": extend,
    }[CHECK]()
