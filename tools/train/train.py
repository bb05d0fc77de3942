#!/usr/bin/python3
"""Trains the reverie-tiny components on the scene grammar, one stage per subcommand:

    train.py tokenizer --run DIR          CLIP-format tokenizer files
    train.py clip      --run DIR          CLIP text + vision towers (attribute embedding, contrastive text)
    train.py movq      --run DIR          MoVQ codec (L1 + L2 reconstruction), latents normalised
    train.py prior     --run DIR          diffusion prior (x0 prediction, condition dropout)
    train.py decoder   --run DIR          decoder UNet (epsilon prediction, embedding dropout)
    train.py inpaint   --run DIR          inpaint UNet (9 input channels, random masks)
    train.py upscaler  --run DIR          x4 upscaler (SRVGGNetCompact) of the decoder's 64 px outputs
    train.py finalize STAGE --run DIR     final.pt from the latest checkpoint of a stopped stage

Every stage writes DIR/<stage>/ckpt.pt every few steps and resumes from it; the data of step k
and all random draws depend only on (--seed, k), so a resumed run equals an uninterrupted one.
The final weights of a stage are DIR/<stage>/final.pt (EMA weights where the stage keeps them).

--device cuda trains on a CUDA GPU; --workers N then builds the scenes of the coming steps in N
processes. --init FILE starts a stage from the weights of a final.pt (a fine-tune: fresh
optimizer and schedule) and --minutes M gives it a time budget: the cosine schedule runs over M
minutes instead of --steps and the stage stops at M minutes (with a time budget the step count,
and so the run, depends on the machine's speed). Resumed with the same --minutes, a stage goes on
with the rest of its budget."""
import argparse
import copy
import functools
import math
import multiprocessing
import os
import random
import sys
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import configs as C  # noqa: E402
import reverie_models as RM  # noqa: E402
import reverie_pipelines as RP  # noqa: E402
import scenes as S  # noqa: E402
import tokenizer_files  # noqa: E402

TEXT_LEN = 20  # longest grammar prompt is 16 tokens; with the causal mask later positions never matter
STAGE_SEED = {"clip": 1, "movq": 2, "prior": 3, "decoder": 4, "inpaint": 5, "stats": 6, "clip_text": 7, "clip_vision": 8,
              "unet": 9, "movq_decoder": 10, "upscaler": 11}


DEV = torch.device("cpu")  # --device


def log(*a):
    print(time.strftime("%H:%M:%S"), *a, flush=True)


def on(x):
    """A CPU tensor or numpy array on the training device."""
    return (torch.from_numpy(x) if isinstance(x, np.ndarray) else x).to(DEV, non_blocking=True)


def load(path):
    return torch.load(path, map_location=DEV)


def cpu_state(m):
    return {k: v.detach().cpu() for k, v in m.state_dict().items()}


# ----------------------------------------------------------------------------------------------
# data

SEED_BLOCK = 10_000_000  # scenes of one (stage, --seed); a stage's block of 50 million holds five seeds


def scene_seed(stage, step, i, batch, seed=0):
    """The scene of example i of a step: each stage, and each --seed (0-4) of a stage, draws from
    its own range of scene seeds, all below scenes.HELDOUT_SEED."""
    return STAGE_SEED[stage] * 50_000_000 + seed * SEED_BLOCK + step * batch + i


def scene_batch(stage, step, batch, seed=0):
    return [S.make_scene(scene_seed(stage, step, i, batch, seed)) for i in range(batch)]


def images_tensor(imgs):
    """list (or array) of uint8 HWC -> float (B,3,H,W) in [0,1] on the training device."""
    return on(np.stack(imgs)).permute(0, 3, 1, 2).float() / 255.0


def _worker_init():
    torch.set_num_threads(1)


class Feed:
    """make(k) for the steps k ahead of the current one, computed by worker processes while the
    device trains (inline when workers is 0). make must be picklable (a module-level function or
    a functools.partial of one) and return numpy arrays and plain Python values."""

    def __init__(self, make, workers):
        self.make, self.workers = make, workers
        self.pool, self.pending = None, {}

    def __call__(self, k):
        if self.workers <= 0:
            return self.make(k)
        if self.pool is None:
            self.pool = multiprocessing.get_context("spawn").Pool(self.workers, initializer=_worker_init)
        for j in range(k, k + 2 * self.workers):
            if j not in self.pending:
                self.pending[j] = self.pool.apply_async(self.make, (j,))
        for j in [j for j in self.pending if j < k]:
            del self.pending[j]
        return self.pending.pop(k).get()


PROC = RP.CLIPImageProcessor(C.image_processor())


def pixel_values(x01):
    return PROC.normalize_float(x01)


def tokenizer(run):
    return RP.CLIPTokenizer(os.path.join(run, "tokenizer"))


def tokens(tok, prompts):
    ids, mask = tok(prompts)
    assert int(mask[:, TEXT_LEN:].sum()) == 0, "prompt longer than TEXT_LEN"
    return ids[:, :TEXT_LEN], mask[:, :TEXT_LEN]


# ----------------------------------------------------------------------------------------------
# checkpointed training loop

def lr_at(step, steps, lr, warmup, progress=None):
    """Linear warmup, then a cosine from lr down to lr/10 over the rest of the steps, or over
    `progress` (0..1) where given (the time-budget schedule)."""
    if step < warmup:
        return lr * (step + 1) / warmup
    p = (step - warmup) / max(1, steps - warmup) if progress is None else progress
    return lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * p)))


