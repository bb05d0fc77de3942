"""Schedulers (UnCLIP, DDPM, DDIM, DPM-Solver++ 2M), the CLIP BPE tokenizer, the CLIP image
processor and the Kandinsky 2.2 pipelines (prior, decoder, img2img, inpaint, variation), driven by
diffusers-format configs. Every random draw goes through a `noise(shape)` callable, so a run can be
replayed from recorded noise."""
import json
import math
import os
import unicodedata

import numpy as np
import torch
import torch.nn.functional as F

import reverie_models as RM


# ----------------------------------------------------------------------------------------------
# schedulers

def make_betas(cfg):
    n = cfg.get("num_train_timesteps", 1000)
    kind = cfg.get("beta_schedule", "linear")
    if cfg.get("trained_betas"):
        return torch.tensor(cfg["trained_betas"], dtype=torch.float32)
    if kind == "linear":
        return torch.linspace(cfg.get("beta_start", 0.0001), cfg.get("beta_end", 0.02), n, dtype=torch.float32)
    if kind == "scaled_linear":
        return torch.linspace(cfg["beta_start"] ** 0.5, cfg["beta_end"] ** 0.5, n, dtype=torch.float32) ** 2
    if kind == "squaredcos_cap_v2":
        def abar(t):
            return math.cos((t + 0.008) / 1.008 * math.pi / 2) ** 2
        return torch.tensor([min(1 - abar((i + 1) / n) / abar(i / n), 0.999) for i in range(n)], dtype=torch.float32)
    raise ValueError("unsupported beta_schedule " + kind)


def model_x0_eps(cfg, out, sample, alpha, sigma):
    """(x0, epsilon) implied by a model output for sample = alpha x0 + sigma epsilon, by the
    config's prediction_type (epsilon, sample or v_prediction), as diffusers computes them."""
    kind = cfg.get("prediction_type", "epsilon")
    if kind == "epsilon":
        return (sample - sigma * out) / alpha, out
    if kind == "sample":
        return out, (sample - alpha * out) / sigma
    if kind == "v_prediction":
        return alpha * sample - sigma * out, alpha * out + sigma * sample
    raise ValueError("unsupported prediction_type " + kind)


class _Base:
    def __init__(self, cfg):
        self.config = dict(cfg)
        self.num_train = cfg.get("num_train_timesteps", 1000)
        self.betas = make_betas(cfg)
        self.alphas = 1.0 - self.betas
        self.alphas_cumprod = torch.cumprod(self.alphas, dim=0)
        self.one = torch.tensor(1.0)

    def add_noise(self, x0, noise, t):
        a = self.alphas_cumprod[int(t)]
        return a ** 0.5 * x0 + (1 - a) ** 0.5 * noise

    def _spaced(self, n):
        spacing = self.config.get("timestep_spacing", "leading")
        off = self.config.get("steps_offset", 0)
        if spacing == "leading":
            r = self.num_train // n
            return (np.arange(0, n) * r).round()[::-1].astype(np.int64) + off
        if spacing == "trailing":
            r = self.num_train / n
            return np.round(np.arange(self.num_train, 0, -r)).astype(np.int64) - 1
        if spacing == "linspace":
            return np.linspace(0, self.num_train - 1, n).round()[::-1].astype(np.int64)
        raise ValueError("unsupported timestep_spacing " + spacing)


