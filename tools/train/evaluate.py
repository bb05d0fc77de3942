#!/usr/bin/python3
"""Measures prompt following of an exported model folder with the checker, on fresh prompts from
held-out seeds, through reverie_pipelines (the same computation the engine performs):

    evaluate.py [--model data/models/reverie-tiny] [--n 200] [--what t2i,vary,inpaint]
                [--prior-steps N] [--prior-guidance G] [--decoder-steps N] [--decoder-guidance G]
                [--scheduler ddim|dpmpp|ddpm] [--spacing leading|trailing] [--n-inpaint 50] [--save DIR]

--what takes any of: t2i (text-to-image per template and attribute), vary (variations of the
generated single-shape scenes), inpaint (the editing trial of reverie-dev eval), and the component
checks decoder (the decoder from exact image embeddings), prior (sampled embeddings read back as
attributes) and vision (the vision tower on rendered scenes). Defaults come from the folder's
reverie.json."""
import argparse
import json
import os
import random
import sys
import time

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import checker  # noqa: E402
import reverie_pipelines as RP  # noqa: E402
import scenes as S  # noqa: E402

EVAL_SEED = S.HELDOUT_SEED + 500_000


def rate(xs):
    return 100.0 * sum(xs) / max(1, len(xs))


def save_png(path, img):
    from PIL import Image
    Image.fromarray(img).save(path)


def text_to_image(prior, dec, prompts, a, seed):
    g = torch.Generator().manual_seed(seed)
    noise = RP.gaussian(g)
    emb, neg = prior(prompts, None, steps=a.prior_steps, guidance=a.prior_guidance, noise=noise)
    out = dec(emb, neg, 64, 64, steps=a.decoder_steps, guidance=a.decoder_guidance, noise=noise,
              scheduler_config=a.sched)
    return RP.to_uint8(out)


def full_spec(scene):
    """A spec naming every attribute of a scene (the decoder test)."""
    sp = scene.spec()
    sp["bg"] = scene.bg
    if scene.template == "single":
        sh = scene.shapes[0]
        sp["shapes"][0]["size"] = sh.size
        ps = S.position_of(*sh.centroid)
        # a position only where the centroid is clearly inside a third (the checker is exact)
        cx, cy = sh.centroid
        if ps and min(abs(cx - 1 / 3), abs(cx - 2 / 3), abs(cy - 1 / 3), abs(cy - 2 / 3)) > 0.03:
            sp["shapes"][0]["position"] = ps[0]
    return sp