class Loop:
    def __init__(self, run, stage, modules, params, steps, lr, seed, warmup=100, ema=None, ema_decay=0.999, every=50,
                 init="", minutes=0.0):
        self.dir = os.path.join(run, stage)
        os.makedirs(self.dir, exist_ok=True)
        self.stage, self.modules, self.steps, self.lr, self.seed, self.warmup = stage, modules, steps, lr, seed, warmup
        self.opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.0, betas=(0.9, 0.99))
        self.ema = ema
        self.ema_decay = ema_decay
        # a GPU step takes milliseconds: checkpoint and log less often there
        self.every = every if DEV.type == "cpu" else max(every, 1000)
        self.log_every = 10 if DEV.type == "cpu" else 200
        self.minutes = minutes
        self.spent = 0.0   # seconds of the time budget spent before this run
        self.step = 0
        ck = os.path.join(self.dir, "ckpt.pt")
        if init and not os.path.exists(ck):
            if not os.path.isfile(init):
                sys.exit("%s: --init %s: no such file" % (stage, init))
            st = load(init)
            missing = [k for k in modules if k not in st]
            if missing:
                sys.exit("%s: --init %s holds %s, not the weights of %s (a final.pt of this stage is needed)"
                         % (stage, init, ", ".join(sorted(st)) or "nothing", ", ".join(missing)))
            for k, m in modules.items():
                m.load_state_dict(st[k])
            for k, m in (ema or {}).items():
                m.load_state_dict(st[k])
            log("%s: weights from %s" % (stage, init))
        if os.path.exists(ck):
            st = load(ck)
            for k, m in modules.items():
                m.load_state_dict(st["modules"][k])
            self.opt.load_state_dict(st["opt"])
            if ema is not None:
                for k, m in ema.items():
                    m.load_state_dict(st["ema"][k])
            self.step = st["step"]
            # a time budget resumed with the same minutes goes on where it stopped
            budget = st.get("budget")
            self.spent = budget["spent"] if budget and self.minutes and budget["minutes"] == self.minutes else 0.0
            log("%s: resumed at step %d%s" % (stage, self.step,
                                              ", %.1f of %g minutes spent" % (self.spent / 60, self.minutes)
                                              if self.spent else ""))

    def save(self):
        st = {"modules": {k: cpu_state(m) for k, m in self.modules.items()}, "opt": self.opt.state_dict(),
              "step": self.step}
        if self.ema is not None:
            st["ema"] = {k: cpu_state(m) for k, m in self.ema.items()}
        if self.minutes:
            st["budget"] = {"minutes": self.minutes, "spent": time.time() - self.start}
        tmp = os.path.join(self.dir, "ckpt.pt.tmp")
        torch.save(st, tmp)
        os.replace(tmp, os.path.join(self.dir, "ckpt.pt"))

    def run(self, step_fn):
        t0, c0 = time.time(), time.process_time()
        self.start = t0 - self.spent
        acc = {}
        n = 0
        while self.step < self.steps:
            frac = None
            if self.minutes:
                # time budget: the schedule runs over the minutes given, and the stage ends with them
                frac = (time.time() - self.start) / (60 * self.minutes)
                if frac >= 1:
                    break
            lr = lr_at(self.step, self.steps, self.lr, self.warmup, frac)
            torch.manual_seed(self.seed * 1_000_003 + STAGE_SEED[self.stage] * 7919 + self.step)
            for g in self.opt.param_groups:
                g["lr"] = lr
            losses = step_fn(self.step)
            loss = sum(losses.values())
            self.opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_([p for g in self.opt.param_groups for p in g["params"]], 1.0)
            self.opt.step()
            if self.ema is not None:
                d = min(self.ema_decay, (1 + self.step) / (10 + self.step))
                with torch.no_grad():
                    for k, m in self.ema.items():
                        for pe, p in zip(m.parameters(), self.modules[k].parameters()):
                            pe.mul_(d).add_(p.detach(), alpha=1 - d)
            for k, v in losses.items():
                acc[k] = acc.get(k, 0.0) + v.detach()
            self.step += 1
            n += 1
            if self.step % self.log_every == 0 or self.step == self.steps:
                # CPU seconds per step is what the stage costs on an idle machine
                el, cpu = time.time() - t0, time.process_time() - c0
                log("%s step %d/%d %s (%.3f s/step, %.3f cpu s/step)" % (self.stage, self.step, self.steps,
                    " ".join("%s %.4f" % (k, float(v) / n) for k, v in acc.items()), el / n, cpu / n))
                acc, n = {}, 0
                t0, c0 = time.time(), time.process_time()
            if self.step % self.every == 0 or self.step == self.steps:
                self.save()
        if self.minutes:
            self.save()
            log("%s: time budget spent at step %d" % (self.stage, self.step))
        final = self.ema if self.ema is not None else self.modules
        torch.save({k: cpu_state(m) for k, m in final.items()}, os.path.join(self.dir, "final.pt"))


def load_final(run, stage):
    return load(os.path.join(run, stage, "final.pt"))


def frozen(m):
    m.eval()
    for p in m.parameters():
        p.requires_grad_(False)
    return m


def load_clip(run, vision=True):
    """Tokenizer and the two towers: from clip_text / clip_vision when those were trained
    separately, else from clip."""
    tok = tokenizer(run)
    te = RM.CLIPTextModelWithProjection(C.text_encoder(len(tok.encoder)))
    ve = RM.CLIPVisionModelWithProjection(C.image_encoder())
    for part, m in (("text", te), ("vision", ve)):
        if part == "vision" and not vision:
            continue
        sub = os.path.join(run, "clip_" + part, "final.pt")
        st = load(sub) if os.path.exists(sub) else load_final(run, "clip")
        m.load_state_dict(st[part])
    return tok, frozen(te.to(DEV)), frozen(ve.to(DEV))


def load_movq(run, decoder=True):
    """The codec; with `decoder`, the decoder of the movq_decoder stage where it exists (the encoder,
    and so the latent space, is the movq stage's in either case)."""
    m = RM.VQModel(C.movq())
    m.load_state_dict(load_final(run, "movq")["movq"])
    if decoder and os.path.exists(os.path.join(run, "movq_decoder", "final.pt")):
        m.load_state_dict(load_final(run, "movq_decoder")["movq"])
    return frozen(m.to(DEV))


# ----------------------------------------------------------------------------------------------
# stages

def stage_tokenizer(a):
    n = tokenizer_files.write(os.path.join(a.run, "tokenizer"))
    log("tokenizer: %d ids" % n)


TEXT_TARGET_WEIGHTS = torch.ones(S.EMBED_DIM)
for _c in range(8):
    TEXT_TARGET_WEIGHTS[8 + 8 * _c + 5: 8 + 8 * _c + 8] = 3.0


VISION_WEIGHTS = torch.ones(S.EMBED_DIM)
for _c in range(8):
    VISION_WEIGHTS[8 + 8 * _c + 1: 8 + 8 * _c + 5] = 4.0  # kind one-hot: what variations need most
VISION_WEIGHTS = VISION_WEIGHTS / VISION_WEIGHTS.mean()


def kind_ce(v, f):
    """Cross-entropy of the kind numbers of every colour present in the target, read as logits."""
    pres = f[:, 8::8] > 0.5  # (B, 8)
    logits = torch.stack([v[:, 9 + 8 * c: 13 + 8 * c] for c in range(8)], 1)[pres]  # (n, 4)
    target = torch.stack([f[:, 9 + 8 * c: 13 + 8 * c] for c in range(8)], 1)[pres].argmax(-1)
    return F.cross_entropy(8 * logits, target)


def soften(x01):
    """Images as the decoder draws them: half of a batch blurred a little (MoVQ edges are not
    sharp), with light noise."""
    b, dev = x01.shape[0], x01.device
    sig = torch.tensor([0.0, 0.5, 0.8, 1.1], device=dev)[torch.randint(0, 4, (b,), device=dev)]
    r = torch.arange(-2, 3, dtype=torch.float32, device=dev)
    g = torch.exp(-r[None] ** 2 / (2 * sig.clamp(min=1e-3)[:, None] ** 2))
    g = g / g.sum(1, keepdim=True)  # (B, 5); sigma 0 gives the identity kernel
    x = x01.reshape(1, b * 3, *x01.shape[2:])
    kx = g.repeat_interleave(3, 0)[:, None, None, :]
    ky = g.repeat_interleave(3, 0)[:, None, :, None]
    x = F.conv2d(F.pad(x, (2, 2, 0, 0), mode="replicate"), kx, groups=b * 3)
    x = F.conv2d(F.pad(x, (0, 0, 2, 2), mode="replicate"), ky, groups=b * 3)
    x = x.reshape(x01.shape) + 0.01 * torch.randn_like(x01) * (torch.rand(b, 1, 1, 1, device=dev) < 0.5)
    return x.clamp(0, 1)


def embeddings(batch):
    """The attribute image-embedding targets (scenes.attribute_embedding) of a list of scenes,
    on the training device."""
    return on(embeddings_np(batch))


def embeddings_np(batch):
    return np.stack([S.attribute_embedding(sc) for sc in batch])


def patch_targets(batch, patch):
    """Colour index and shape kind (0 = background) under each patch centre: (B, n*n) each."""
    n = S.SIDE // patch
    c = patch // 2 + patch * np.arange(n)
    cols, kinds = [], []
    for sc in batch:
        col = np.full((S.SIDE, S.SIDE), S.COLORS.index(sc.bg), np.int64)
        kd = np.zeros((S.SIDE, S.SIDE), np.int64)
        for sh in sc.shapes:
            col[sh.mask] = S.COLORS.index(sh.color)
            kd[sh.mask] = 1 + S.SHAPES.index(sh.kind)
        cols.append(col[c][:, c].reshape(-1))
        kinds.append(kd[c][:, c].reshape(-1))
    return np.stack(cols), np.stack(kinds)


# what the worker processes of a Feed build for one step of each stage (numpy only)