class UnCLIPScheduler(_Base):
    def set_timesteps(self, n):
        r = (self.num_train - 1) / (n - 1)
        self.timesteps = torch.from_numpy((np.arange(0, n) * r).round()[::-1].copy().astype(np.int64))
        return self.timesteps

    def step(self, model_output, t, sample, prev_t, noise):
        t = int(t)
        prev_t = t - 1 if prev_t is None else int(prev_t)
        a_t = self.alphas_cumprod[t]
        a_prev = self.alphas_cumprod[prev_t] if prev_t >= 0 else self.one
        bp_t, bp_prev = 1 - a_t, 1 - a_prev
        if prev_t == t - 1:
            beta, alpha = self.betas[t], self.alphas[t]
        else:
            beta = 1 - a_t / a_prev
            alpha = 1 - beta
        x0 = model_output
        if self.config.get("clip_sample", True):
            r = self.config.get("clip_sample_range", 1.0)
            x0 = torch.clamp(x0, -r, r)
        mean = (a_prev ** 0.5 * beta) / bp_t * x0 + alpha ** 0.5 * bp_prev / bp_t * sample
        if t > 0:
            var = bp_prev / bp_t * beta
            std = torch.exp(0.5 * torch.log(torch.clamp(var, min=1e-20)))
            mean = mean + std * noise(model_output.shape)
        return mean


class DDPMScheduler(_Base):
    def set_timesteps(self, n):
        self.n = n
        self.timesteps = torch.from_numpy(self._spaced(n).copy())
        return self.timesteps

    def prev(self, t):
        return int(t) - self.num_train // self.n

    def step(self, model_output, t, sample, noise):
        t = int(t)
        p = self.prev(t)
        a_t = self.alphas_cumprod[t]
        a_prev = self.alphas_cumprod[p] if p >= 0 else self.one
        bp_t, bp_prev = 1 - a_t, 1 - a_prev
        cur_a = a_t / a_prev
        cur_b = 1 - cur_a
        x0, _ = model_x0_eps(self.config, model_output, sample, a_t ** 0.5, bp_t ** 0.5)
        if self.config.get("clip_sample", False):
            r = self.config.get("clip_sample_range", 1.0)
            x0 = x0.clamp(-r, r)
        out = (a_prev ** 0.5 * cur_b) / bp_t * x0 + cur_a ** 0.5 * bp_prev / bp_t * sample
        if t > 0:
            var = torch.clamp((1 - a_prev) / (1 - a_t) * cur_b, min=1e-20)
            out = out + var ** 0.5 * noise(model_output.shape)
        return out


class DDIMScheduler(_Base):
    def __init__(self, cfg):
        super().__init__(cfg)
        self.final_alpha_cumprod = self.one if cfg.get("set_alpha_to_one", True) else self.alphas_cumprod[0]

    def set_timesteps(self, n):
        self.n = n
        self.timesteps = torch.from_numpy(self._spaced(n).copy())
        return self.timesteps

    def step(self, model_output, t, sample, noise=None):
        t = int(t)
        p = t - self.num_train // self.n
        a_t = self.alphas_cumprod[t]
        a_prev = self.alphas_cumprod[p] if p >= 0 else self.final_alpha_cumprod
        bp_t = 1 - a_t
        x0, eps = model_x0_eps(self.config, model_output, sample, a_t ** 0.5, bp_t ** 0.5)
        if self.config.get("clip_sample", False):
            r = self.config.get("clip_sample_range", 1.0)
            x0 = x0.clamp(-r, r)
        return a_prev ** 0.5 * x0 + (1 - a_prev) ** 0.5 * eps


