"""The reverie-tiny scene grammar (docs/tiny-model.md): flat-colour scenes with one or two shapes
and their prompts, deterministic per seed. Seeds below HELDOUT_SEED are for training, seeds from
HELDOUT_SEED on are reserved for evaluation."""
import random

import numpy as np

SIDE = 64
HELDOUT_SEED = 1_000_000_000

PALETTE = {
    "red": (220, 40, 40), "orange": (240, 140, 20), "yellow": (240, 220, 40), "green": (40, 170, 60),
    "blue": (40, 80, 220), "purple": (140, 50, 180), "white": (245, 245, 245), "black": (20, 20, 20),
}
COLORS = list(PALETTE)
SHAPES = ["circle", "square", "triangle", "ring"]
SIZES = {"small": (0.22, 0.30), "large": (0.45, 0.60)}
POSITIONS = ["left", "right", "top", "bottom", "center"]
RELATIONS = ["left", "above"]
MIN_REL = 0.20  # relation offset between centroids, fraction of the side
WORDS = sorted(set(COLORS + SHAPES + list(SIZES) + POSITIONS +
                   "a at the on background to of above".split()))


_GRIDS = {}


def _grid(n):
    if n not in _GRIDS:
        _GRIDS[n] = np.mgrid[0:n, 0:n].astype(np.float64) + 0.5
    return _GRIDS[n]


def shape_mask(kind, cx, cy, side, n=SIDE, box=None):
    """Boolean (n, n) mask of a shape whose bounding box has the given side, centred on (cx, cy)
    (the bounding-box centre, in pixels); pixels are sampled at their centres. box=(x0, y0, w, h):
    only that window of the n x n picture, an (h, w) mask (the window may reach outside it)."""
    if box is None:
        y, x = _grid(n)
    else:
        x0, y0, w, h = box
        y, x = np.mgrid[y0:y0 + h, x0:x0 + w].astype(np.float64) + 0.5
    h = side / 2.0
    dx, dy = x - cx, y - cy
    if kind == "square":
        return (np.abs(dx) <= h) & (np.abs(dy) <= h)
    if kind == "circle":
        return dx * dx + dy * dy <= h * h
    if kind == "ring":
        r2 = dx * dx + dy * dy
        return (r2 <= h * h) & (r2 > (h / 2) ** 2)
    if kind == "triangle":
        # apex up: apex at (cx, cy - h), base from (cx - h, cy + h) to (cx + h, cy + h)
        t = (y - (cy - h)) / side  # 0 at the apex, 1 at the base
        return (t >= 0) & (t <= 1) & (np.abs(dx) <= t * h)
    raise ValueError(kind)


def centroid(mask):
    ys, xs = np.nonzero(mask)
    return (xs.mean() + 0.5) / mask.shape[1], (ys.mean() + 0.5) / mask.shape[0]


def third(v):
    return 0 if v < 1 / 3 else (2 if v > 2 / 3 else 1)


def position_of(cx, cy):
    """The grammar positions a centroid (fractions of the side) satisfies."""
    out = []
    if third(cx) == 0:
        out.append("left")
    if third(cx) == 2:
        out.append("right")
    if third(cy) == 0:
        out.append("top")
    if third(cy) == 2:
        out.append("bottom")
    if third(cx) == 1 and third(cy) == 1:
        out.append("center")
    return out


class Shape:
    def __init__(self, kind, color, size, cx, cy, side):
        self.kind, self.color, self.size = kind, color, size
        self.cx, self.cy, self.side = cx, cy, side  # bbox centre in pixels, bbox side in pixels
        self.mask = shape_mask(kind, cx, cy, side)
        self.centroid = centroid(self.mask)

    def bbox(self):
        ys, xs = np.nonzero(self.mask)
        return xs.min(), ys.min(), xs.max(), ys.max()

    def as_dict(self):
        return {"kind": self.kind, "color": self.color, "size": self.size, "cx": self.centroid[0],
                "cy": self.centroid[1], "side": self.side / SIDE}


class Scene:
    def __init__(self, bg, shapes, prompt, template, named):
        self.bg, self.shapes, self.prompt, self.template, self.named = bg, shapes, prompt, template, named

    def render(self, only=None):
        """uint8 (64, 64, 3) image; `only` limits the drawing to some shape indices."""
        img = np.empty((SIDE, SIDE, 3), np.uint8)
        img[:] = PALETTE[self.bg]
        for i, s in enumerate(self.shapes):
            if only is None or i in only:
                img[s.mask] = PALETTE[s.color]
        return img

    def render_at(self, n, box=None, only=None):
        """uint8 (n, n, 3) image of the scene drawn at n x n pixels: the shapes' centres and sides
        scaled by n / 64, pixels sampled at their centres with hard edges, as render() does at 64
        (render_at(64) is render()). box=(x0, y0, w, h): only that window, (h, w, 3), which costs
        only its own pixels (a crop of a 1024 px render)."""
        f = n / SIDE
        w, h = (n, n) if box is None else box[2:]
        img = np.empty((h, w, 3), np.uint8)
        img[:] = PALETTE[self.bg]
        for i, s in enumerate(self.shapes):
            if only is None or i in only:
                img[shape_mask(s.kind, s.cx * f, s.cy * f, s.side * f, n, box)] = PALETTE[s.color]
        return img

    def spec(self):
        """What the prompt names, in the form the checker takes."""
        return dict(self.named)