def clip_data(k, B, patch, seed=0):
    batch = scene_batch("clip", k, B, seed)
    cols, kinds = patch_targets(batch, patch)
    return {"img": np.stack([s.render() for s in batch]), "f": embeddings_np(batch), "cols": cols, "kinds": kinds,
            "prompts": [s.prompt for s in batch]}


def prior_data(k, B, seed=0):
    batch = scene_batch("prior", k, B, seed)
    return {"f": embeddings_np(batch), "prompts": [s.prompt for s in batch]}


def render_data(stage, k, B, seed=0):
    batch = scene_batch(stage, k, B, seed)
    return {"img": np.stack([s.render() for s in batch]), "f": embeddings_np(batch)}


class PatchHeads(nn.Module):
    """Training-only heads on the vision tower's patch tokens: colour and shape kind under each
    patch centre. Dense targets make the patch tokens carry local content early in training."""

    def __init__(self, d):
        super().__init__()
        self.color = nn.Linear(d, 8)
        self.kind = nn.Linear(d, 5)

    def loss(self, tokens, cols, kinds):
        """cols, kinds: patch_targets on the training device."""
        p = tokens[:, 1:]
        return F.cross_entropy(self.color(p).reshape(-1, 8), cols.reshape(-1)) + \
            F.cross_entropy(self.kind(p).reshape(-1, 5), kinds.reshape(-1))


@torch.no_grad()
def init_vision_positions(ve, cfg):
    """2D position embeddings to start from: sines and cosines of the patch coordinates and two
    linear ramps, so that attention-weighted averages over a shape's patches give its centroid
    from the first steps on (a from-scratch ViT learns positions slowly)."""
    n = cfg["image_size"] // cfg["patch_size"]
    d = cfg["hidden_size"]
    yy, xx = torch.meshgrid(torch.arange(n, dtype=torch.float32), torch.arange(n, dtype=torch.float32), indexing="ij")
    xs, ys = (xx.reshape(-1) + 0.5) / n, (yy.reshape(-1) + 0.5) / n
    k = (d - 2) // 4
    freq = math.pi * torch.arange(1, k + 1, dtype=torch.float32)
    pe = torch.cat([torch.sin(xs[:, None] * freq), torch.cos(xs[:, None] * freq), torch.sin(ys[:, None] * freq),
                    torch.cos(ys[:, None] * freq), 2 * xs[:, None] - 1, 2 * ys[:, None] - 1], 1)
    w = ve.vision_model.embeddings.position_embedding.weight
    w.zero_()
    w[1:, :pe.shape[1]] = pe
    w.add_(0.02 * torch.randn_like(w))


def stage_clip(a):
    tok = tokenizer(a.run)
    torch.manual_seed(a.seed)
    te = RM.CLIPTextModelWithProjection(C.text_encoder(len(tok.encoder)))
    vc = C.image_encoder()
    ve = RM.CLIPVisionModelWithProjection(vc)
    init_vision_positions(ve, vc)
    heads = PatchHeads(vc["hidden_size"])
    scale = nn.Parameter(torch.tensor(math.log(1 / 0.07)))
    holder = nn.Module()
    holder.scale = scale
    # the two towers do not depend on each other: --part text trains the text tower alone (fast),
    # so that the prior can start while the vision tower is still learning
    part = a.part or "both"
    mods = {"text": te, "vision": ve, "heads": heads, "scale": holder}
    if part == "text":
        mods = {"text": te, "scale": holder}
    elif part == "vision":
        mods = {"vision": ve, "heads": heads}
    for m in mods.values():
        m.to(DEV)
    params = [p for m in mods.values() for p in m.parameters()]
    B = a.batch or 64
    zero = torch.zeros(1, 3, vc["image_size"], vc["image_size"], device=DEV)
    feed = Feed(functools.partial(clip_data, B=B, patch=vc["patch_size"], seed=a.seed), a.workers)

    def step(k):
        data = feed(k)
        f = on(data["f"])
        out = {}
        if part != "text":
            # vision tower: regress the attribute embedding (kinds weighted up, and a cross-entropy
            # on each present colour's kind numbers); the zero image maps to the zero vector
            px = pixel_values(soften(images_tensor(data["img"])))
            vo = ve(torch.cat([px, zero]))
            v = vo["image_embeds"]
            out["vision"] = 10 * ((v[:B] - f) ** 2 * VISION_WEIGHTS.to(DEV)).mean() + 10 * (v[B:] ** 2).mean()
            out["kind"] = 0.3 * kind_ce(v[:B], f)
            out["patches"] = heads.loss(vo["last_hidden_state"][:B], on(data["cols"]), on(data["kinds"]))
        if part == "vision":
            return out
        # text tower: contrastive against the attribute embeddings of the batch
        prompts = data["prompts"]
        ids, _ = tokens(tok, prompts)
        t = te(on(ids))["text_embeds"]
        # centroid and size numbers are small next to the one-hot parts: weight them up so that
        # the text embedding separates "at the left" from "at the right"
        fc = f * TEXT_TARGET_WEIGHTS.to(DEV)
        logits = scale.exp().clamp(max=100) * F.normalize(fc, dim=-1) @ F.normalize(t, dim=-1).t()
        same = on(torch.tensor([[p == q for q in prompts] for p in prompts], dtype=torch.float32))
        tgt = same / same.sum(1, keepdim=True)
        l_con = (-(tgt * F.log_softmax(logits, 1)).sum(1).mean() - (tgt * F.log_softmax(logits.t(), 1)).sum(1).mean()) / 2
        out["contrastive"] = l_con
        return out

    name = {"both": "clip", "text": "clip_text", "vision": "clip_vision"}[part]
    Loop(a.run, name, mods, params, a.steps or 600, a.lr or 1e-3, a.seed, warmup=50, **loop_opts(a)).run(step)


def stage_movq(a):
    torch.manual_seed(a.seed)
    m = RM.VQModel(C.movq()).to(DEV)
    B = a.batch or 24
    feed = Feed(functools.partial(render_data, "movq", B=B, seed=a.seed), a.workers)

    crop = a.crop or 32

    def step(k):
        x = images_tensor(feed(k)["img"]) * 2 - 1
        if crop < x.shape[-1]:
            # the codec is convolutional: train on crops aligned to the latent grid (4x cheaper)
            f = m.scale_factor
            n = (x.shape[-1] - crop) // f + 1
            oy, ox = torch.randint(0, n, (2, B)) * f
            x = torch.stack([x[i, :, oy[i]:oy[i] + crop, ox[i]:ox[i] + crop] for i in range(B)])
        z = m.encode(x)
        zs = z + 0.1 * z.detach().std() * torch.randn_like(z)  # robustness to imperfect latents
        y = m.decode(zs)
        return {"l1": (y - x).abs().mean(), "l2": ((y - x) ** 2).mean(), "z": 1e-4 * (z ** 2).mean()}

    Loop(a.run, "movq", {"movq": m}, list(m.parameters()), a.steps or 600, a.lr or 1e-3, a.seed, warmup=50,
         **loop_opts(a)).run(step)
    normalize_movq(a.run)


def noise_latents(acp, x0, t):
    """(x_t, t): the forward diffusion of x0 to timesteps t under the cumulative alphas acp."""
    a = acp[t].view(-1, 1, 1, 1)
    return a.sqrt() * x0 + (1 - a).sqrt() * torch.randn_like(x0), t


def edge_weight(x, gain=4.0):
    """1 + gain on pixels next to a colour change of the target (shape outlines): corners and thin
    parts are where a soft decoder loses the shapes' kinds."""
    d = torch.zeros_like(x[:, :1])
    dx = (x[:, :, :, 1:] - x[:, :, :, :-1]).abs().amax(1, keepdim=True) > 0.05
    dy = (x[:, :, 1:, :] - x[:, :, :-1, :]).abs().amax(1, keepdim=True) > 0.05
    d[:, :, :, 1:] += dx
    d[:, :, :, :-1] += dx
    d[:, :, 1:, :] += dy
    d[:, :, :-1, :] += dy
    return 1 + gain * (d > 0).float()