class DPMSolverMultistepScheduler(_Base):
    """DPM-Solver++ (2M, midpoint), lower-order final step, final sigma zero."""

    def set_timesteps(self, n):
        spacing = self.config.get("timestep_spacing", "linspace")
        off = self.config.get("steps_offset", 0)
        last = self.num_train
        if spacing == "linspace":
            ts = np.linspace(0, last - 1, n + 1).round()[::-1][:-1].astype(np.int64)
        elif spacing == "leading":
            r = last // (n + 1)
            ts = (np.arange(0, n + 1) * r).round()[::-1][:-1].astype(np.int64) + off
        elif spacing == "trailing":
            r = self.num_train / n
            ts = np.arange(last, 0, -r).round().astype(np.int64) - 1
        else:
            raise ValueError("unsupported timestep_spacing " + spacing)
        sig = ((1 - self.alphas_cumprod) / self.alphas_cumprod) ** 0.5
        sig = sig.numpy()[ts].astype(np.float64)
        self.sigmas = torch.from_numpy(np.concatenate([sig, [0.0]]).astype(np.float32))
        self.timesteps = torch.from_numpy(ts.copy())
        self.n = n
        self.outputs = []
        self.index = 0
        return self.timesteps

    @staticmethod
    def _alpha_sigma(s):
        a = 1 / ((s ** 2 + 1) ** 0.5)
        return a, s * a

    def step(self, model_output, t, sample, noise=None):
        i = self.index
        s0 = self.sigmas[i]
        a0, sg0 = self._alpha_sigma(s0)
        x0, _ = model_x0_eps(self.config, model_output, sample, a0, sg0)
        self.outputs.append(x0)
        a_t, sg_t = self._alpha_sigma(self.sigmas[i + 1])
        lam_t = torch.log(a_t) - torch.log(sg_t)
        lam_0 = torch.log(a0) - torch.log(sg0)
        h = lam_t - lam_0
        first = i == 0 or i == self.n - 1 or self.config.get("solver_order", 2) == 1
        if first:
            out = (sg_t / sg0) * sample - a_t * (torch.exp(-h) - 1.0) * x0
        else:
            a1, sg1 = self._alpha_sigma(self.sigmas[i - 1])
            lam_1 = torch.log(a1) - torch.log(sg1)
            r0 = (lam_0 - lam_1) / h
            d0, d1 = x0, (1.0 / r0) * (x0 - self.outputs[-2])
            out = (sg_t / sg0) * sample - a_t * (torch.exp(-h) - 1.0) * d0 - 0.5 * (a_t * (torch.exp(-h) - 1.0)) * d1
        self.index += 1
        return out


def make_scheduler(cfg):
    name = cfg.get("_class_name", "DDPMScheduler")
    return {"UnCLIPScheduler": UnCLIPScheduler, "DDPMScheduler": DDPMScheduler, "DDIMScheduler": DDIMScheduler,
            "DPMSolverMultistepScheduler": DPMSolverMultistepScheduler}[name](cfg)


def decoder_scheduler_config(base, kind):
    """The decoder scheduler of a given kind ('ddpm', 'ddim', 'dpmpp') built from a DDPM config,
    as diffusers' from_config does."""
    keys = ("num_train_timesteps", "beta_start", "beta_end", "beta_schedule", "trained_betas", "clip_sample",
            "clip_sample_range", "prediction_type", "steps_offset", "timestep_spacing")
    c = {k: base[k] for k in keys if k in base}
    if kind == "ddpm":
        c.update({k: base[k] for k in ("variance_type",) if k in base})
        c["_class_name"] = "DDPMScheduler"
    elif kind == "ddim":
        c.update({"_class_name": "DDIMScheduler", "set_alpha_to_one": False})
    elif kind == "dpmpp":
        c.update({"_class_name": "DPMSolverMultistepScheduler", "solver_order": 2, "algorithm_type": "dpmsolver++",
                  "solver_type": "midpoint", "lower_order_final": True, "final_sigmas_type": "zero"})
    else:
        raise ValueError(kind)
    return c


# ----------------------------------------------------------------------------------------------
# tokenizer

def bytes_to_unicode():
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, [chr(c) for c in cs]))


def _is_cjk(cp):
    return (0x4E00 <= cp <= 0x9FFF or 0x3400 <= cp <= 0x4DBF or 0x20000 <= cp <= 0x2A6DF or 0x2A700 <= cp <= 0x2B73F
            or 0x2B740 <= cp <= 0x2B81F or 0x2B820 <= cp <= 0x2CEAF or 0xF900 <= cp <= 0xFAFF or 0x2F800 <= cp <= 0x2FA1F)


