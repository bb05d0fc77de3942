#!/usr/bin/python3
"""Measures prompt following of an exported model folder with the checker, on fresh prompts from
held-out seeds, through reverie_pipelines (the same computation the engine performs):

    evaluate.py [--model data/models/reverie-tiny] [--n 200] [--what t2i,vary,inpaint]
                [--prior-steps N] [--prior-guidance G] [--decoder-steps N] [--decoder-guidance G]
                [--scheduler ddim|dpmpp|ddpm] [--save DIR]

Defaults come from the folder's reverie.json."""
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
    p.add_argument("--inpaint-steps", type=int)
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
    a.inpaint_steps = a.inpaint_steps or d.get("inpaint_steps", a.decoder_steps)
    prior = RP.Prior(os.path.join(a.model, "prior"))
    dec = RP.Decoder(os.path.join(a.model, "decoder"))
    a.sched = RP.decoder_scheduler_config(dec.scheduler_config, a.scheduler)
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
        t0 = time.time()
        inp = RP.Decoder(os.path.join(a.model, "decoder-inpaint"))
        isched = RP.decoder_scheduler_config(inp.scheduler_config, d.get("inpaint_scheduler", a.scheduler))
        rng = random.Random(a.seed + 99)
        hits, outside = [], []
        n = max(50, a.n // 2)
        for i in range(n):
            s = S.make_scene(EVAL_SEED + 900_000 + a.seed * 100_000 + i, "single")
            img = s.render()
            x0, y0, x1, y1 = s.shapes[0].bbox()
            for _ in range(1000):
                w = rng.randint(26, 34)
                bx, by = rng.randint(0, 64 - w), rng.randint(0, 64 - w)
                if bx + w + 2 <= x0 or x1 + 2 < bx or by + w + 2 <= y0 or y1 + 2 < by:
                    break
            else:
                continue
            mask = np.zeros((64, 64), np.float32)
            mask[by:by + w, bx:bx + w] = 1
            color = rng.choice([c for c in S.COLORS if c not in (s.bg, s.shapes[0].color)])
            kind = rng.choice(S.SHAPES)
            prompt = "a %s %s on a %s background" % (color, kind, s.bg)
            g = torch.Generator().manual_seed(20_000 + i)
            noise = RP.gaussian(g)
            emb, neg = prior([prompt], None, steps=a.prior_steps, guidance=a.prior_guidance, noise=noise)
            out = RP.to_uint8(inp.inpaint(img, mask, emb, neg, steps=a.inpaint_steps, guidance=a.decoder_guidance,
                                          noise=noise, scheduler_config=isched))[0]
            r = checker.analyse(out)
            ok = any(sh["color"] == color and sh["kind"] == kind and bx <= sh["cx"] * 64 < bx + w
                     and by <= sh["cy"] * 64 < by + w for sh in r["shapes"])
            hits.append(ok)
            far = np.ones((64, 64), bool)
            far[max(0, by - 4):by + w + 4, max(0, bx - 4):bx + w + 4] = False
            outside.append(float(np.abs(out.astype(int) - img.astype(int))[far].mean()))
            if a.save and i < 20:
                save_png(os.path.join(a.save, "inpaint_%03d_%s_%s.png" % (i, "ok" if ok else "miss", prompt.replace(" ", "_"))),
                         np.concatenate([img, (mask[..., None] * 255).repeat(3, -1).astype(np.uint8), out], 1))
        res["inpaint"] = rate(hits)
        print("inpaint: new shape (colour+kind) inside the region %.1f%% of %d; mean |diff| outside the region %.2f/255  %.0f s" % (
            rate(hits), len(hits), float(np.mean(outside)), time.time() - t0))
    print(json.dumps(res))


if __name__ == "__main__":
    main()