def stage_movq_decoder(a):
    """Sharpens the codec's decoder with the encoder frozen, so the latent space (and every UNet
    trained on it) is unchanged: L1 weighted on shape outlines, latents jittered as in `movq`.
    Starts from the movq stage's weights; can run beside the UNet stage."""
    torch.manual_seed(a.seed)
    m = RM.VQModel(C.movq())
    m.load_state_dict(load_final(a.run, "movq")["movq"])
    m.to(DEV)
    for mod in (m.encoder, m.quant_conv, m.quantize):
        for p in mod.parameters():
            p.requires_grad_(False)
    B = a.batch or 16
    crop = a.crop or 32
    unet = None
    if a.unet_mix > 0:
        # the decoder also learns the latents it is given in practice: the UNet's x0 estimates at
        # the low noise levels of a sampler's last steps, which are softer than encoded images
        ck = a.unet or os.path.join(a.run, "unet", "ckpt.pt")
        if not os.path.exists(ck):
            sys.exit("movq_decoder --unet-mix needs a trained UNet: %s is missing (run the unet stage first)" % ck)
        st = load(ck)
        unet = RM.UNet2DConditionModel(C.unet(9))
        # a checkpoint (EMA weights) or a final.pt
        unet.load_state_dict(st["ema"]["unet"] if "ema" in st else st["unet"])
        frozen(unet.to(DEV))
        log("movq_decoder: x0 estimates of the UNet of %s%s for %.0f%% of the examples"
            % (ck, " (step %d)" % st["step"] if "step" in st else "", 100 * a.unet_mix))
        acp = RP.DDPMScheduler(C.ddpm_scheduler()).alphas_cumprod.to(DEV)
    feed = Feed(functools.partial(render_data, "movq_decoder", B=B, seed=a.seed), a.workers)

    def step(k):
        data = feed(k)
        x = images_tensor(data["img"]) * 2 - 1
        with torch.no_grad():
            z = m.encode(x)  # the frozen encoder
            if unet is not None:
                sel = on(torch.rand(B) < a.unet_mix)
                if sel.any():
                    zs = z[sel]
                    zt, t = noise_latents(acp, zs, torch.randint(0, 250, (zs.shape[0],), device=DEV))
                    e = on(data["f"])[sel]
                    zero = torch.zeros(zs.shape[0], 5, *zs.shape[2:], device=DEV)  # text-to-image: no mask
                    z[sel] = unet(torch.cat([zt, zero], 1), t, e)[:, :4]
        f = m.scale_factor
        if crop < x.shape[-1]:
            n = (x.shape[-1] - crop) // f + 1
            oy, ox = torch.randint(0, n, (2, B))
            c = crop // f
            x = torch.stack([x[i, :, oy[i] * f:oy[i] * f + crop, ox[i] * f:ox[i] * f + crop] for i in range(B)])
            z = torch.stack([z[i, :, oy[i]:oy[i] + c, ox[i]:ox[i] + c] for i in range(B)])
        zs = z + 0.1 * torch.randn_like(z)  # latents are unit-variance after normalize_movq
        y = m.decode(zs)
        w = edge_weight(x)
        return {"l1w": ((y - x).abs() * w).mean() / w.mean(), "l2": ((y - x) ** 2).mean()}

    params = [p for p in m.parameters() if p.requires_grad]
    Loop(a.run, "movq_decoder", {"movq": m}, params, a.steps or 1500, a.lr or 5e-4, a.seed, warmup=50,
         **loop_opts(a)).run(step)


@torch.no_grad()
def normalize_movq(run):
    """Folds a per-channel affine map into quant_conv and into every 1x1 consumer of the latents
    (post_quant_conv, SpatialNorm conv_y/conv_b, codebook) so that latents have zero mean and unit
    variance per channel; the decoded image is unchanged."""
    path = os.path.join(run, "movq", "final.pt")
    st = torch.load(path, map_location="cpu")
    if "normalized" in st:
        return
    m = RM.VQModel(C.movq())
    m.load_state_dict(st["movq"])
    m.eval()
    zs = []
    for k in range(16):
        x = images_tensor([s.render() for s in scene_batch("stats", k, 32)]).cpu() * 2 - 1
        zs.append(m.encode(x))
    z = torch.cat(zs)
    mu = z.mean(dim=(0, 2, 3))
    sd = z.std(dim=(0, 2, 3))
    m.quant_conv.weight.div_(sd.view(-1, 1, 1, 1))
    m.quant_conv.bias.sub_(mu).div_(sd)
    consumers = [m.post_quant_conv] + [mod.conv_y for mod in m.decoder.modules() if isinstance(mod, RM.SpatialNorm)] \
        + [mod.conv_b for mod in m.decoder.modules() if isinstance(mod, RM.SpatialNorm)]
    for c in consumers:
        w = c.weight[:, :, 0, 0]
        c.bias.add_(w @ mu)
        c.weight.mul_(sd.view(1, -1, 1, 1))
    m.quantize.embedding.weight.sub_(mu).div_(sd)
    z2 = m.encode(x)
    log("movq latents: mean %s std %s -> std %.3f" % (mu.numpy().round(3), sd.numpy().round(3), float(z2.std())))
    torch.save({"movq": m.state_dict(), "normalized": True}, path)


PRIOR_WEIGHTS = torch.ones(S.EMBED_DIM)
for _c in range(8):
    PRIOR_WEIGHTS[8 + 8 * _c + 5: 8 + 8 * _c + 7] = 3.0  # centroids: named positions and relations
PRIOR_WEIGHTS = PRIOR_WEIGHTS / PRIOR_WEIGHTS.mean()


def prior_forward(prior, x, t, proj, ehs, mask):
    """PriorTransformer forward on a text length L < 77: text positions 0..L-1 and the four extra
    tokens at 77..80. With the causal mask and the -10000 padding mask this equals the full forward."""
    b, L = ehs.shape[:2]
    n = prior.config["num_embeddings"]
    tt = t * torch.ones(b, dtype=t.dtype, device=ehs.device) if t.dim() == 0 else t
    temb = prior.time_embedding(RM.sinusoid(tt, prior.inner, True, 0))
    seq = torch.cat([prior.encoder_hidden_states_proj(ehs), prior.embedding_proj(proj)[:, None], temb[:, None],
                     prior.proj_in(x)[:, None], prior.prd_embedding.expand(b, -1, -1)], dim=1)
    idx = torch.cat([torch.arange(L), torch.arange(n, n + prior.additional)]).to(ehs.device)
    seq = seq + prior.positional_embedding[:, idx]
    causal = prior.causal_attention_mask[idx][:, idx]
    m = F.pad((1 - mask.to(seq.dtype)) * -10000.0, (0, prior.additional), value=0.0)
    full = (m[:, None, :] + causal[None])[:, None]
    for blk in prior.transformer_blocks:
        seq = blk(seq, full)
    return prior.proj_to_clip_embeddings(prior.norm_out(seq)[:, -1])


def embed_stats(n_batches=32, batch=128):
    """clip_mean / clip_std: statistics of the training set's image embeddings."""
    e = torch.cat([embeddings(scene_batch("stats", k, batch)) for k in range(n_batches)])
    return e.mean(0, keepdim=True), e.std(0, keepdim=True).clamp(min=1e-3)