def normalize_text(text):
    """transformers' CLIPTokenizer clean-up without ftfy: NFC, control characters dropped, CJK
    characters spaced, whitespace collapsed, lower case (accents kept)."""
    out = []
    for ch in text:
        cp = ord(ch)
        if cp == 0 or cp == 0xFFFD:
            continue
        if ch in "\t\n\r" or unicodedata.category(ch) == "Zs" or ch == " ":
            out.append(" ")
            continue
        if unicodedata.category(ch).startswith("C"):
            continue
        out.append(" %s " % ch if _is_cjk(cp) else ch)
    text = unicodedata.normalize("NFC", "".join(out))
    return " ".join(text.lower().split())


def _split(text):
    """The CLIP pre-tokenizer regex, case-insensitive, on already lower-cased text."""
    specials = ("<|startoftext|>", "<|endoftext|>")
    contractions = ("'s", "'t", "'re", "'ve", "'m", "'ll", "'d")

    def cls(c):
        cat = unicodedata.category(c)
        if cat.startswith("L"):
            return "L"
        if cat.startswith("N"):
            return "N"
        if c.isspace():
            return "S"
        return "P"

    pieces = []
    i = 0
    n = len(text)
    while i < n:
        hit = None
        for s in specials + contractions:
            if text.startswith(s, i):
                hit = s
                break
        if hit:
            pieces.append(hit)
            i += len(hit)
            continue
        c = cls(text[i])
        if c == "S":
            i += 1
            continue
        if c == "N":
            pieces.append(text[i])
            i += 1
            continue
        j = i + 1
        while j < n and cls(text[j]) == c:
            j += 1
        pieces.append(text[i:j])
        i = j
    return pieces


class CLIPTokenizer:
    def __init__(self, folder):
        with open(os.path.join(folder, "vocab.json"), encoding="utf-8") as f:
            self.encoder = json.load(f)
        with open(os.path.join(folder, "merges.txt"), encoding="utf-8") as f:
            lines = f.read().split("\n")
        lines = [l for l in lines[1:] if l.strip()] if lines and lines[0].startswith("#version") else [l for l in lines if l.strip()]
        self.ranks = {tuple(l.split()): i for i, l in enumerate(lines)}
        cfg = RM.read_json(os.path.join(folder, "tokenizer_config.json"))
        self.max_length = cfg.get("model_max_length", 77)

        def content(v):
            return v["content"] if isinstance(v, dict) else v
        self.bos = content(cfg.get("bos_token", "<|startoftext|>"))
        self.eos = content(cfg.get("eos_token", "<|endoftext|>"))
        self.pad = content(cfg.get("pad_token", self.eos))
        unk = content(cfg.get("unk_token", self.eos))
        self.added = {}
        for k, v in cfg.get("added_tokens_decoder", {}).items():
            self.added[v["content"]] = int(k)
        for s in (self.bos, self.eos, self.pad, unk):
            if s not in self.added:
                self.added[s] = self.encoder[s]
        self.unk_id = self.added[unk]
        self.bos_id, self.eos_id, self.pad_id = self.added[self.bos], self.added[self.eos], self.added[self.pad]
        self.b2u = bytes_to_unicode()
        self.cache = {}

    def bpe(self, token):
        if token in self.cache:
            return self.cache[token]
        word = list(token[:-1]) + [token[-1] + "</w>"]
        while len(word) > 1:
            best, rank = None, None
            for p in zip(word, word[1:]):
                r = self.ranks.get(p)
                if r is not None and (rank is None or r < rank):
                    best, rank = p, r
            if best is None:
                break
            merged = []
            i = 0
            while i < len(word):
                if i < len(word) - 1 and word[i] == best[0] and word[i + 1] == best[1]:
                    merged.append(word[i] + word[i + 1])
                    i += 2
                else:
                    merged.append(word[i])
                    i += 1
            word = merged
        self.cache[token] = word
        return word

    def encode_plain(self, text):
        ids = []
        for piece in _split(normalize_text(text)):
            u = "".join(self.b2u[b] for b in piece.encode("utf-8"))
            ids.extend(self.encoder.get(t, self.unk_id) for t in self.bpe(u))
        return ids

    def encode(self, text):
        """Token ids of a text, added tokens matched literally first (longest first)."""
        specials = sorted(self.added, key=len, reverse=True)
        ids = []
        i = start = 0
        while i < len(text):
            hit = next((s for s in specials if text.startswith(s, i)), None)
            if hit:
                ids += self.encode_plain(text[start:i])
                ids.append(self.added[hit])
                i += len(hit)
                start = i
            else:
                i += 1
        ids += self.encode_plain(text[start:])
        return ids

    def __call__(self, texts):
        """(ids, mask) int64 tensors of shape (B, max_length), as padding='max_length', truncation."""
        rows, masks = [], []
        for t in texts:
            body = self.encode(t)[: self.max_length - 2]
            row = [self.bos_id] + body + [self.eos_id]
            m = [1] * len(row)
            row += [self.pad_id] * (self.max_length - len(row))
            m += [0] * (self.max_length - len(m))
            rows.append(row)
            masks.append(m)
        return torch.tensor(rows, dtype=torch.int64), torch.tensor(masks, dtype=torch.int64)


