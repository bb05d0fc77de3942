#!/usr/bin/python3
"""Held-out PSNR of the x4 upscaler (SRVGGNetCompact) of an exported model folder, in PyTorch:
the reference the engine's upscaler can be checked against.

    upscale_eval.py [--model data/models/reverie-tiny] [--upscaler FOLDER_OR_PT] [--n 100] [--n1024 N]
                    [--seed 1000000000]

For N held-out scenes (seeds from --seed on, by default the first held-out one), the decoder of the model folder
(decoder/movq, decoder/unet) makes two 64 px inputs per scene, as train.py's upscaler stage does:
the MoVQ round trip of the exact render (encode, decode), and the MoVQ decode of the UNet's x0
estimate of the scene's latents noised to a random t < 250 under the scene's exact attribute
embedding. Each is enlarged to 256 px by the upscaler, by PIL's bicubic and by nearest neighbour,
and compared with the exact 256 px render of the scene; then to 1024 px by the upscaler applied
twice (its 256 px output rounded to uint8 in between, as a saved image) and by bicubic x16,
against the exact 1024 px render. PSNR over RGB uint8 (peak 255), the mean over scenes of each
image's PSNR. --upscaler defaults to MODEL/upscaler; it also takes a train.py final.pt or ckpt.pt
(EMA weights). The MoVQ round-trip rows are what the engine's `reverie-dev eval-upscale --n N
--twice N` measures (the same PSNR, Pillow bicubic in one step, uint8 hand-over between the two
enlargements), but on the engine's own held-out scenes: its scene generator draws other scenes
for a seed than scenes.py, so the two agree on the gains, not to the digit."""
import argparse
import math
import os
import sys
import time

import numpy as np
import torch
from PIL import Image

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import configs as C  # noqa: E402
import reverie_models as RM  # noqa: E402
import scenes as S  # noqa: E402
import train as T  # noqa: E402

REPO = os.path.abspath(os.path.join(HERE, "..", ".."))


def load_upscaler(path):
    if os.path.isdir(path):
        return RM.load_folder(path)
    st = torch.load(path, map_location="cpu")
    st = st["ema"]["upscaler"] if "ema" in st else st["upscaler"]
    m = RM.SRVGGNetCompact(C.upscaler_of(st))
    m.load_state_dict(st)
    return m.eval()


@torch.no_grad()
def upscale(net, imgs, batch=4):
    """uint8 (B,H,W,3) -> uint8 (B,4H,4W,3) through the network (RGB in [0, 1])."""
    out = []
    for i in range(0, len(imgs), batch):
        x = torch.from_numpy(np.array(imgs[i:i + batch])).permute(0, 3, 1, 2).float() / 255
        y = net(x).clamp(0, 1)
        out.append(torch.round(y * 255).to(torch.uint8).permute(0, 2, 3, 1).numpy())
    return np.concatenate(out)


def resize(imgs, n, how):
    return np.stack([np.asarray(Image.fromarray(im).resize((n, n), how)) for im in imgs])


def psnr(a, b):
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2, axis=(1, 2, 3))
    return 10 * np.log10(255.0 ** 2 / np.maximum(mse, 1e-10))


def decoder_inputs(model, scenes, seed):
    """The two 64 px inputs per scene that the decoder of the model folder hands the upscaler
    (decoder_outputs in train.py: MoVQ round trips "rt", UNet x0 decodes "x0"), uint8 (N,64,64,3)
    each, drawn from a generator seeded with seed."""
    movq, unet, _ = T.upscaler_sources("", model)
    g = torch.Generator().manual_seed(seed)
    inputs = {"rt": [], "x0": []}
    for c in range(0, len(scenes), 25):
        rt, x0 = T.decoder_outputs(movq, unet, scenes[c:c + 25], g)
        inputs["rt"].append(rt)
        inputs["x0"].append(x0)
    return {k: np.concatenate(v) for k, v in inputs.items()}


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default=os.path.join(REPO, "data", "models", "reverie-tiny"))
    p.add_argument("--upscaler", default="", help="upscaler folder, final.pt or ckpt.pt (default MODEL/upscaler)")
    p.add_argument("--n", type=int, default=100, help="held-out scenes")
    p.add_argument("--n1024", type=int, default=-1, help="scenes of the 1024 px rows (default --n; 0: none)")
    p.add_argument("--seed", type=int, default=S.HELDOUT_SEED, help="first scene seed")
    p.add_argument("--threads", type=int, default=2)
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    t0 = time.time()
    net = load_upscaler(a.upscaler or os.path.join(a.model, "upscaler"))
    cfg = C.upscaler_of(net.state_dict())
    params = sum(p.numel() for p in net.parameters())
    if a.seed < S.HELDOUT_SEED:
        p.error("--seed %d: scenes below %d are training scenes" % (a.seed, S.HELDOUT_SEED))
    scenes = [S.make_scene(a.seed + i) for i in range(a.n)]
    inputs = decoder_inputs(a.model, scenes, a.seed)
    names = {"rt": "MoVQ round trip", "x0": "UNet x0 (t < 250)"}
    exact64 = np.stack([s.render() for s in scenes])
    exact256 = np.stack([s.render_at(256) for s in scenes])
    n1024 = a.n if a.n1024 < 0 else min(a.n1024, a.n)
    print("upscaler: SRVGGNetCompact num_feat %d, num_conv %d, %d parameters; %d held-out scenes (seeds %d...), "
          "%d at 1024 px" % (cfg["num_feat"], cfg["num_conv"], params, a.n, a.seed, n1024))
    print()
    print("| input (64 px) | vs exact 64 | size | nearest | bicubic | upscaler | upscaler - bicubic |")
    print("|---|---|---|---|---|---|---|")
    rows = []
    for k in ("rt", "x0"):
        x = inputs[k]
        up = upscale(net, x)
        r = [psnr(resize(x, 256, Image.NEAREST), exact256), psnr(resize(x, 256, Image.BICUBIC), exact256),
             psnr(up, exact256)]
        rows.append((k, "256", r))
        print("| %s | %.2f dB | 256 | %.2f | %.2f | **%.2f** | %+.2f dB |" % (
            names[k], psnr(x, exact64).mean(), r[0].mean(), r[1].mean(), r[2].mean(), r[2].mean() - r[1].mean()))
        sys.stdout.flush()
        if n1024:
            p_near, p_bic, p_up = [], [], []
            for i in range(n1024):
                ex = scenes[i].render_at(1024)[None]
                twice = upscale(net, up[i:i + 1])
                p_near.append(psnr(resize(x[i:i + 1], 1024, Image.NEAREST), ex))
                p_bic.append(psnr(resize(x[i:i + 1], 1024, Image.BICUBIC), ex))
                p_up.append(psnr(twice, ex))
            r = [np.concatenate(v) for v in (p_near, p_bic, p_up)]
            rows.append((k, "1024", r))
            print("| %s | | 1024 (twice) | %.2f | %.2f | **%.2f** | %+.2f dB |" % (
                names[k], r[0].mean(), r[1].mean(), r[2].mean(), r[2].mean() - r[1].mean()))
            sys.stdout.flush()
    print()
    for k, size, r in rows:
        print("%s at %s: upscaler above bicubic on %d of %d scenes" % (names[k], size, int((r[2] > r[1]).sum()), len(r[2])))
    print("(%.0f s)" % (time.time() - t0))


if __name__ == "__main__":
    main()