def stage_prior(a):
    tok, te, _ = load_clip(a.run, vision=False)
    torch.manual_seed(a.seed)
    pr = RM.PriorTransformer(C.prior()).to(DEV)
    mean, std = embed_stats()
    with torch.no_grad():
        pr.clip_mean.copy_(mean)
        pr.clip_std.copy_(std)
    pr.clip_mean.requires_grad_(False)
    pr.clip_std.requires_grad_(False)
    ema = copy.deepcopy(pr)
    frozen(ema)
    sch = RP.UnCLIPScheduler(C.prior_scheduler())
    acp = sch.alphas_cumprod.to(DEV)
    B = a.batch or 128
    with torch.no_grad():
        e_ids, e_mask = (on(x) for x in tokens(tok, [""]))
        e_out = te(e_ids)
    feed = Feed(functools.partial(prior_data, B=B, seed=a.seed), a.workers)
    weights = PRIOR_WEIGHTS.to(DEV)

    def step(k):
        data = feed(k)
        with torch.no_grad():
            ids, mask = (on(x) for x in tokens(tok, data["prompts"]))
            out = te(ids)
            temb, hid = out["text_embeds"], out["last_hidden_state"]
            drop = torch.rand(B, device=DEV) < 0.1
            temb = torch.where(drop[:, None], e_out["text_embeds"].expand(B, -1), temb)
            hid = torch.where(drop[:, None, None], e_out["last_hidden_state"].expand(B, -1, -1), hid)
            mask = torch.where(drop[:, None], e_mask.expand(B, -1), mask)
            x0 = (on(data["f"]) - mean) / std
            t = torch.randint(0, 1000, (B,), device=DEV)
            a_t = acp[t][:, None]
            xt = a_t.sqrt() * x0 + (1 - a_t).sqrt() * torch.randn_like(x0)
        pred = prior_forward(pr, xt, t, temb, hid, mask)
        return {"mse": ((pred - x0) ** 2 * weights).mean()}

    params = [p for p in pr.parameters() if p.requires_grad]
    Loop(a.run, "prior", {"prior": pr}, params, a.steps or 1500, a.lr or 5e-4, a.seed, warmup=100,
         ema={"prior": ema}, ema_decay=0.995, **loop_opts(a)).run(step)


def snap_embedding(e):
    """The scene an image embedding stands for, as an exact embedding: background and kinds one-hot
    at their largest entry, a colour present where its presence number passes 0.5 (absent colours
    all zero), centroids and sizes kept. (N, 72) numpy."""
    out = np.zeros_like(e)
    r = np.arange(e.shape[0])
    out[r, e[:, :8].argmax(1)] = 1
    for c in range(8):
        o = 8 + 8 * c
        on_ = e[:, o] > 0.5
        out[on_, o] = 1
        out[r[on_], o + 1 + e[on_, o + 1:o + 5].argmax(1)] = 1
        out[on_, o + 5:o + 8] = e[on_, o + 5:o + 8]
    return out