# ----------------------------------------------------------------------------------------------
# image processing

class CLIPImageProcessor:
    def __init__(self, cfg):
        s = cfg.get("size", 224)
        self.short = s.get("shortest_edge", s.get("height")) if isinstance(s, dict) else s
        c = cfg.get("crop_size", 224)
        self.crop = (c["height"], c["width"]) if isinstance(c, dict) else (c, c)
        self.mean = torch.tensor(cfg.get("image_mean", [0.48145466, 0.4578275, 0.40821073])).view(1, 3, 1, 1)
        self.std = torch.tensor(cfg.get("image_std", [0.26862954, 0.26130258, 0.27577711])).view(1, 3, 1, 1)
        self.scale = cfg.get("rescale_factor", 1 / 255)

    def __call__(self, img_uint8_hwc):
        from PIL import Image
        a = np.asarray(img_uint8_hwc)
        h, w = a.shape[:2]
        if min(h, w) != self.short:
            if h <= w:
                nh, nw = self.short, int(self.short * w / h)
            else:
                nw, nh = self.short, int(self.short * h / w)
            a = np.asarray(Image.fromarray(a).resize((nw, nh), Image.BICUBIC))
            h, w = nh, nw
        ch, cw = self.crop
        top, left = (h - ch) // 2, (w - cw) // 2
        a = a[top:top + ch, left:left + cw]
        x = torch.from_numpy(a.astype(np.float32)).permute(2, 0, 1)[None] * self.scale
        return (x - self.mean) / self.std

    def normalize_float(self, x01):
        """Already sized (B,3,H,W) images in [0,1], on any device -> pixel values (training path)."""
        return (x01 - self.mean.to(x01.device)) / self.std.to(x01.device)


def image_to_tensor(img_uint8_hwc):
    """uint8 HWC -> float32 (1,3,H,W) in [-1,1], as x/127.5 - 1."""
    a = torch.from_numpy(np.ascontiguousarray(img_uint8_hwc)).float()
    return (a / 127.5 - 1).permute(2, 0, 1)[None]


def latent_side(px, f):
    n = px // (f * f)
    if px % (f * f):
        n += 1
    return n * f


def prepare_inpaint_mask(mask_hw, lh, lw):
    """(H,W) float mask, 1 = repaint -> (inverted 1 = keep (1,1,H,W), nearest (1,1,lh,lw), eroded)."""
    inv = 1.0 - (mask_hw >= 0.5).float()
    inv = inv[None, None]
    near = F.interpolate(inv, size=(lh, lw), mode="nearest")
    hole = (near != 1).float()[0, 0]
    kill = torch.zeros_like(hole)
    # a pixel that is not kept clears (i-1,j), (i,j-1), (i-1,j-1), (i+1,j), (i,j+1), (i+1,j+1)
    kill[:-1, :] += hole[1:, :]
    kill[:, :-1] += hole[:, 1:]
    kill[:-1, :-1] += hole[1:, 1:]
    kill[1:, :] += hole[:-1, :]
    kill[:, 1:] += hole[:, :-1]
    kill[1:, 1:] += hole[:-1, :-1]
    m = near.clone()
    m[0, 0][kill > 0] = 0
    return inv, near, m


