#!/usr/bin/python3
"""How well can any x4 upscaler do on the scene grammar? An estimate of the best held-out PSNR
at 256 px that a 64 px picture allows, to set beside upscale_eval.py's figures.

    upscale_bound.py [--n 100] [--seed 1000000000] [--samples 64] [--model data/models/reverie-tiny]

A 64 px render samples each pixel at its centre with hard edges, so it fixes a shape's centre
and side only to within an interval: every (cx, cy, side) whose 64 px render is the same picture
is as likely as the true one (the grammar draws them uniformly). The estimator that minimises
the expected squared error at 256 px is the mean of the 256 px renders over that set. This
script draws the set shape by shape (hit-and-run among the values for which the scene, with that shape moved and
the others where they are, renders to the same 64 px picture), averages --samples 256 px renders
of joint draws, and scores that mean against the exact 256 px render: PSNR over
RGB (peak 255), the mean over scenes of each picture's PSNR, as upscale_eval.py computes it.

The input here is the exact 64 px render. The decoder hands the upscaler a MoVQ round trip,
which says less (upscale_eval.py: about 30 dB from the exact render), so an upscaler of the
decoder's pictures does worse than this estimate; the script also prints the figures such an
upscaler is measured against (bicubic of the MoVQ round trip, and that + 3 dB). The estimate
leans slightly high where shapes overlap: each shape is drawn with the others at their true
places, which a picture does not quite reveal."""
import argparse
import os
import sys
import time

import numpy as np
from PIL import Image

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import scenes as S  # noqa: E402
import upscale_eval as U  # noqa: E402

REPO = os.path.abspath(os.path.join(HERE, "..", ".."))


def draw(bg, shapes, n):
    """uint8 (n, n, 3): shapes given as (kind, colour, cx, cy, side) in 64 px units."""
    img = np.empty((n, n, 3), np.uint8)
    img[:] = S.PALETTE[bg]
    f = n / S.SIDE
    for kind, colour, cx, cy, side in shapes:
        img[S.shape_mask(kind, cx * f, cy * f, side * f, n)] = S.PALETTE[colour]
    return img


def params(scene):
    return [(s.kind, s.color, s.cx, s.cy, s.side) for s in scene.shapes]


def consistent_draws(scene, i, rng, want, burn=20, thin=3):
    """(cx, cy, side) of shape i drawn uniformly from those that keep the 64 px picture, by
    hit-and-run: from the true values, a random direction, the segment of consistent values
    through the current point along it (found by doubling, then bisection), a uniform point of
    that segment; burn moves first, then one draw every thin moves."""
    base = params(scene)
    target = draw(scene.bg, base, S.SIDE)
    kind, colour = base[i][:2]

    def ok(q):
        if q[2] <= 0:
            return False
        trial = list(base)
        trial[i] = (kind, colour, q[0], q[1], q[2])
        return np.array_equal(draw(scene.bg, trial, S.SIDE), target)

    def reach(x, d):
        lo, hi = 0.0, 0.02
        while ok(x + hi * d):
            lo, hi = hi, hi * 2
            if hi > 8:
                return lo
        for _ in range(10):
            mid = (lo + hi) / 2
            lo, hi = (mid, hi) if ok(x + mid * d) else (lo, mid)
        return lo

    x = np.array(base[i][2:], np.float64)
    kept = []
    for move in range(burn + want * thin):
        d = rng.normal(size=3)
        d /= np.linalg.norm(d)
        t = rng.uniform(-reach(x, -d), reach(x, d))
        if ok(x + t * d):
            x = x + t * d
        if move >= burn and (move - burn) % thin == thin - 1:
            kept.append(tuple(x))
    return kept


def movq_bicubic(model, scenes, exact256, seed):
    """PSNR of bicubic 64 -> 256 px of the decoder's MoVQ round trips (the upscaler's
    baseline), per scene."""
    rt = U.decoder_inputs(model, scenes, seed)["rt"]
    return U.psnr(U.resize(rt, 256, Image.BICUBIC), exact256)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=100, help="held-out scenes")
    p.add_argument("--seed", type=int, default=S.HELDOUT_SEED, help="first scene seed")
    p.add_argument("--samples", type=int, default=64, help="joint draws averaged per scene")
    p.add_argument("--model", default=os.path.join(REPO, "data", "models", "reverie-tiny"),
                   help="model folder whose MoVQ makes the baseline rows ('' to skip them)")
    a = p.parse_args()
    if a.seed < S.HELDOUT_SEED:
        p.error("--seed %d: scenes below %d are training scenes" % (a.seed, S.HELDOUT_SEED))
    t0 = time.time()
    rng = np.random.default_rng(a.seed)
    scenes = [S.make_scene(a.seed + i) for i in range(a.n)]
    exact256 = np.stack([s.render_at(256) for s in scenes])
    bound, spread, by_kind = [], [], {}
    for s, e in zip(scenes, exact256):
        draws = []
        for i in range(len(s.shapes)):
            draws.append(consistent_draws(s, i, rng, a.samples))
            lo, hi = np.min(draws[-1], 0), np.max(draws[-1], 0)
            spread.append(hi - lo)
        mean = np.zeros((256, 256, 3))
        for k in range(a.samples):
            shapes = [(sh.kind, sh.color) + draws[i][k] for i, sh in enumerate(s.shapes)]
            mean += draw(s.bg, shapes, 256)
        mean /= a.samples
        bound.append(U.psnr(mean[None], e[None])[0])
        if len(s.shapes) == 1:
            by_kind.setdefault(s.shapes[0].kind, []).append(bound[-1])
    sp = np.median(spread, 0)
    print("%d held-out scenes (seeds %d...), %d joint draws each; the consistent values of a shape "
          "span (median) %.2f px in cx, %.2f in cy, %.2f in side (64 px units)"
          % (a.n, a.seed, a.samples, sp[0], sp[1], sp[2]))
    print()
    print("| 64 px input | 256 px estimate | PSNR |")
    print("|---|---|---|")
    exact64 = np.stack([s.render() for s in scenes])
    bicubic = U.psnr(U.resize(exact64, 256, Image.BICUBIC), exact256)
    print("| exact render | bicubic | %.2f dB |" % bicubic.mean())
    print("| exact render | mean of the consistent scenes (the best expected) | **%.2f dB** |" % np.mean(bound))
    if a.model:
        rt = movq_bicubic(a.model, scenes, exact256, a.seed)
        print("| MoVQ round trip | bicubic | %.2f dB |" % np.mean(rt))
        print("| MoVQ round trip | bicubic + 3 dB (the upscaler's aim) | %.2f dB |" % (np.mean(rt) + 3))
    print()
    for kind in sorted(by_kind):
        print("one %s: best expected %.2f dB (%d scenes)" % (kind, np.mean(by_kind[kind]), len(by_kind[kind])))
    print("(%.0f s)" % (time.time() - t0))


if __name__ == "__main__":
    main()