def _place(rng, kind, size, pos=None, tries=200):
    lo, hi = SIZES[size]
    for _ in range(tries):
        side = rng.uniform(lo, hi) * SIDE
        h = side / 2
        cx = rng.uniform(h + 1, SIDE - h - 1)
        cy = rng.uniform(h + 1, SIDE - h - 1)
        if pos is not None:
            # aim at the requested third, then verify on the rendered centroid
            a, b = {"left": (0, 1 / 3), "right": (2 / 3, 1), "center": (1 / 3, 2 / 3)}.get(pos, (0, 1))
            if pos in ("left", "right", "center"):
                cx = rng.uniform(max(h + 1, a * SIDE + 1), min(SIDE - h - 1, b * SIDE - 1)) if max(h + 1, a * SIDE + 1) < min(SIDE - h - 1, b * SIDE - 1) else -1
            a, b = {"top": (0, 1 / 3), "bottom": (2 / 3, 1), "center": (1 / 3, 2 / 3)}.get(pos, (0, 1))
            if pos in ("top", "bottom", "center"):
                cy = rng.uniform(max(h + 1, a * SIDE + 1), min(SIDE - h - 1, b * SIDE - 1)) if max(h + 1, a * SIDE + 1) < min(SIDE - h - 1, b * SIDE - 1) else -1
            if cx < 0 or cy < 0:
                continue
        s = Shape(kind, None, size, cx, cy, side)
        if pos is not None and pos not in position_of(*s.centroid):
            continue
        return s
    return None


def _apart(a, b, gap=3):
    ax0, ay0, ax1, ay1 = a.bbox()
    bx0, by0, bx1, by1 = b.bbox()
    return ax1 + gap < bx0 or bx1 + gap < ax0 or ay1 + gap < by0 or by1 + gap < ay0


def make_scene(seed, template=None):
    """The scene and prompt of a seed. template: None (random), 'single', 'left' or 'above'."""
    rng = random.Random(seed)
    if template is None:
        template = rng.choice(["single", "single", "left", "above"])
    if template == "single":
        kind = rng.choice(SHAPES)
        color = rng.choice(COLORS)
        bg = rng.choice([c for c in COLORS if c != color])
        name_size = rng.random() < 0.5
        name_pos = rng.random() < 0.5
        name_bg = rng.random() < 0.5
        size = rng.choice(list(SIZES))
        pos = rng.choice(POSITIONS) if name_pos else None
        s = _place(rng, kind, size, pos)
        while s is None:  # a large shape cannot always reach a third; draw a small one instead
            size = "small"
            s = _place(rng, kind, size, pos)
        s.color = color
        words = ["a"] + ([size] if name_size else []) + [color, kind]
        if name_pos:
            words += ["at", "the", pos]
        if name_bg:
            words += ["on", "a", bg, "background"]
        named = {"template": "single", "shapes": [{"color": color, "kind": kind}], "bg": bg if name_bg else None}
        if name_size:
            named["shapes"][0]["size"] = size
        if name_pos:
            named["shapes"][0]["position"] = pos
        return Scene(bg, [s], " ".join(words), template, named)
    # two shapes in a relation
    ka, kb = rng.choice(SHAPES), rng.choice(SHAPES)
    ca = rng.choice(COLORS)
    cb = rng.choice([c for c in COLORS if c != ca])
    bg = rng.choice([c for c in COLORS if c not in (ca, cb)])
    name_bg = rng.random() < 0.5
    while True:
        sa = _place(rng, ka, rng.choice(list(SIZES)))
        sb = _place(rng, kb, rng.choice(list(SIZES)))
        if sa is None or sb is None or not _apart(sa, sb):
            continue
        (ax, ay), (bx, by) = sa.centroid, sb.centroid
        if template == "left" and bx - ax >= MIN_REL + 0.02:
            break
        if template == "above" and by - ay >= MIN_REL + 0.02:
            break
    sa.color, sb.color = ca, cb
    rel = "to the left of" if template == "left" else "above"
    words = ["a", ca, ka] + rel.split() + ["a", cb, kb]
    if name_bg:
        words += ["on", "a", bg, "background"]
    named = {"template": template, "shapes": [{"color": ca, "kind": ka}, {"color": cb, "kind": kb}],
             "relation": template, "bg": bg if name_bg else None}
    return Scene(bg, [sa, sb], " ".join(words), template, named)


EMBED_DIM = 72


def attribute_embedding(scene):
    """The image-embedding target of a scene (72 numbers): background colour one-hot, then per
    palette colour [present, kind one-hot (4), centroid x, centroid y, size], zero for absent
    colours. The CLIP vision tower is trained to compute this from pixels and the zero image to
    map to the zero vector (the unconditional embedding)."""
    e = np.zeros(EMBED_DIM, np.float32)
    e[COLORS.index(scene.bg)] = 1
    for s in scene.shapes:
        o = 8 + 8 * COLORS.index(s.color)
        e[o] = 1
        e[o + 1 + SHAPES.index(s.kind)] = 1
        e[o + 5] = (s.centroid[0] - 0.5) * 2
        e[o + 6] = (s.centroid[1] - 0.5) * 2
        e[o + 7] = (s.side / SIDE - 0.41) / 0.15
    return e


def attributes(scene):
    """Per-colour slots of a rendered scene, for auxiliary training targets."""
    out = {"bg": COLORS.index(scene.bg), "present": np.zeros(8, np.float32), "kind": np.zeros(8, np.int64),
           "geom": np.zeros((8, 3), np.float32)}
    for s in scene.shapes:
        i = COLORS.index(s.color)
        out["present"][i] = 1
        out["kind"][i] = SHAPES.index(s.kind)
        out["geom"][i] = (s.centroid[0], s.centroid[1], s.side / SIDE)
    return out


if __name__ == "__main__":
    for sd in range(12):
        print(make_scene(sd).prompt)