# ----------------------------------------------------------------------------------------------
# pipelines

def gaussian(generator):
    return lambda shape: torch.randn(shape, generator=generator, dtype=torch.float32)


def replay(tensors):
    """A noise source that hands out the given tensors in order."""
    it = iter(tensors)
    return lambda shape: next(it)


class Record:
    """Optional call recorder for reference cases: rec(name, tensor)."""

    def __init__(self):
        self.t = {}
        self.counts = {}

    def call(self, model):
        k = self.counts.get(model, 0)
        self.counts[model] = k + 1
        return "calls.%s.%03d." % (model, k)

    def __call__(self, name, x):
        self.t[name] = x.detach().clone() if torch.is_tensor(x) else torch.tensor(x)


class Prior:
    """text -> CLIP image embedding (KandinskyV22PriorPipeline)."""

    def __init__(self, folder):
        self.folder = folder
        self.tokenizer = CLIPTokenizer(os.path.join(folder, "tokenizer"))
        self.text_encoder = RM.load_folder(os.path.join(folder, "text_encoder"))
        self.image_encoder = RM.load_folder(os.path.join(folder, "image_encoder"))
        self.prior = RM.load_folder(os.path.join(folder, "prior"))
        self.scheduler_config = RM.read_json(os.path.join(folder, "scheduler", "scheduler_config.json"))
        self.image_processor = CLIPImageProcessor(RM.read_json(os.path.join(folder, "image_processor", "preprocessor_config.json")))

    @classmethod
    def from_models(cls, tokenizer, text_encoder, image_encoder, prior, scheduler_config, image_processor):
        self = cls.__new__(cls)
        self.tokenizer, self.text_encoder, self.image_encoder, self.prior = tokenizer, text_encoder, image_encoder, prior
        self.scheduler_config, self.image_processor = scheduler_config, image_processor
        return self

    def encode_text(self, texts, rec=None):
        ids, mask = self.tokenizer(texts)
        out = self.text_encoder(ids)
        if rec is not None:
            p = rec.call("text_encoder")
            rec(p + "args.0", ids)
            rec(p + "out.text_embeds", out["text_embeds"])
            rec(p + "out.last_hidden_state", out["last_hidden_state"])
        return ids, mask, out["text_embeds"], out["last_hidden_state"]

    def zero_embed(self, rec=None):
        s = self.image_encoder.config["image_size"]
        z = torch.zeros(1, 3, s, s)
        e = self.image_encoder(z)
        if rec is not None:
            p = rec.call("image_encoder")
            rec(p + "args.0", z)
            rec(p + "out.image_embeds", e["image_embeds"])
            rec(p + "out.last_hidden_state", e["last_hidden_state"])
        return e["image_embeds"]

    def image_embed(self, img_uint8_hwc):
        return self.image_encoder(self.image_processor(img_uint8_hwc))["image_embeds"]

    @torch.no_grad()
    def __call__(self, prompts, negative_prompt=None, steps=25, guidance=4.0, latents=None, noise=None, rec=None):
        if isinstance(prompts, str):
            prompts = [prompts]
        prompts = list(prompts)
        neg = None
        if negative_prompt is not None:
            prompts = prompts + [negative_prompt] * len(prompts) if isinstance(negative_prompt, str) else prompts + list(negative_prompt)
            neg = [prompts[-1]] * len(prompts) if isinstance(negative_prompt, str) else list(negative_prompt) * 2
        b = len(prompts)
        _, cmask, cemb, chid = self.encode_text(prompts, rec)
        cfg = guidance > 1.0
        if cfg:
            _, umask, uemb, uhid = self.encode_text(neg if neg is not None else [""] * b, rec)
            emb = torch.cat([uemb, cemb])
            hid = torch.cat([uhid, chid])
            mask = torch.cat([umask, cmask]).bool()
        else:
            emb, hid, mask = cemb, chid, cmask.bool()
        sch = UnCLIPScheduler(self.scheduler_config)
        ts = sch.set_timesteps(steps)
        if rec is not None:
            rec("timesteps", ts)
        x = latents if latents is not None else noise((b, self.prior.config["embedding_dim"]))
        for i, t in enumerate(ts):
            inp = torch.cat([x, x]) if cfg else x
            pred = self.prior(inp, t, emb, hid, mask)
            if rec is not None:
                p = rec.call("prior")
                rec(p + "args.0", inp)
                rec(p + "in.timestep", t)
                rec(p + "in.proj_embedding", emb)
                rec(p + "in.encoder_hidden_states", hid)
                rec(p + "in.attention_mask", mask.to(torch.uint8))
                rec(p + "out.predicted_image_embedding", pred)
            if cfg:
                u, c = pred.chunk(2)
                pred = u + guidance * (c - u)
            prev = None if i + 1 == len(ts) else ts[i + 1]
            x = sch.step(pred, t, x, prev, noise)
            if rec is not None:
                rec("step_latents.%03d" % i, x)
        x = self.prior.post_process_latents(x)
        if negative_prompt is None:
            zero = self.zero_embed(rec).repeat(x.shape[0], 1)
            return x, zero
        return x.chunk(2)


