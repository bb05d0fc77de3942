"""The prompt-following checker of docs/tiny-model.md.

Rules, exactly as implemented (a C port must follow these):
  * the image is resampled to 64x64 (box average when larger, nearest when smaller);
  * background = the palette colour nearest (Euclidean RGB) to the per-channel median of the
    252 border pixels;
  * object pixels: Euclidean RGB distance to that palette colour > 60;
  * shapes: 4-connected components of object pixels with at least 20 pixels;
  * per shape: colour = palette colour nearest the per-channel median of its pixels; centroid =
    mean of (x + 0.5, y + 0.5) / 64; size = max(bbox width, bbox height) / 64, 'small' when
    < 0.375, else 'large'; position = the centroid's thirds (left x < 1/3, right x > 2/3, top
    y < 1/3, bottom y > 2/3, center both in [1/3, 2/3]); kind = 'ring' when the pixel under the
    centroid is not an object pixel, else by fill ratio (pixels / bbox area): square > 0.88,
    circle 0.65..0.88, triangle < 0.65;
  * a prompt is satisfied when the number of shapes equals the number named and every named
    attribute holds; for two shapes, some assignment of the found shapes to A and B matches
    colours and kinds and B's centroid is right of (below) A's by >= 0.2.
"""
import numpy as np

from scenes import COLORS, PALETTE

SIDE = 64
PAL = np.array([PALETTE[c] for c in COLORS], np.float64)
FAR = 60.0
MIN_PIXELS = 20
SMALL_BELOW = 0.375
REL = 0.2


def nearest(rgb):
    return COLORS[int(np.argmin(((PAL - np.asarray(rgb, np.float64)) ** 2).sum(1)))]