def read_embedding(e, scene):
    """Scene attributes read back from an image embedding (scenes.attribute_embedding layout),
    compared with what the scene's prompt names."""
    out = {}
    named = scene.spec()
    out["bg"] = S.COLORS[int(np.argmax(e[:8]))] == scene.bg
    present = {S.COLORS[c] for c in range(8) if e[8 + 8 * c] > 0.5}
    out["colours"] = present == {sh.color for sh in scene.shapes}
    kinds, geo = [], []
    for sh in scene.shapes:
        o = 8 + 8 * S.COLORS.index(sh.color)
        kinds.append(S.SHAPES[int(np.argmax(e[o + 1:o + 5]))] == sh.kind)
        geo.append((e[o + 5] / 2 + 0.5, e[o + 6] / 2 + 0.5, e[o + 7] * 0.15 + 0.41))
    out["kinds"] = all(kinds)
    if scene.template == "single":
        w = named["shapes"][0]
        if "position" in w:
            out["position"] = w["position"] in S.position_of(geo[0][0], geo[0][1])
        if "size" in w:
            out["size"] = ("small" if geo[0][2] < 0.375 else "large") == w["size"]
    else:
        (ax, ay, _), (bx, by, _) = geo
        out["relation"] = (bx - ax if scene.template == "left" else by - ay) >= 0.2
    return out


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default=os.path.join(HERE, "..", "..", "data", "models", "reverie-tiny"))
    p.add_argument("--n", type=int, default=200)
    p.add_argument("--what", default="t2i,vary,inpaint")
    p.add_argument("--prior-steps", type=int)
    p.add_argument("--prior-guidance", type=float)
    p.add_argument("--decoder-steps", type=int)
    p.add_argument("--decoder-guidance", type=float)
    p.add_argument("--scheduler")
    p.add_argument("--spacing", help="override the decoder schedulers' timestep_spacing")
    p.add_argument("--n-inpaint", type=int, default=50)
    p.add_argument("--n-vary", type=int, default=0, help="variation trials (default: every single-shape prompt)")
    p.add_argument("--batch", type=int, default=20)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--save", default="")
    p.add_argument("--threads", type=int, default=1)
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    with open(os.path.join(a.model, "reverie.json")) as f:
        d = json.load(f)
    a.prior_steps = a.prior_steps or d["prior_steps"]
    a.prior_guidance = a.prior_guidance if a.prior_guidance is not None else d["prior_guidance"]
    a.decoder_steps = a.decoder_steps or d["decoder_steps"]
    a.decoder_guidance = a.decoder_guidance if a.decoder_guidance is not None else d["decoder_guidance"]
    a.scheduler = a.scheduler or d["decoder_scheduler"]
    prior = RP.Prior(os.path.join(a.model, "prior"))
    dec = RP.Decoder(os.path.join(a.model, "decoder"))
    a.sched = RP.decoder_scheduler_config(dec.scheduler_config, a.scheduler)
    if a.spacing:
        a.sched["timestep_spacing"] = a.spacing
    if a.save:
        os.makedirs(a.save, exist_ok=True)
    what = a.what.split(",")
    print("settings: prior %d steps g %.1f, decoder %s %d steps g %.1f" % (a.prior_steps, a.prior_guidance, a.scheduler,
                                                                            a.decoder_steps, a.decoder_guidance))
    res = {}
    generated = []
    if "t2i" in what or "vary" in what:
        t0 = time.time()
        per = {}
        attr = {}
        sc = [S.make_scene(EVAL_SEED + a.seed * 100_000 + i) for i in range(a.n)]
        for b in range(0, a.n, a.batch):
            chunk = sc[b:b + a.batch]
            imgs = text_to_image(prior, dec, [s.prompt for s in chunk], a, seed=a.seed * 1000 + b)
            for s, img in zip(chunk, imgs):
                ok, at = checker.check(img, s.spec())
                per.setdefault(s.template, []).append(ok)
                for k, v in at.items():
                    attr.setdefault("%s.%s" % (s.template, k), []).append(v)
                generated.append((s, img, ok))
                if a.save and len(generated) <= 60:
                    save_png(os.path.join(a.save, "t2i_%03d_%s_%s.png" % (len(generated), "ok" if ok else "miss",
                                                                          s.prompt.replace(" ", "_"))), img)
        single = per.get("single", [])
        rel = per.get("left", []) + per.get("above", [])
        res["t2i_single"] = rate(single)
        res["t2i_relation"] = rate(rel)
        print("text-to-image: single %.1f%% (%d), relation %.1f%% (%d) [left %.1f%%, above %.1f%%]  %.0f s" % (
            rate(single), len(single), rate(rel), len(rel), rate(per.get("left", [])), rate(per.get("above", [])),
            time.time() - t0))
        for k in sorted(attr):
            print("   %-20s %.1f%%" % (k, rate(attr[k])))
    if "vary" in what:
        t0 = time.time()
        src = [(s, img) for s, img, ok in generated if s.template == "single"]
        if a.n_vary:
            src = src[:a.n_vary]
        keep_bg, keep_shape = [], []
        for b in range(0, len(src), a.batch):
            chunk = src[b:b + a.batch]
            with torch.no_grad():
                emb = torch.cat([prior.image_embed(img) for _, img in chunk])
                neg = prior.zero_embed().repeat(len(chunk), 1)
            g = torch.Generator().manual_seed(10_000 + b)
            out = RP.to_uint8(dec(emb, neg, 64, 64, steps=a.decoder_steps, guidance=a.decoder_guidance,
                                  noise=RP.gaussian(g), scheduler_config=a.sched))
            for (s, img), v in zip(chunk, out):
                bg0, c0, k0 = checker.main_shape(img)
                bg1, c1, k1 = checker.main_shape(v)
                keep_bg.append(bg0 == bg1)
                keep_shape.append(c0 is not None and (c0, k0) == (c1, k1))
                if a.save and len(keep_bg) <= 20:
                    save_png(os.path.join(a.save, "vary_%03d_src.png" % len(keep_bg)), img)
                    save_png(os.path.join(a.save, "vary_%03d_out.png" % len(keep_bg)), v)
        res["vary_bg"] = rate(keep_bg)
        res["vary_shape"] = rate(keep_shape)
        print("variations of %d generated single-shape scenes: background kept %.1f%%, main shape colour+kind kept %.1f%%  %.0f s" % (
            len(keep_bg), rate(keep_bg), rate(keep_shape), time.time() - t0))
    if "inpaint" in what:
        # as reverie-dev eval: a scene generated from "a small C1 K1 at the left on a BG background",
        # the part x >= W/2 + W/16 repainted with "a small C2 K2 at the right on a BG background",
        # the original pixels put back outside the mask as the engine does
        t0 = time.time()
        inp = RP.Decoder(os.path.join(a.model, "decoder-inpaint"))
        isched = RP.decoder_scheduler_config(inp.scheduler_config, a.scheduler)
        if a.spacing:
            isched["timestep_spacing"] = a.spacing
        rng = random.Random(a.seed + 99)
        hits = []
        n = a.n_inpaint
        mask = np.zeros((64, 64), np.float32)
        mask[:, 64 // 2 + 64 // 16:] = 1
        for b in range(0, n, a.batch):
            m = min(a.batch, n - b)
            trials = []
            for i in range(m):
                c1, k1 = rng.choice(S.COLORS), rng.choice(S.SHAPES)
                bg = rng.choice([c for c in S.COLORS if c != c1])
                c2 = rng.choice([c for c in S.COLORS if c not in (bg, c1)])
                k2 = rng.choice(S.SHAPES)
                trials.append(("a small %s %s at the left on a %s background" % (c1, k1, bg),
                               "a small %s %s at the right on a %s background" % (c2, k2, bg), c2, k2))
            src = text_to_image(prior, dec, [t[0] for t in trials], a, seed=30_000 + b)
            g = torch.Generator().manual_seed(20_000 + b)
            noise = RP.gaussian(g)
            emb, neg = prior([t[1] for t in trials], None, steps=a.prior_steps, guidance=a.prior_guidance, noise=noise)
            for i, (t, img) in enumerate(zip(trials, src)):
                out = RP.to_uint8(inp.inpaint(img, mask, emb[i:i + 1], neg[i:i + 1], steps=a.decoder_steps,
                                              guidance=a.decoder_guidance, noise=noise, scheduler_config=isched))[0]
                out = np.where(mask[..., None] > 0, out, img)
                r = checker.analyse(out)
                ok = any(sh["color"] == t[2] and sh["kind"] == t[3] and sh["cx"] > 0.5 for sh in r["shapes"])
                hits.append(ok)
                if a.save and len(hits) <= 20:
                    save_png(os.path.join(a.save, "inpaint_%03d_%s_%s.png" % (len(hits), "ok" if ok else "miss",
                                                                               t[1].replace(" ", "_"))),
                             np.concatenate([img, (mask[..., None] * 255).repeat(3, -1).astype(np.uint8), out], 1))
        res["inpaint"] = rate(hits)
        print("inpaint: new shape (colour+kind) in the right half %.1f%% of %d  %.0f s" % (
            rate(hits), len(hits), time.time() - t0))
    if "decoder" in what:
        # the decoder alone, from the exact image embeddings of held-out scenes
        t0 = time.time()
        per = {}
        sc = [S.make_scene(EVAL_SEED + 700_000 + a.seed * 100_000 + i) for i in range(a.n)]
        for b in range(0, a.n, a.batch):
            chunk = sc[b:b + a.batch]
            emb = torch.from_numpy(np.stack([S.attribute_embedding(s) for s in chunk]))
            with torch.no_grad():
                neg = prior.zero_embed().repeat(len(chunk), 1)
            g = torch.Generator().manual_seed(40_000 + b)
            out = RP.to_uint8(dec(emb, neg, 64, 64, steps=a.decoder_steps, guidance=a.decoder_guidance,
                                  noise=RP.gaussian(g), scheduler_config=a.sched))
            for s, img in zip(chunk, out):
                ok, _ = checker.check(img, full_spec(s))
                per.setdefault(s.template, []).append(ok)
                if a.save and b == 0:
                    save_png(os.path.join(a.save, "dec_%03d_%s_%s.png" % (len(per[s.template]), "ok" if ok else "miss",
                                                                           s.prompt.replace(" ", "_"))), img)
        single, rel = per.get("single", []), per.get("left", []) + per.get("above", [])
        res["decoder_single"], res["decoder_relation"] = rate(single), rate(rel)
        print("decoder from true embeddings (every attribute of the scene checked): single %.1f%% (%d), "
              "relation %.1f%% (%d)  %.0f s" % (rate(single), len(single), rate(rel), len(rel), time.time() - t0))
    if "prior" in what:
        # the prior alone: its sampled embeddings read back as scene attributes
        t0 = time.time()
        acc = {}
        sc = [S.make_scene(EVAL_SEED + 800_000 + a.seed * 100_000 + i) for i in range(a.n)]
        for b in range(0, a.n, a.batch):
            chunk = sc[b:b + a.batch]
            g = torch.Generator().manual_seed(50_000 + b)
            emb, _ = prior([s.prompt for s in chunk], None, steps=a.prior_steps, guidance=a.prior_guidance,
                           noise=RP.gaussian(g))
            for s, e in zip(chunk, emb.numpy()):
                for k, v in read_embedding(e, s).items():
                    acc.setdefault(k, []).append(v)
        res.update({"prior_" + k: rate(v) for k, v in acc.items()})
        print("prior read back: " + ", ".join("%s %.1f%% (%d)" % (k, rate(v), len(v)) for k, v in sorted(acc.items()))
              + "  %.0f s" % (time.time() - t0))
    if "vision" in what:
        sc = [S.make_scene(EVAL_SEED + 900_000 + a.seed * 100_000 + i) for i in range(a.n)]
        acc = {}
        with torch.no_grad():
            for s in sc:
                e = prior.image_embed(s.render())[0].numpy()
                for k, v in read_embedding(e, s).items():
                    acc.setdefault(k, []).append(v)
        res.update({"vision_" + k: rate(v) for k, v in acc.items()})
        print("vision tower read back: " + ", ".join("%s %.1f%% (%d)" % (k, rate(v), len(v)) for k, v in sorted(acc.items())))
    print(json.dumps(res))


if __name__ == "__main__":
    main()