class Decoder:
    """image embedding -> image (KandinskyV22Pipeline, Img2Img and Inpaint)."""

    def __init__(self, folder):
        self.unet = RM.load_folder(os.path.join(folder, "unet"))
        self.movq = RM.load_folder(os.path.join(folder, "movq"))
        self.scheduler_config = RM.read_json(os.path.join(folder, "scheduler", "scheduler_config.json"))

    @classmethod
    def from_models(cls, unet, movq, scheduler_config):
        self = cls.__new__(cls)
        self.unet, self.movq, self.scheduler_config = unet, movq, scheduler_config
        return self

    def _unet(self, x, t, embeds, guidance, rec, extra=None):
        cfg = guidance > 1.0
        inp = torch.cat([x, x]) if cfg else x
        if extra is not None:
            inp = torch.cat([inp, extra], dim=1)
        out = self.unet(inp, t, embeds)
        if rec is not None:
            p = rec.call("unet")
            rec(p + "in.sample", inp)
            rec(p + "in.timestep", t)
            rec(p + "in.added_cond_kwargs.image_embeds", embeds)
            rec(p + "out.0", out)
        eps = out[:, : x.shape[1]]
        if cfg:
            u, c = eps.chunk(2)
            eps = u + guidance * (c - u)
        return eps

    def decode(self, x, rec=None):
        img = self.movq.decode(x, force_not_quantize=True)
        if rec is not None:
            p = rec.call("movq_decode")
            rec(p + "args.0", x)
            rec(p + "out.sample", img)
        return img

    def encode(self, img, rec=None):
        z = self.movq.encode(img)
        if rec is not None:
            p = rec.call("movq_encode")
            rec(p + "args.0", img)
            rec(p + "out.latents", z)
        return z

    def embeds(self, image_embeds, negative_image_embeds, guidance):
        return torch.cat([negative_image_embeds, image_embeds]) if guidance > 1.0 else image_embeds

    def latent_hw(self, height, width):
        f = self.movq.scale_factor
        return latent_side(height, f), latent_side(width, f)

    @torch.no_grad()
    def __call__(self, image_embeds, negative_image_embeds, height=64, width=64, steps=10, guidance=4.0,
                 latents=None, noise=None, scheduler_config=None, rec=None):
        sch = make_scheduler(scheduler_config or self.scheduler_config)
        ts = sch.set_timesteps(steps)
        if rec is not None:
            rec("timesteps", ts)
            if isinstance(sch, DPMSolverMultistepScheduler):
                rec("sigmas", sch.sigmas)
        lh, lw = self.latent_hw(height, width)
        c = self.movq.config["latent_channels"]
        x = latents if latents is not None else noise((image_embeds.shape[0], c, lh, lw))
        emb = self.embeds(image_embeds, negative_image_embeds, guidance)
        for i, t in enumerate(ts):
            eps = self._unet(x, t, emb, guidance, rec)
            x = sch.step(eps, t, x, noise)
            if rec is not None:
                rec("step_latents.%03d" % i, x)
        return self.decode(x, rec)

    @torch.no_grad()
    def img2img(self, image_uint8_hwc, image_embeds, negative_image_embeds, strength=0.3, steps=10, guidance=4.0,
                start_noise=None, noise=None, rec=None):
        img = image_to_tensor(image_uint8_hwc)
        lat = self.encode(img, rec)
        sch = make_scheduler(self.scheduler_config)
        ts_all = sch.set_timesteps(steps)
        init = min(int(steps * strength), steps)
        ts = ts_all[steps - init:]
        if rec is not None:
            rec("timesteps", ts)
            rec("timesteps_all", ts_all)
            rec("pre.image", img)
            rec("pre.image_latents", lat)
        n0 = start_noise if start_noise is not None else noise(lat.shape)
        x = sch.add_noise(lat, n0, ts[0])
        if rec is not None:
            rec("pre.noised_latents", x)
        emb = self.embeds(image_embeds, negative_image_embeds, guidance)
        for i, t in enumerate(ts):
            eps = self._unet(x, t, emb, guidance, rec)
            x = sch.step(eps, t, x, noise)
            if rec is not None:
                rec("step_latents.%03d" % i, x)
        return self.decode(x, rec)

    @torch.no_grad()
    def inpaint(self, image_uint8_hwc, mask_hw, image_embeds, negative_image_embeds, steps=10, guidance=4.0,
                latents=None, noise=None, scheduler_config=None, rec=None):
        img = image_to_tensor(image_uint8_hwc)
        h, w = img.shape[-2:]
        lat = self.encode(img, rec)
        lh, lw = lat.shape[-2:]
        inv, near, m = prepare_inpaint_mask(torch.as_tensor(mask_hw, dtype=torch.float32), lh, lw)
        masked = lat * m
        if rec is not None:
            rec("pre.mask_inverted", inv)
            rec("pre.image", img)
            rec("pre.mask_latent_nearest", near)
            rec("pre.mask_latent", m)
            rec("pre.image_latents", lat)
            rec("pre.masked_image_latents", masked)
        sch = make_scheduler(scheduler_config or self.scheduler_config)
        ts = sch.set_timesteps(steps)
        if rec is not None:
            rec("timesteps", ts)
        x = latents if latents is not None else noise(lat.shape)
        n0 = x.clone()
        emb = self.embeds(image_embeds, negative_image_embeds, guidance)
        k = 2 if guidance > 1.0 else 1
        extra = torch.cat([masked.repeat(k, 1, 1, 1), m.repeat(k, 1, 1, 1)], dim=1)
        for i, t in enumerate(ts):
            eps = self._unet(x, t, emb, guidance, rec, extra)
            x = sch.step(eps, t, x, noise)
            known = lat
            if i < len(ts) - 1:
                known = sch.add_noise(lat, n0, ts[i + 1])
            x = m * known + (1 - m) * x
            if rec is not None:
                rec("step_latents.%03d" % i, x)
        x = m * lat + (1 - m) * x
        return self.decode(x, rec)


def to_uint8(img):
    """(B,3,H,W) decoder output in [-1,1] -> list of uint8 HWC arrays."""
    x = (img * 0.5 + 0.5).clamp(0, 1)
    return [np.round(a.permute(1, 2, 0).numpy() * 255).astype(np.uint8) for a in x]