def resample64(img):
    a = np.asarray(img)[..., :3].astype(np.float64)
    h, w = a.shape[:2]
    if (h, w) == (SIDE, SIDE):
        return a
    if h % SIDE == 0 and w % SIDE == 0:
        return a.reshape(SIDE, h // SIDE, SIDE, w // SIDE, 3).mean(axis=(1, 3))
    ys = (np.arange(SIDE) * h) // SIDE
    xs = (np.arange(SIDE) * w) // SIDE
    return a[ys][:, xs]


def components(mask):
    """4-connected components as lists of (y, x) index arrays."""
    lab = np.zeros(mask.shape, np.int32)
    comps = []
    h, w = mask.shape
    for y0 in range(h):
        for x0 in range(w):
            if not mask[y0, x0] or lab[y0, x0]:
                continue
            n = len(comps) + 1
            stack = [(y0, x0)]
            lab[y0, x0] = n
            pts = []
            while stack:
                y, x = stack.pop()
                pts.append((y, x))
                for yy, xx in ((y - 1, x), (y + 1, x), (y, x - 1), (y, x + 1)):
                    if 0 <= yy < h and 0 <= xx < w and mask[yy, xx] and not lab[yy, xx]:
                        lab[yy, xx] = n
                        stack.append((yy, xx))
            comps.append(np.array(pts))
    return comps


def analyse(img):
    """{'bg': colour, 'shapes': [{color, kind, size, side, cx, cy, positions, pixels}]} of an image."""
    a = resample64(img)
    border = np.concatenate([a[0], a[-1], a[1:-1, 0], a[1:-1, -1]])
    bg = nearest(np.median(border, axis=0))
    dist = np.sqrt(((a - np.array(PALETTE[bg], np.float64)) ** 2).sum(-1))
    obj = dist > FAR
    shapes = []
    for pts in components(obj):
        if len(pts) < MIN_PIXELS:
            continue
        ys, xs = pts[:, 0], pts[:, 1]
        color = nearest(np.median(a[ys, xs], axis=0))
        cx, cy = (xs.mean() + 0.5) / SIDE, (ys.mean() + 0.5) / SIDE
        bw, bh = xs.max() - xs.min() + 1, ys.max() - ys.min() + 1
        side = max(bw, bh) / SIDE
        fill = len(pts) / float(bw * bh)
        if not obj[min(int(cy * SIDE), SIDE - 1), min(int(cx * SIDE), SIDE - 1)]:
            kind = "ring"
        elif fill > 0.88:
            kind = "square"
        elif fill >= 0.65:
            kind = "circle"
        else:
            kind = "triangle"
        pos = []
        tx = 0 if cx < 1 / 3 else (2 if cx > 2 / 3 else 1)
        ty = 0 if cy < 1 / 3 else (2 if cy > 2 / 3 else 1)
        pos += {0: ["left"], 2: ["right"], 1: []}[tx] + {0: ["top"], 2: ["bottom"], 1: []}[ty]
        if tx == 1 and ty == 1:
            pos.append("center")
        shapes.append({"color": color, "kind": kind, "size": "small" if side < SMALL_BELOW else "large",
                       "side": side, "cx": cx, "cy": cy, "positions": pos, "pixels": len(pts),
                       "mask_yx": pts})
    return {"bg": bg, "shapes": shapes}


def shape_ok(found, want):
    if found["color"] != want["color"] or found["kind"] != want["kind"]:
        return False
    if "size" in want and found["size"] != want["size"]:
        return False
    if "position" in want and want["position"] not in found["positions"]:
        return False
    return True


def check(img, spec):
    """(satisfied, per-attribute dict) of an image against a prompt spec (scenes.Scene.spec())."""
    r = analyse(img)
    want = spec["shapes"]
    found = r["shapes"]
    attrs = {"count": len(found) == len(want)}
    if spec.get("bg"):
        attrs["bg"] = r["bg"] == spec["bg"]
    if len(want) == 1:
        f = found[0] if len(found) == 1 else (max(found, key=lambda s: s["pixels"]) if found else None)
        w = want[0]
        attrs["color"] = bool(f) and f["color"] == w["color"]
        attrs["kind"] = bool(f) and f["kind"] == w["kind"]
        if "size" in w:
            attrs["size"] = bool(f) and f["size"] == w["size"]
        if "position" in w:
            attrs["position"] = bool(f) and w["position"] in f["positions"]
    else:
        ok_pair = False
        colors_ok = kinds_ok = rel_ok = False
        if len(found) == 2:
            for a, b in ((found[0], found[1]), (found[1], found[0])):
                ca = a["color"] == want[0]["color"] and b["color"] == want[1]["color"]
                ka = a["kind"] == want[0]["kind"] and b["kind"] == want[1]["kind"]
                if spec["relation"] == "left":
                    ra = b["cx"] - a["cx"] >= REL
                else:
                    ra = b["cy"] - a["cy"] >= REL
                colors_ok |= ca
                kinds_ok |= ca and ka
                rel_ok |= ca and ra
                ok_pair |= ca and ka and ra
        attrs["color"] = colors_ok
        attrs["kind"] = kinds_ok
        attrs["relation"] = rel_ok
        attrs["pair"] = ok_pair
    ok = all(attrs.values())
    return ok, attrs


def main_shape(img):
    """(bg, colour, kind) of an image's largest shape (None for the shape when there is none)."""
    r = analyse(img)
    if not r["shapes"]:
        return r["bg"], None, None
    s = max(r["shapes"], key=lambda s: s["pixels"])
    return r["bg"], s["color"], s["kind"]


if __name__ == "__main__":
    import sys

    import scenes
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 2000
    fails = 0
    per = {}
    for i in range(n):
        sc = scenes.make_scene(scenes.HELDOUT_SEED + i)
        ok, attrs = check(sc.render(), sc.spec())
        t = per.setdefault(sc.template, [0, 0])
        t[0] += ok
        t[1] += 1
        if not ok:
            fails += 1
            if fails <= 10:
                print("miss:", sc.prompt, attrs, [(s.kind, s.side, s.centroid) for s in sc.shapes])
    print("ground truth satisfied: %d / %d (%.2f%%)" % (n - fails, n, 100.0 * (n - fails) / n))
    for k, (a, b) in per.items():
        print("  %-7s %d / %d" % (k, a, b))