class PriorDeviations:
    """How the prior's samples miss the exact embedding of the scene they stand for, learned from
    samples of the trained prior (`embedding - snap_embedding(embedding)`) and put on exact
    embeddings block by block: the background one-hot, each present colour's presence and kind
    one-hot (the sample's true entry moved onto the target's), each absent colour's eight numbers.
    Centroids and sizes are left exact, so the target image still matches its embedding. A UNet
    trained on exact embeddings alone reads the soft one-hots of real samples badly."""

    def __init__(self, run, n=512, batch=32):
        tok, te, ve = load_clip(run)
        pr = RM.PriorTransformer(C.prior())
        pr.load_state_dict(load_final(run, "prior")["prior"])
        prior = RP.Prior.from_models(tok, te.cpu(), ve.cpu(), frozen(pr), C.prior_scheduler(), PROC)
        rows = []
        g = torch.Generator().manual_seed(12345)
        for b in range(0, n, batch):
            prompts = [sc.prompt for sc in scene_batch("stats", 1000 + b // batch, batch)]
            emb, _ = prior(prompts, None, steps=10, guidance=2.0, noise=RP.gaussian(g))
            rows.append(emb.numpy())
        e = np.concatenate(rows)
        d = e - snap_embedding(e)
        bgi = e[:, :8].argmax(1)
        bg = [np.roll(d[i, :8], -bgi[i]) for i in range(len(e))]  # true entry first
        pres, absent = [], []
        for i in range(len(e)):
            for c in range(8):
                o = 8 + 8 * c
                if e[i, o] > 0.5:
                    k = e[i, o + 1:o + 5].argmax()
                    pres.append(np.concatenate([d[i, o:o + 1], np.roll(d[i, o + 1:o + 5], -k)]))
                else:
                    absent.append(d[i, o:o + 8])
        self.bg, self.pres, self.absent = (on(np.stack(x).astype(np.float32)) for x in (bg, pres, absent))
        log("prior deviations from %d samples: |bg| %.3f, |present| %.3f, |absent| %.3f" % (
            len(e), float(self.bg.abs().mean()), float(self.pres.abs().mean()), float(self.absent.abs().mean())))

    @staticmethod
    def _put(dev, idx, n):
        """(B, n) deviations with entry 0 moved to column idx and the others, in order, after it
        (cyclically): the inverse of the np.roll above."""
        cols = (torch.arange(n, device=dev.device)[None] + idx[:, None]) % n
        return torch.zeros_like(dev).scatter_(1, cols, dev)

    def __call__(self, e):
        b = e.shape[0]
        out = e.clone()
        pick = lambda bank: bank[torch.randint(0, bank.shape[0], (b,), device=e.device)]
        out[:, :8] += self._put(pick(self.bg), e[:, :8].argmax(1), 8)
        for c in range(8):
            o = 8 + 8 * c
            present = (e[:, o] > 0.5)[:, None]
            pd = pick(self.pres)
            pres = torch.cat([pd[:, :1], self._put(pd[:, 1:], e[:, o + 1:o + 5].argmax(1), 4),
                              torch.zeros(b, 3, device=e.device)], 1)
            out[:, o:o + 8] += torch.where(present, pres, pick(self.absent))
        return out


class UNetData:
    """Latents (frozen MoVQ), image embeddings and noising for the UNet stage."""

    def __init__(self, run, jitter=0.1, prior_dev=0.0):
        self.jitter = jitter
        self.prior_dev = prior_dev
        self.dev = PriorDeviations(run) if prior_dev > 0 else None
        self.movq = load_movq(run, decoder=False)
        self.zero = torch.zeros(1, C.EMBED_DIM, device=DEV)  # the vision tower maps the zero image here
        self.mean, self.std = embed_stats(8)
        self.acp = RP.DDPMScheduler(C.ddpm_scheduler()).alphas_cumprod.to(DEV)

    @torch.no_grad()
    def augment(self, e):
        # the prior's samples are not exact image embeddings: small noise, and dropout to the
        # zero-image embedding (the unconditional input of classifier-free guidance)
        jitter = torch.rand(e.shape[0], 1, device=e.device) < 0.5
        if self.dev is not None:
            e = torch.where(torch.rand(e.shape[0], 1, device=e.device) < self.prior_dev, self.dev(e), e)
        e = e + jitter * self.jitter * self.std * torch.randn_like(e)
        drop = torch.rand(e.shape[0], device=e.device) < 0.1
        return torch.where(drop[:, None], self.zero.expand_as(e), e)

    @torch.no_grad()
    def latents(self, imgs):
        return self.movq.encode(images_tensor(imgs) * 2 - 1)

    def noised(self, x0):
        return noise_latents(self.acp, x0, torch.randint(0, 1000, (x0.shape[0],), device=x0.device))


def random_mask(rng, n=S.SIDE):
    m = np.zeros((n, n), np.float32)
    if rng.random() < 0.6:
        w, h = rng.randint(n // 5, n * 3 // 4), rng.randint(n // 5, n * 3 // 4)
        x, y = rng.randint(0, n - w), rng.randint(0, n - h)
        m[y:y + h, x:x + w] = 1
    else:  # blob: union of discs
        yy, xx = np.mgrid[0:n, 0:n]
        for _ in range(rng.randint(1, 4)):
            r = rng.uniform(n / 10, n / 4)
            cx, cy = rng.uniform(0, n), rng.uniform(0, n)
            m[(xx - cx) ** 2 + (yy - cy) ** 2 <= r * r] = 1
    return m


def box_mask(shape, rng, n=S.SIDE):
    x0, y0, x1, y1 = shape.bbox()
    m = np.zeros((n, n), np.float32)
    g = [rng.randint(2, 10) for _ in range(4)]
    m[max(0, y0 - g[0]):min(n, y1 + 1 + g[1]), max(0, x0 - g[2]):min(n, x1 + 1 + g[3])] = 1
    return m


def shape_alone(scene, s, rng):
    """The scene of one shape on the background ("a COLOR SHAPE on a BG background"), at its place
    or anywhere."""
    alone = S._place(rng, s.kind, s.size) if rng.random() < 0.5 else None
    if alone is None:
        alone = s
    alone.color = s.color
    return S.Scene(scene.bg, [alone], "", "single", {})


def region_example(rng, n=S.SIDE):
    """A half-plane region (right, left, bottom or top part beyond a cut) with one new shape
    inside and possibly one shape outside: (source without the new shape, mask, target, scene of
    the new shape alone). This is the editing case "paint a COLOR SHAPE at the right"."""
    side = rng.choice(["right", "left", "bottom", "top"])
    while True:
        cut = rng.uniform(0.4, 0.62) * n if side in ("right", "bottom") else rng.uniform(0.38, 0.6) * n
        ca, cb = rng.sample(S.COLORS, 2)
        bg = rng.choice([c for c in S.COLORS if c not in (ca, cb)])
        b = S._place(rng, rng.choice(S.SHAPES), "small" if rng.random() < 0.8 else "large")
        a = S._place(rng, rng.choice(S.SHAPES), rng.choice(list(S.SIZES))) if rng.random() < 0.8 else None
        if b is None:
            continue

        def inside(sh):
            x0, y0, x1, y1 = sh.bbox()
            lo, hi = (x0, x1) if side in ("right", "left") else (y0, y1)
            return lo >= cut + 1 if side in ("right", "bottom") else hi <= cut - 2

        def outside(sh):
            x0, y0, x1, y1 = sh.bbox()
            lo, hi = (x0, x1) if side in ("right", "left") else (y0, y1)
            return hi <= cut - 2 if side in ("right", "bottom") else lo >= cut + 1

        if inside(b) and (a is None or outside(a)):
            break
    b.color = cb
    shapes = [b]
    if a is not None:
        a.color = ca
        shapes = [a, b]
    target = S.Scene(bg, shapes, "", "single", {})
    m = np.zeros((n, n), np.float32)
    c = int(math.ceil(cut))
    if side == "right":
        m[:, c:] = 1
    elif side == "left":
        m[:, :c] = 1
    elif side == "bottom":
        m[c:, :] = 1
    else:
        m[:c, :] = 1
    emb = S.Scene(bg, [b], "", "single", {}) if rng.random() < 0.7 else target
    return target.render(only=[0] if a is not None else []), m, target.render(), emb


def unet_example(scene, rng, p_t2i):
    """One training example of the joint UNet: (source image, mask 1 = repaint or None for
    text-to-image, target image, scene whose embedding conditions)."""
    full = scene.render()
    u = rng.random()
    if u < p_t2i:
        return full, None, full, scene
    u = (u - p_t2i) / (1 - p_t2i)
    if u < 0.25:  # context completion: repaint a random part of the same scene
        return full, random_mask(rng), full, scene
    if u < 0.6:  # a shape removed from the source, to be drawn back from the embedding
        i = rng.randrange(len(scene.shapes))
        others = [j for j in range(len(scene.shapes)) if j != i]
        src = scene.render(only=others)
        emb = scene if rng.random() < 0.5 else shape_alone(scene, scene.shapes[i], rng)
        return src, box_mask(scene.shapes[i], rng), full, emb
    return region_example(rng)


def stage_unet(a):
    """One UNet with the inpaint input layout [x_t, masked image latents, mask] learns both
    jobs: text-to-image examples have mask and masked latents zero (everything is repainted), which
    is exactly the 4-channel decoder UNet with conv_in's first 4 input channels, so the export
    writes the decoder from the same weights. The UNet predicts x0 (prediction_type "sample")."""
    d = UNetData(a.run, a.jitter, a.prior_dev)
    torch.manual_seed(a.seed)
    u = RM.UNet2DConditionModel(C.unet(9)).to(DEV)
    ema = frozen(copy.deepcopy(u))
    B = a.batch or 24
    reuse = a.reuse or 3
    lh = S.SIDE // d.movq.scale_factor
    feed = Feed(functools.partial(unet_data, B=B, p_t2i=0.5, lh=lh, seed=a.seed), a.workers)
    cache = {}

    def step(k):
        # a batch of encoded examples serves `reuse` consecutive steps (fresh noise, timesteps and
        # embedding augmentation each time): encoding the images costs more than a UNet step
        kb = k // reuse
        if cache.get("k") != kb:
            data = feed(kb)
            x0 = d.latents(data["target"])
            lat_src = x0.clone()
            diff = data["diff"]
            if len(diff):
                lat_src[on(diff)] = d.latents(data["source"])
            cache.update(k=kb, x0=x0, lat_src=lat_src, m=on(data["mask"]), e=on(data["e"]), t2i=on(data["t2i"]))
        x0, lat_src, m = cache["x0"], cache["lat_src"], cache["m"]
        e = d.augment(cache["e"])
        xt, t = d.noised(x0)
        out = u(torch.cat([xt, lat_src * m, m], dim=1), t, e)
        # x0 error; in inpainting examples the repainted part weighs 3x the kept part
        w = torch.where(cache["t2i"].view(-1, 1, 1, 1), torch.ones_like(m), 1 + 2 * (1 - m))
        w = w / w.mean(dim=(1, 2, 3), keepdim=True)
        err = ((out[:, :4] - x0) ** 2 * w).mean()
        return {"x0": err, "var": 1e-3 * (out[:, 4:] ** 2).mean()}

    Loop(a.run, "unet", {"unet": u}, list(u.parameters()), a.steps or 6000, a.lr or 1e-3, a.seed, warmup=200,
         ema={"unet": ema}, ema_decay=a.ema or 0.999, every=50, **loop_opts(a)).run(step)


def unet_data(kb, B, p_t2i, lh, seed=0):
    """The examples of one UNet batch: target images, the sources that differ from their target
    (and their indices), latent-size inpaint masks (zero for text-to-image) and embeddings."""
    batch = scene_batch("unet", kb, B, seed)
    rng = random.Random(scene_seed("unet", kb, 0, B, seed) * 7 + 1)
    ex = [unet_example(s, rng, p_t2i) for s in batch]
    diff = [i for i, e in enumerate(ex) if e[0] is not e[2]]
    with torch.no_grad():
        ms = [RP.prepare_inpaint_mask(torch.from_numpy(e[1]), lh, lh)[2] if e[1] is not None
              else torch.zeros(1, 1, lh, lh) for e in ex]
    return {"target": np.stack([e[2] for e in ex]),
            "source": np.stack([ex[i][0] for i in diff]) if diff else np.zeros((0, S.SIDE, S.SIDE, 3), np.uint8),
            "diff": np.array(diff, np.int64), "mask": torch.cat(ms).numpy(), "e": embeddings_np([e[3] for e in ex]),
            "t2i": np.array([e[1] is None for e in ex])}


# ----------------------------------------------------------------------------------------------
# upscaler

UP = 4  # the upscaler's scale: 64 -> 256 px, and applied again 256 -> 1024 px


def upscaler_sources(run, models=""):
    """The codec and UNet whose outputs the upscaler learns to enlarge: an exported model folder's
    decoder/movq and decoder/unet (`models`), or else the run's (load_movq's codec, the unet
    stage's final.pt). Returns (movq, unet, where)."""
    if models:
        d = os.path.join(models, "decoder")
        for sub in ("movq", "unet"):
            if not os.path.exists(os.path.join(d, sub, "config.json")):
                sys.exit("upscaler: %s has no %s (--models takes an exported model folder)" % (d, sub))
        return (frozen(RM.load_folder(os.path.join(d, "movq")).to(DEV)),
                frozen(RM.load_folder(os.path.join(d, "unet")).to(DEV)), d)
    u = os.path.join(run, "unet", "final.pt")
    for path in (os.path.join(run, "movq", "final.pt"), u):
        if not os.path.exists(path):
            sys.exit("upscaler: %s is missing (train the movq and unet stages first, or name an exported "
                     "model folder with --models)" % path)
    unet = RM.UNet2DConditionModel(C.unet(9))
    unet.load_state_dict(load(u)["unet"])
    return load_movq(run), frozen(unet.to(DEV)), run


def unet_x0(unet, zt, t, e):
    """The x0 estimate (prediction_type "sample") of a text-to-image UNet call; a 9-channel UNet
    gets zero mask and masked-image latents."""
    extra = unet.config["in_channels"] - zt.shape[1]
    if extra:
        zt = torch.cat([zt, torch.zeros(zt.shape[0], extra, *zt.shape[2:], device=zt.device)], 1)
    return unet(zt, t, e)[:, :4]


def to_u8(x):
    """(B,3,H,W) decoder output in [-1,1] -> uint8 (B,H,W,3) numpy."""
    return np.stack(RP.to_uint8(x.cpu()))


@torch.no_grad()
def decoder_outputs(movq, unet, scenes_, g, t_max=250):
    """What the decoder hands the upscaler for each scene, aligned with its exact render: uint8
    (B, 64, 64, 3) twice, the MoVQ round trip of the exact render (encode, decode) and the decode
    of the UNet's x0 estimate of the scene's latents noised to a random t < t_max, conditioned on
    the scene's exact attribute embedding (what a sampler's last steps hand the MoVQ). The
    timesteps and the noise come from the torch.Generator g (on the CPU)."""
    acp = RP.DDPMScheduler(C.ddpm_scheduler()).alphas_cumprod
    z = movq.encode(images_tensor([s.render() for s in scenes_]) * 2 - 1)
    rt = movq.decode(z)
    t = torch.randint(0, t_max, (len(scenes_),), generator=g)
    a = acp[t].view(-1, 1, 1, 1).float()
    zt = on(a.sqrt()) * z + on((1 - a).sqrt() * torch.randn(z.shape, generator=g))
    x0 = movq.decode(unet_x0(unet, zt, on(t), embeddings(scenes_)))
    return to_u8(rt), to_u8(x0)


class UpscalerPool:
    """The training scenes of the upscaler (scene seeds of the stage, one per pool entry) with
    their decoder outputs (decoder_outputs: the MoVQ round trip and the decode of a UNet x0
    estimate), computed once and kept in RUN/upscaler/pool.pt: the MoVQ and UNet calls cost
    about as much as the training step of a dozen 32 px crops, and each pool image serves many
    crops."""

    def __init__(self, run, models, n, seed, path, chunk=32):
        self.scenes = [S.make_scene(scene_seed("upscaler", i, 0, 1, seed)) for i in range(n)]
        key = {"n": n, "seed": seed, "models": os.path.abspath(models) if models else ""}
        if os.path.exists(path):
            st = torch.load(path)
            if st["key"] == key:
                self.rt, self.x0 = st["rt"], st["x0"]
                return
        movq, unet, where = upscaler_sources(run, models)
        t0 = time.time()
        g = torch.Generator().manual_seed(seed * 1_000_003 + STAGE_SEED["upscaler"])
        rts, x0s = [], []
        for c in range(0, n, chunk):
            rt, x0 = decoder_outputs(movq, unet, self.scenes[c:c + chunk], g)
            rts.append(rt)
            x0s.append(x0)
        self.rt, self.x0 = np.concatenate(rts), np.concatenate(x0s)
        torch.save({"key": key, "rt": self.rt, "x0": self.x0}, path + ".tmp")
        os.replace(path + ".tmp", path)
        log("upscaler: decoder outputs of %d scenes from %s (%.0f s)" % (n, where, time.time() - t0))


def crop_render(scene, n, x, y, w, h, flip):
    """The (h, w) window at (x, y) of the scene's exact n x n render, or of its mirror image."""
    if flip:
        x = n - x - w
    img = scene.render_at(n, box=(x, y, w, h))
    return img[:, ::-1] if flip else img


def blur(x, sigma, r=3):
    """Gaussian blur of (B,3,H,W) with a per-example sigma (B,) (0: unchanged); the result loses
    r pixels on each side."""
    b = x.shape[0]
    k = torch.arange(-r, r + 1, dtype=torch.float32, device=x.device)
    g = torch.exp(-k[None] ** 2 / (2 * sigma.clamp(min=1e-3)[:, None] ** 2))
    g = (g / g.sum(1, keepdim=True)).repeat_interleave(3, 0)
    h = x.reshape(1, b * 3, *x.shape[2:])
    h = F.conv2d(h, g[:, None, None, :], groups=b * 3)
    h = F.conv2d(h, g[:, None, :, None], groups=b * 3)
    return h.reshape(b, 3, *h.shape[2:])


@torch.no_grad()
def bilinear_start(net):
    """Weights with which SRVGGNetCompact computes bilinear enlargement (away from the picture's
    border, where its convolutions pad with zeros): input channels 0-2 carried through every
    layer unchanged (identity taps, PReLU slopes 1), and the last conv mapping them to each
    sub-pixel's bilinear weights minus the nearest-neighbour part the class adds. The other
    channels keep their random start; the last conv reads them at a tenth of it."""
    convs = [m for m in net.body if isinstance(m, nn.Conv2d)]
    for m in net.body:
        if isinstance(m, nn.PReLU):
            m.weight[:3] = 1
    for cv in convs[:-1]:
        cv.weight[:3] = 0
        cv.bias[:3] = 0
        for c in range(3):
            cv.weight[c, c, 1, 1] = 1
    r = net.upscale
    last = convs[-1]
    last.weight.mul_(0.1)
    last.bias.zero_()
    last.weight[:, :3] = 0
    for c in range(3):
        for dy in range(r):
            for dx in range(r):
                taps = []
                for d in (dy, dx):
                    o = (d + 0.5) / r - 0.5  # the sub-pixel's offset from its input pixel's centre
                    taps.append(torch.tensor([max(0.0, -o), 1 - abs(o), max(0.0, o)]))
                k = torch.outer(taps[0], taps[1])
                k[1, 1] -= 1
                last.weight[c * r * r + dy * r + dx, c] = k


def stage_upscaler(a):
    """The x4 upscaler (SRVGGNetCompact) against exact renders at 4x and 16x the scene's 64 px.
    Each step: whole 64 px decoder outputs (UpscalerPool: MoVQ round trips and decodes of UNet x0
    estimates, mirrored at random) against the exact 256 px render; and the second application,
    256 -> 1024 px, on windows of the network's own 256 px output of this step (detached,
    rounded to uint8) or of an exact 256 px render blurred a little, against the exact 1024 px
    render of the window's centre: the window carries the network's reach (num_conv + 2 pixels)
    of real picture around the part the loss sees, so no example has borders that a whole picture
    lacks. Squared error (PSNR's measure; --loss l1: L1, whose sharp median edges score below
    bicubic where the 64 px picture leaves an edge's place open), plus the same weighted x5 on
    shape outlines. The network starts as a bilinear enlargement (bilinear_start; --start nearest:
    PyTorch's initialisation with the last conv scaled by 0.1, near the nearest-neighbour one)."""
    torch.manual_seed(a.seed)
    cfg = C.upscaler(a.feat or 32, a.convs or 8)
    net = RM.SRVGGNetCompact(cfg)
    if a.start == "bilinear":
        bilinear_start(net)
    else:
        with torch.no_grad():
            net.body[-1].weight.mul_(0.1)  # start near the nearest-neighbour enlargement
            net.body[-1].bias.zero_()
    net.to(DEV)
    ema = frozen(copy.deepcopy(net))
    os.makedirs(os.path.join(a.run, "upscaler"), exist_ok=True)
    pool = UpscalerPool(a.run, a.models, a.pool or 1024, a.seed, os.path.join(a.run, "upscaler", "pool.pt"))
    n = len(pool.scenes)
    B1 = a.batch or 4  # whole 64 px pictures
    B2 = a.batch2 or 4  # second-application windows
    c = a.crop or 32  # the part of a second-application window the loss sees (input pixels)
    m = cfg["num_conv"] + 2  # the network's reach
    side, big = UP * S.SIDE, UP * UP * S.SIDE

    def step(k):
        rng = random.Random(a.seed * 1_000_003 + k)
        xs, ys, flips = [], [], []
        for _ in range(B1):
            j = rng.randrange(n)
            img = (pool.rt if rng.random() < 0.5 else pool.x0)[j]
            flip = rng.random() < 0.5
            xs.append(np.ascontiguousarray(img[:, ::-1] if flip else img))
            ys.append(crop_render(pool.scenes[j], side, 0, 0, side, side, flip))
            flips.append((j, flip))
        out = net(images_tensor(xs))
        x2, y2 = [], []
        for _ in range(B2):
            X, Y = rng.randrange(side - c - 2 * m + 1), rng.randrange(side - c - 2 * m + 1)
            if rng.random() < 0.5:
                # the network's own 256 px output
                i = rng.randrange(B1)
                j, flip = flips[i]
                x2.append(torch.round(out[i, :, Y:Y + c + 2 * m, X:X + c + 2 * m].detach().clamp(0, 1) * 255) / 255)
            else:
                # an exact 256 px render, blurred by sigma < 1.2 px
                j, flip = rng.randrange(n), rng.random() < 0.5
                r = 3
                raw = crop_render(pool.scenes[j], side, X - r, Y - r, c + 2 * (m + r), c + 2 * (m + r), flip)
                sigma = torch.tensor([rng.uniform(0.0, 1.2)], device=DEV)
                x2.append(torch.round(blur(images_tensor([np.ascontiguousarray(raw)]), sigma, r)[0].clamp(0, 1)
                                      * 255) / 255)
            y2.append(np.ascontiguousarray(crop_render(pool.scenes[j], big, UP * (X + m), UP * (Y + m), UP * c, UP * c,
                                                       flip)))
        out2 = net(torch.stack(x2))[:, :, UP * m:UP * (m + c), UP * m:UP * (m + c)]
        losses = {}
        for name, pred, tgt in (("", out, images_tensor([np.ascontiguousarray(y) for y in ys])),
                                ("2", out2, images_tensor(y2))):
            w = edge_weight(tgt)
            e = (pred - tgt) ** 2 if a.loss == "l2" else (pred - tgt).abs()
            # the second application weighs by its share of the pixels
            f = pred.numel() / (out.numel() + out2.numel())
            losses[a.loss + name] = f * e.mean()
            losses[a.loss + "w" + name] = f * (e * w).mean() / w.mean()
        return losses

    Loop(a.run, "upscaler", {"upscaler": net}, list(net.parameters()), a.steps or 3000, a.lr or 2e-3, a.seed,
         warmup=100, ema={"upscaler": ema}, ema_decay=a.ema or 0.999, every=50, **loop_opts(a)).run(step)


def loop_opts(a):
    return {"init": a.init, "minutes": a.minutes}


def finalize(run, stage):
    """Writes <stage>/final.pt from the latest checkpoint (EMA weights where kept), for a stage
    that was stopped before its last step."""
    st = torch.load(os.path.join(run, stage, "ckpt.pt"), map_location="cpu")
    torch.save(st.get("ema", st["modules"]), os.path.join(run, stage, "final.pt"))
    log("%s: final.pt from the checkpoint of step %d" % (stage, st["step"]))


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("stage", choices=["tokenizer", "clip", "movq", "movq_decoder", "prior", "unet", "upscaler", "finalize"])
    p.add_argument("which", nargs="?", default="", help="finalize: the stage to finalize")
    p.add_argument("--run", required=True, help="run folder (checkpoints, logs)")
    p.add_argument("--steps", type=int, default=0)
    p.add_argument("--batch", type=int, default=0)
    p.add_argument("--lr", type=float, default=0.0)
    p.add_argument("--seed", type=int, default=0, choices=range(5),
                   help="0-4: the scenes each step trains on and every random draw (a fine-tune with another seed sees fresh scenes)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--reuse", type=int, default=0, help="unet: steps served by one batch of encoded examples")
    p.add_argument("--ema", type=float, default=0.0, help="EMA decay (stages that keep EMA weights)")
    p.add_argument("--crop", type=int, default=0, help="movq, movq_decoder: training crop side; upscaler: input crop side (default 32)")
    p.add_argument("--part", default="", help="clip: text, vision or both (default)")
    p.add_argument("--jitter", type=float, default=0.1,
                   help="unet: noise added to half of the conditioning embeddings, in per-dimension spreads")
    p.add_argument("--prior-dev", type=float, default=0.0,
                   help="unet: share of embeddings given the deviations of the trained prior's samples")
    p.add_argument("--unet-mix", type=float, default=0.0,
                   help="movq_decoder: share of examples decoded from the UNet's x0 estimates")
    p.add_argument("--unet", default="",
                   help="movq_decoder --unet-mix: the UNet weights (a final.pt or ckpt.pt; default RUN/unet/ckpt.pt)")
    p.add_argument("--models", default="",
                   help="upscaler: an exported model folder whose decoder (MoVQ, UNet) makes the inputs (default: the run's)")
    p.add_argument("--pool", type=int, default=0, help="upscaler: scenes whose decoder outputs are precomputed (default 1024)")
    p.add_argument("--batch2", type=int, default=0, help="upscaler: second-application windows per step (default 4)")
    p.add_argument("--loss", default="l2", choices=["l1", "l2"], help="upscaler: squared error (default) or L1")
    p.add_argument("--start", default="bilinear", choices=["bilinear", "nearest"],
                   help="upscaler: the enlargement the network computes before training")
    p.add_argument("--feat", type=int, default=0, help="upscaler: num_feat (default 32)")
    p.add_argument("--convs", type=int, default=0, help="upscaler: num_conv (default 8)")
    p.add_argument("--device", default="cpu", help="cpu, or cuda to train on a CUDA GPU")
    p.add_argument("--workers", type=int, default=0, help="processes that build the coming steps' scenes")
    p.add_argument("--init", default="", help="a final.pt whose weights a stage without a checkpoint starts from")
    p.add_argument("--minutes", type=float, default=0.0, help="time budget of the stage (schedule over it)")
    a = p.parse_args()
    if a.minutes < 0 or a.minutes != a.minutes:
        p.error("--minutes %s: a time budget is a positive number of minutes (0: none)" % a.minutes)
    torch.set_num_threads(a.threads)
    global DEV
    DEV = torch.device(a.device)
    if DEV.type == "cuda" and not torch.cuda.is_available():
        sys.exit("--device %s: this PyTorch sees no CUDA GPU" % a.device)
    if DEV.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    if a.stage == "finalize":
        finalize(a.run, a.which)
        return
    globals()["stage_" + a.stage](a)


if __name__ == "__main__":
    main()
