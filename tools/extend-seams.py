#!/usr/bin/python3
"""Seam visibility of an extended picture (reverie-cli extend): the mean
absolute difference of neighbouring pixels (RGB, 0-255, horizontal and
vertical pairs) across the boundaries between the areas that different
frames filled, across the boundary between the source and the new area, and
inside areas one frame filled. The areas are replayed from the recipe's
frames and borders (the source taken as opaque).

Usage: extend-seams.py OUT.png [--json]"""
import json
import sys

import numpy as np
from PIL import Image


def labels(text, width, height):
    left, top = int(text.get("reverie:extend_left", 0)), int(text.get("reverie:extend_top", 0))
    right, bottom = int(text.get("reverie:extend_right", 0)), int(text.get("reverie:extend_bottom", 0))
    owner = np.full((height, width), -1, dtype=np.int32)
    owner[top:height - bottom, left:width - right] = 0
    for k, f in enumerate(json.loads(text["reverie:frames"])):
        view = owner[f["y"]:f["y"] + f["height"], f["x"]:f["x"] + f["width"]]
        view[view < 0] = k + 1
    return owner


def measure(path):
    img = Image.open(path)
    px = np.asarray(img.convert("RGB"), dtype=np.int32)
    owner = labels(img.text, img.width, img.height)
    sums = {"frame_frame": [0, 0], "source_frame": [0, 0], "inside_frames": [0, 0], "inside_source": [0, 0]}
    for a, b, la, lb in ((px[:, 1:], px[:, :-1], owner[:, 1:], owner[:, :-1]),
                         (px[1:], px[:-1], owner[1:], owner[:-1])):
        diff = np.abs(a - b).mean(axis=-1)
        for name, sel in (("frame_frame", (la != lb) & (la > 0) & (lb > 0)),
                          ("source_frame", (la != lb) & ((la == 0) | (lb == 0))),
                          ("inside_frames", (la == lb) & (la > 0)),
                          ("inside_source", (la == lb) & (la == 0))):
            sums[name][0] += float(diff[sel].sum())
            sums[name][1] += int(sel.sum())
    r = {k: (s / n if n else None) for k, (s, n) in sums.items()}
    r["pairs"] = {k: n for k, (s, n) in sums.items()}
    inside = r["inside_frames"] or 0
    for k in ("frame_frame", "source_frame"):
        r[k + "_ratio"] = r[k] / inside if r[k] is not None and inside > 0 else None
    return r


if __name__ == "__main__":
    r = measure(sys.argv[1])
    if "--json" in sys.argv:
        print(json.dumps(r))
    else:
        for k in ("frame_frame", "source_frame", "inside_frames", "inside_source"):
            print("%-14s %6.2f  (%d pairs)" % (k, r[k] or 0, r["pairs"][k]))
        for k in ("frame_frame_ratio", "source_frame_ratio"):
            print("%-18s %s" % (k, "%.2f" % r[k] if r[k] is not None else "-"))
