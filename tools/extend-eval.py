#!/usr/bin/python3
"""Outpainting with the embedded model, measured: for N prompts of the scene grammar (held-out
seeds), `reverie-cli generate` makes the 64 px source and `reverie-cli extend` adds BORDER pixels
on every side. For each picture: the wall time of the extend command (cold: a new process, model
load included), whether the source's pixels came through exactly, the seam figures of
extend-seams.py (mean absolute difference of neighbouring pixels across the source's and the
frames' boundaries, over that inside frames), and the prompt checker on the extended picture
(docs/tiny-model.md §2: its background test reads the border pixels, all of them new: they must
show the source's background, and the one the prompt names if it names one) and on the source's
region (the shape tests).

Usage: extend-eval.py [--n 12] [--border 32] [--seed 1000000000] [--cli build/src/cli/reverie-cli]
                      [--keep DIR] [--sheet OUT.png] [--extend-args "--context 0.5 …"]"""
import argparse
import importlib.util
import os
import subprocess
import sys
import tempfile
import time

import numpy as np
from PIL import Image

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "train"))
import checker  # noqa: E402
import scenes  # noqa: E402

spec = importlib.util.spec_from_file_location("extend_seams", os.path.join(HERE, "extend-seams.py"))
seams = importlib.util.module_from_spec(spec)
spec.loader.exec_module(seams)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=12)
    ap.add_argument("--border", type=int, default=32)
    ap.add_argument("--seed", type=int, default=1_000_000_000)
    ap.add_argument("--cli", default=os.path.join(HERE, "..", "build", "src", "cli", "reverie-cli"))
    ap.add_argument("--keep", default="", help="keep the pictures in this folder")
    ap.add_argument("--sheet", default="", help="write the sources and results side by side here")
    ap.add_argument("--extend-args", default="", help="more options for reverie-cli extend (one string)")
    a = ap.parse_args()
    out_dir = a.keep or tempfile.mkdtemp(prefix="reverie-extend-")
    os.makedirs(out_dir, exist_ok=True)
    b = a.border
    rows, pairs = [], []
    print("| prompt | time | source kept | source seam | frame seam | background | shapes | source's own shapes |")
    print("|---|---|---|---|---|---|---|---|")
    for i in range(a.n):
        sc = scenes.make_scene(a.seed + i)
        src = os.path.join(out_dir, "src-%02d.png" % i)
        out = os.path.join(out_dir, "ext-%02d.png" % i)
        subprocess.run([a.cli, "generate", sc.prompt, "--seed", str(i + 1), "-o", src], check=True,
                       capture_output=True)
        t = time.monotonic()
        subprocess.run([a.cli, "extend", src, sc.prompt, "--left", str(b), "--right", str(b), "--top", str(b),
                        "--bottom", str(b), "--seed", str(i + 1), "-o", out] + a.extend_args.split(), check=True,
                       capture_output=True)
        took = time.monotonic() - t
        s_px = np.asarray(Image.open(src).convert("RGB"))
        e_img = Image.open(out)
        e_px = np.asarray(e_img.convert("RGB"))
        kept = bool((e_px[b:b + s_px.shape[0], b:b + s_px.shape[1]] == s_px).all())
        m = seams.measure(out)
        spec_ = sc.spec()
        src_ratio = m["source_frame_ratio"] if m["source_frame_ratio"] is not None else float("nan")
        fr_ratio = m["frame_frame_ratio"]
        # the background of the extended picture (its border: all new pixels) is the source's,
        # and the one the prompt names when it names one
        whole, source = checker.analyse(e_px), checker.analyse(s_px)
        named = spec_.get("bg")
        bg_ok = whole["bg"] == source["bg"] and (not named or whole["bg"] == named)
        shapes_ok, _ = checker.check(e_px[b:b + s_px.shape[0], b:b + s_px.shape[1]], spec_)
        own_ok, _ = checker.check(s_px, spec_)
        rows.append((took, kept, src_ratio, fr_ratio, bg_ok, shapes_ok, own_ok))
        pairs.append((src, out))
        print("| %s | %.2f s | %s | %.2f | %s | %s | %s | %s |" % (
            sc.prompt, took, "yes" if kept else "NO", src_ratio, "-" if fr_ratio is None else "%.2f" % fr_ratio,
            "yes" if bg_ok else "no", "yes" if shapes_ok else "no", "yes" if own_ok else "no"), flush=True)
    t = np.array([r[0] for r in rows])
    sr = np.array([r[2] for r in rows])
    fr = np.array([r[3] for r in rows if r[3] is not None])
    print()
    print("extend %d px on every side, %d pictures: time median %.2f s, max %.2f s" % (b, len(rows), np.median(t), t.max()))
    print("source pixels kept exactly: %d of %d" % (sum(r[1] for r in rows), len(rows)))
    print("source seam / inside frames: median %.2f, max %.2f, within 2x on %d of %d" % (
        np.median(sr), sr.max(), int((sr <= 2).sum()), len(sr)))
    if len(fr):
        print("frame seam / inside frames: median %.2f, max %.2f, within 2x on %d of %d" % (
            np.median(fr), fr.max(), int((fr <= 2).sum()), len(fr)))
    print("background test on the extended picture: %d of %d; shape tests on the source's region: %d of %d "
          "(on the source alone: %d; the same answer on %d)" % (
              sum(r[4] for r in rows), len(rows), sum(r[5] for r in rows), len(rows), sum(r[6] for r in rows),
              sum(r[5] == r[6] for r in rows)))
    if a.sheet:
        cell = 4 * (64 + 2 * b) // 2
        sheet = Image.new("RGB", (2 * cell + 8, len(pairs) * (cell + 8)), (128, 128, 128))
        for k, (s, o) in enumerate(pairs):
            si = Image.open(s).convert("RGB")
            oi = Image.open(o).convert("RGB").resize((cell, cell), Image.NEAREST)
            si = si.resize((si.width * cell // (64 + 2 * b), si.height * cell // (64 + 2 * b)), Image.NEAREST)
            sheet.paste(si, ((cell - si.width) // 2, k * (cell + 8) + (cell - si.height) // 2))
            sheet.paste(oi, (cell + 8, k * (cell + 8)))
        sheet.save(a.sheet)
        print("sheet: " + a.sheet)


if __name__ == "__main__":
    main()
