"""The unCLIP networks of Kandinsky 2.2 (CLIP text/vision towers, diffusion prior, decoder UNet,
MoVQ), written from docs/model-spec.md with the diffusers/transformers parameter names, so that their
state dicts load from and save to the published folder layout unchanged; and Real-ESRGAN's
SRVGGNetCompact upscaler with its published parameter names."""
import json
import math
import os

import torch
import torch.nn as nn
import torch.nn.functional as F

import stio


# ----------------------------------------------------------------------------------------------
# shared pieces

def sinusoid(t, dim, flip_sin_to_cos=True, shift=0.0, max_period=10000):
    """Timestep embedding: (B,) -> (B, dim), frequencies exp(-ln(max_period) k / (dim/2 - shift))."""
    half = dim // 2
    exponent = -math.log(max_period) * torch.arange(0, half, dtype=torch.float32, device=t.device)
    exponent = exponent / (half - shift)
    emb = t[:, None].float() * torch.exp(exponent)[None, :]
    emb = torch.cat([torch.sin(emb), torch.cos(emb)], dim=-1)
    if flip_sin_to_cos:
        emb = torch.cat([emb[:, half:], emb[:, :half]], dim=-1)
    if dim % 2 == 1:
        emb = F.pad(emb, (0, 1))
    return emb


def act_fn(name):
    if name in ("silu", "swish"):
        return F.silu
    if name == "gelu":
        return F.gelu
    if name == "quick_gelu":
        return lambda x: x * torch.sigmoid(1.702 * x)
    if name == "relu":
        return F.relu
    raise ValueError("unknown activation %r" % name)


def attend(q, k, v, heads, mask=None):
    """Multi-head scaled dot-product attention on (B, N, heads*d) tensors, softmax in float32.
    mask: additive, broadcastable to (B, heads, Nq, Nk)."""
    b, nq, c = q.shape
    nk = k.shape[1]
    d = c // heads
    q = q.reshape(b, nq, heads, d).transpose(1, 2)
    k = k.reshape(b, nk, heads, -1).transpose(1, 2)
    v = v.reshape(b, nk, heads, -1).transpose(1, 2)
    s = torch.matmul(q, k.transpose(-1, -2)) * (d ** -0.5)
    if mask is not None:
        s = s + mask
    p = torch.softmax(s.float(), dim=-1).to(v.dtype)
    o = torch.matmul(p, v)
    return o.transpose(1, 2).reshape(b, nq, -1)


class TimestepEmbedding(nn.Module):
    def __init__(self, cin, dim, out_dim=None, act="silu"):
        super().__init__()
        self.linear_1 = nn.Linear(cin, dim)
        self.linear_2 = nn.Linear(dim, out_dim or dim)
        self.act = act_fn(act)

    def forward(self, x):
        return self.linear_2(self.act(self.linear_1(x)))


# ----------------------------------------------------------------------------------------------
# CLIP (transformers names)

class CLIPAttention(nn.Module):
    def __init__(self, dim, heads):
        super().__init__()
        self.heads = heads
        self.q_proj = nn.Linear(dim, dim)
        self.k_proj = nn.Linear(dim, dim)
        self.v_proj = nn.Linear(dim, dim)
        self.out_proj = nn.Linear(dim, dim)

    def forward(self, x, mask=None):
        return self.out_proj(attend(self.q_proj(x), self.k_proj(x), self.v_proj(x), self.heads, mask))


class CLIPMLP(nn.Module):
    def __init__(self, dim, inter, act):
        super().__init__()
        self.fc1 = nn.Linear(dim, inter)
        self.fc2 = nn.Linear(inter, dim)
        self.act = act_fn(act)

    def forward(self, x):
        return self.fc2(self.act(self.fc1(x)))


class CLIPEncoderLayer(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        d, eps = cfg["hidden_size"], cfg.get("layer_norm_eps", 1e-5)
        self.self_attn = CLIPAttention(d, cfg["num_attention_heads"])
        self.layer_norm1 = nn.LayerNorm(d, eps=eps)
        self.mlp = CLIPMLP(d, cfg["intermediate_size"], cfg.get("hidden_act", "quick_gelu"))
        self.layer_norm2 = nn.LayerNorm(d, eps=eps)

    def forward(self, x, mask=None):
        x = x + self.self_attn(self.layer_norm1(x), mask)
        return x + self.mlp(self.layer_norm2(x))


class CLIPEncoder(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.layers = nn.ModuleList([CLIPEncoderLayer(cfg) for _ in range(cfg["num_hidden_layers"])])

    def forward(self, x, mask=None):
        for layer in self.layers:
            x = layer(x, mask)
        return x


class CLIPTextEmbeddings(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.token_embedding = nn.Embedding(cfg["vocab_size"], cfg["hidden_size"])
        self.position_embedding = nn.Embedding(cfg["max_position_embeddings"], cfg["hidden_size"])


class CLIPTextTransformer(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.cfg = cfg
        self.embeddings = CLIPTextEmbeddings(cfg)
        self.encoder = CLIPEncoder(cfg)
        self.final_layer_norm = nn.LayerNorm(cfg["hidden_size"], eps=cfg.get("layer_norm_eps", 1e-5))

    def forward(self, ids):
        n = ids.shape[1]
        x = self.embeddings.token_embedding(ids) + self.embeddings.position_embedding.weight[:n][None]
        causal = torch.full((n, n), torch.finfo(x.dtype).min, device=ids.device).triu_(1)
        x = self.encoder(x, causal[None, None])
        x = self.final_layer_norm(x)
        eos = self.cfg.get("eos_token_id", 2)
        if eos == 2:
            idx = ids.argmax(dim=-1)  # legacy pooling: the highest id, i.e. the first <|endoftext|>
        else:
            idx = (ids == eos).int().argmax(dim=-1)
        pooled = x[torch.arange(x.shape[0], device=ids.device), idx]
        return x, pooled


class CLIPTextModelWithProjection(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.config = cfg
        self.text_model = CLIPTextTransformer(cfg)
        self.text_projection = nn.Linear(cfg["hidden_size"], cfg["projection_dim"], bias=False)

    def forward(self, input_ids):
        last, pooled = self.text_model(input_ids)
        return {"text_embeds": self.text_projection(pooled), "last_hidden_state": last}


class CLIPVisionEmbeddings(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        d, p = cfg["hidden_size"], cfg["patch_size"]
        self.class_embedding = nn.Parameter(torch.randn(d))
        self.patch_embedding = nn.Conv2d(cfg.get("num_channels", 3), d, p, stride=p, bias=False)
        n = (cfg["image_size"] // p) ** 2 + 1
        self.position_embedding = nn.Embedding(n, d)

    def forward(self, px):
        x = self.patch_embedding(px).flatten(2).transpose(1, 2)
        cls = self.class_embedding.expand(x.shape[0], 1, -1)
        return torch.cat([cls, x], dim=1) + self.position_embedding.weight[None]


class CLIPVisionTransformer(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        eps = cfg.get("layer_norm_eps", 1e-5)
        self.embeddings = CLIPVisionEmbeddings(cfg)
        self.pre_layrnorm = nn.LayerNorm(cfg["hidden_size"], eps=eps)
        self.encoder = CLIPEncoder(cfg)
        self.post_layernorm = nn.LayerNorm(cfg["hidden_size"], eps=eps)

    def forward(self, px):
        x = self.encoder(self.pre_layrnorm(self.embeddings(px)))
        return x, self.post_layernorm(x[:, 0])


class CLIPVisionModelWithProjection(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.config = cfg
        self.vision_model = CLIPVisionTransformer(cfg)
        self.visual_projection = nn.Linear(cfg["hidden_size"], cfg["projection_dim"], bias=False)

    def forward(self, pixel_values):
        last, pooled = self.vision_model(pixel_values)
        return {"image_embeds": self.visual_projection(pooled), "last_hidden_state": last}


# ----------------------------------------------------------------------------------------------
# PriorTransformer (diffusers names)

class Attention(nn.Module):
    """diffusers-style attention: to_q/to_k/to_v/to_out.0, optional added K/V projections and
    group or spatial norm; used by the prior, the UNet and MoVQ."""

    def __init__(self, query_dim, heads, dim_head, bias=True, cross_dim=None, added_kv_dim=None,
                 norm_groups=None, norm_eps=1e-5, spatial_norm_dim=None):
        super().__init__()
        inner = heads * dim_head
        self.heads = heads
        cross_dim = cross_dim or query_dim
        self.to_q = nn.Linear(query_dim, inner, bias=bias)
        self.to_k = nn.Linear(cross_dim, inner, bias=bias)
        self.to_v = nn.Linear(cross_dim, inner, bias=bias)
        if added_kv_dim is not None:
            self.add_k_proj = nn.Linear(added_kv_dim, inner)
            self.add_v_proj = nn.Linear(added_kv_dim, inner)
        else:
            self.add_k_proj = None
        self.to_out = nn.ModuleList([nn.Linear(inner, query_dim, bias=True)])
        self.group_norm = nn.GroupNorm(norm_groups, query_dim, eps=norm_eps) if norm_groups else None
        self.spatial_norm = SpatialNorm(query_dim, spatial_norm_dim) if spatial_norm_dim else None

    def forward_tokens(self, x, mask=None):
        return self.to_out[0](attend(self.to_q(x), self.to_k(x), self.to_v(x), self.heads, mask))

    def forward_image(self, x, context=None, zq=None):
        """(B, C, H, W) image attention with residual; added-KV context first when present."""
        r = x
        if self.spatial_norm is not None:
            x = self.spatial_norm(x, zq)
        b, c, h, w = x.shape
        if self.group_norm is not None:
            x = self.group_norm(x)
        t = x.reshape(b, c, h * w).transpose(1, 2)  # (B, HW, C)
        q = self.to_q(t)
        k = self.to_k(t)
        v = self.to_v(t)
        if self.add_k_proj is not None:
            k = torch.cat([self.add_k_proj(context), k], dim=1)
            v = torch.cat([self.add_v_proj(context), v], dim=1)
        o = self.to_out[0](attend(q, k, v, self.heads))
        return o.transpose(1, 2).reshape(b, c, h, w) + r


class GELUProj(nn.Module):
    def __init__(self, din, dout):
        super().__init__()
        self.proj = nn.Linear(din, dout)

    def forward(self, x):
        return F.gelu(self.proj(x))


class FeedForward(nn.Module):
    def __init__(self, dim, mult=4):
        super().__init__()
        self.net = nn.ModuleList([GELUProj(dim, dim * mult), nn.Dropout(0.0), nn.Linear(dim * mult, dim)])

    def forward(self, x):
        for m in self.net:
            x = m(x)
        return x


class BasicTransformerBlock(nn.Module):
    def __init__(self, dim, heads, dim_head):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn1 = Attention(dim, heads, dim_head, bias=True)
        self.norm3 = nn.LayerNorm(dim)
        self.ff = FeedForward(dim)

    def forward(self, x, mask):
        x = x + self.attn1.forward_tokens(self.norm1(x), mask)
        return x + self.ff(self.norm3(x))


class PriorTransformer(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.config = cfg
        heads, hd = cfg["num_attention_heads"], cfg["attention_head_dim"]
        inner = heads * hd
        e = cfg["embedding_dim"]
        self.heads = heads
        self.inner = inner
        self.additional = cfg.get("additional_embeddings", 4)
        n = cfg["num_embeddings"] + self.additional
        tdim = cfg.get("time_embed_dim") or inner
        self.time_embedding = TimestepEmbedding(inner, tdim, out_dim=inner, act=cfg.get("time_embed_act_fn", "silu"))
        self.proj_in = nn.Linear(e, inner)
        self.embedding_proj = nn.Linear(cfg.get("embedding_proj_dim") or e, inner)
        self.encoder_hidden_states_proj = nn.Linear(e, inner)
        self.positional_embedding = nn.Parameter(torch.zeros(1, n, inner))
        self.prd_embedding = nn.Parameter(torch.zeros(1, 1, inner))
        self.transformer_blocks = nn.ModuleList([BasicTransformerBlock(inner, heads, hd) for _ in range(cfg["num_layers"])])
        self.norm_out = nn.LayerNorm(inner)
        ce = cfg.get("clip_embed_dim") or e
        self.proj_to_clip_embeddings = nn.Linear(inner, ce)
        self.register_buffer("causal_attention_mask", torch.full((n, n), -10000.0).triu_(1), persistent=False)
        self.clip_mean = nn.Parameter(torch.zeros(1, ce))
        self.clip_std = nn.Parameter(torch.zeros(1, ce))

    def forward(self, hidden_states, timestep, proj_embedding, encoder_hidden_states, attention_mask=None):
        b = hidden_states.shape[0]
        t = torch.as_tensor(timestep, device=hidden_states.device)
        if t.dim() == 0:
            t = t[None]
        t = t * torch.ones(b, dtype=t.dtype, device=t.device)
        temb = self.time_embedding(sinusoid(t, self.inner, True, 0).to(hidden_states.dtype))
        proj = self.embedding_proj(proj_embedding)
        ehs = self.encoder_hidden_states_proj(encoder_hidden_states)
        h = self.proj_in(hidden_states)
        x = torch.cat([ehs, proj[:, None], temb[:, None], h[:, None], self.prd_embedding.expand(b, -1, -1)], dim=1)
        x = x + self.positional_embedding
        mask = self.causal_attention_mask[None]
        if attention_mask is not None:
            m = (1 - attention_mask.to(x.dtype)) * -10000.0
            m = F.pad(m, (0, self.additional), value=0.0)
            mask = m[:, None, :] + self.causal_attention_mask[None]
        mask = mask[:, None]  # same for all heads
        for blk in self.transformer_blocks:
            x = blk(x, mask)
        x = self.norm_out(x)[:, -1]
        return self.proj_to_clip_embeddings(x)

    def post_process_latents(self, x):
        return x * self.clip_std + self.clip_mean


# ----------------------------------------------------------------------------------------------
# UNet2DConditionModel, Kandinsky 2.2 decoder configuration (diffusers names)

class ResnetBlock2D(nn.Module):
    def __init__(self, cin, cout, temb=None, groups=32, eps=1e-5, scale_shift=True, down=False, up=False):
        super().__init__()
        self.norm1 = nn.GroupNorm(groups, cin, eps=eps)
        self.conv1 = nn.Conv2d(cin, cout, 3, padding=1)
        self.scale_shift = scale_shift
        if temb is not None:
            self.time_emb_proj = nn.Linear(temb, 2 * cout if scale_shift else cout)
        else:
            self.time_emb_proj = None
        self.norm2 = nn.GroupNorm(groups, cout, eps=eps)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1)
        self.conv_shortcut = nn.Conv2d(cin, cout, 1) if cin != cout else None
        self.down, self.up = down, up

    def forward(self, x, emb=None):
        h = F.silu(self.norm1(x))
        if self.up:
            x = F.interpolate(x, scale_factor=2.0, mode="nearest")
            h = F.interpolate(h, scale_factor=2.0, mode="nearest")
        elif self.down:
            x = F.avg_pool2d(x, 2, 2)
            h = F.avg_pool2d(h, 2, 2)
        h = self.conv1(h)
        if self.time_emb_proj is not None:
            t = self.time_emb_proj(F.silu(emb))[:, :, None, None]
            if self.scale_shift:
                s, b = t.chunk(2, dim=1)
                h = self.norm2(h) * (1 + s) + b
            else:
                h = self.norm2(h + t)
        else:
            h = self.norm2(h)
        h = self.conv2(F.silu(h))
        if self.conv_shortcut is not None:
            x = self.conv_shortcut(x)
        return x + h


class UNetBlock(nn.Module):
    """One down or up block: resnets [+ added-KV attentions] [+ resnet resampler]."""

    def __init__(self, resnets, attentions, sampler, kind):
        super().__init__()
        self.resnets = nn.ModuleList(resnets)
        if attentions:
            self.attentions = nn.ModuleList(attentions)
        else:
            self.attentions = None
        if sampler is not None:
            setattr(self, "downsamplers" if kind == "down" else "upsamplers", nn.ModuleList([sampler]))
        self.kind = kind

    def sampler(self):
        m = getattr(self, "downsamplers" if self.kind == "down" else "upsamplers", None)
        return m[0] if m is not None else None


class UNetMid(nn.Module):
    def __init__(self, resnets, attentions):
        super().__init__()
        self.resnets = nn.ModuleList(resnets)
        self.attentions = nn.ModuleList(attentions)


class ImageProjection(nn.Module):
    def __init__(self, din, cross, n=32):
        super().__init__()
        self.n = n
        self.image_embeds = nn.Linear(din, n * cross)
        self.norm = nn.LayerNorm(cross)

    def forward(self, x):
        return self.norm(self.image_embeds(x).reshape(x.shape[0], self.n, -1))


class ImageTimeEmbedding(nn.Module):
    def __init__(self, din, tdim):
        super().__init__()
        self.image_proj = nn.Linear(din, tdim)
        self.image_norm = nn.LayerNorm(tdim)

    def forward(self, x):
        return self.image_norm(self.image_proj(x))


class UNet2DConditionModel(nn.Module):
    SUPPORTED_DOWN = ("ResnetDownsampleBlock2D", "SimpleCrossAttnDownBlock2D")
    SUPPORTED_UP = ("ResnetUpsampleBlock2D", "SimpleCrossAttnUpBlock2D")

    def __init__(self, cfg):
        super().__init__()
        self.config = cfg
        ch = list(cfg["block_out_channels"])
        lpb = cfg["layers_per_block"]
        groups = cfg.get("norm_num_groups", 32)
        eps = cfg.get("norm_eps", 1e-5)
        cross = cfg["cross_attention_dim"]
        ahd = cfg["attention_head_dim"]
        ahd = list(ahd) if isinstance(ahd, (list, tuple)) else [ahd] * len(ch)
        assert cfg.get("addition_embed_type") == "image" and cfg.get("encoder_hid_dim_type") == "image_proj"
        assert cfg.get("resnet_time_scale_shift") == "scale_shift"
        assert cfg.get("mid_block_type") == "UNetMidBlock2DSimpleCrossAttn"
        tdim = cfg.get("time_embedding_dim") or ch[0] * 4
        self.c0 = ch[0]
        self.flip = cfg.get("flip_sin_to_cos", True)
        self.shift = cfg.get("freq_shift", 0)
        self.conv_in = nn.Conv2d(cfg["in_channels"], ch[0], 3, padding=1)
        self.time_embedding = TimestepEmbedding(ch[0], tdim, act=cfg.get("act_fn", "silu"))
        ehd = cfg["encoder_hid_dim"]
        self.encoder_hid_proj = ImageProjection(ehd, cross)
        self.add_embedding = ImageTimeEmbedding(ehd, tdim)

        def res(cin, cout, **kw):
            return ResnetBlock2D(cin, cout, tdim, groups, eps, True, **kw)

        def attn(c, hd):
            return Attention(c, c // hd, hd, bias=True, cross_dim=c, added_kv_dim=cross, norm_groups=groups, norm_eps=1e-5)

        self.down_blocks = nn.ModuleList()
        cout = ch[0]
        for i, bt in enumerate(cfg["down_block_types"]):
            assert bt in self.SUPPORTED_DOWN, bt
            cin, cout = cout, ch[i]
            final = i == len(ch) - 1
            rs = [res(cin if j == 0 else cout, cout) for j in range(lpb)]
            ats = [attn(cout, ahd[i]) for _ in range(lpb)] if bt == "SimpleCrossAttnDownBlock2D" else None
            self.down_blocks.append(UNetBlock(rs, ats, None if final else res(cout, cout, down=True), "down"))
        self.mid_block = UNetMid([res(ch[-1], ch[-1]), res(ch[-1], ch[-1])], [attn(ch[-1], ahd[-1])])
        rch = list(reversed(ch))
        rahd = list(reversed(ahd))
        self.up_blocks = nn.ModuleList()
        cout = rch[0]
        for i, bt in enumerate(cfg["up_block_types"]):
            assert bt in self.SUPPORTED_UP, bt
            prev, cout = cout, rch[i]
            cin = rch[min(i + 1, len(ch) - 1)]
            final = i == len(ch) - 1
            n = lpb + 1
            rs = []
            for j in range(n):
                skip = cin if j == n - 1 else cout
                rs.append(res((prev if j == 0 else cout) + skip, cout))
            ats = [attn(cout, rahd[i]) for _ in range(n)] if bt == "SimpleCrossAttnUpBlock2D" else None
            self.up_blocks.append(UNetBlock(rs, ats, None if final else res(cout, cout, up=True), "up"))
        self.conv_norm_out = nn.GroupNorm(groups, ch[0], eps=eps)
        self.conv_out = nn.Conv2d(ch[0], cfg["out_channels"], 3, padding=1)

    def forward(self, sample, timestep, image_embeds):
        t = torch.as_tensor(timestep, device=sample.device)
        if t.dim() == 0:
            t = t[None]
        t = t.expand(sample.shape[0])
        emb = self.time_embedding(sinusoid(t, self.c0, self.flip, self.shift).to(sample.dtype))
        emb = emb + self.add_embedding(image_embeds)
        ctx = self.encoder_hid_proj(image_embeds)  # (B, 32, cross)
        h = self.conv_in(sample)
        skips = [h]
        for blk in self.down_blocks:
            for j, r in enumerate(blk.resnets):
                h = r(h, emb)
                if blk.attentions is not None:
                    h = blk.attentions[j].forward_image(h, ctx)
                skips.append(h)
            s = blk.sampler()
            if s is not None:
                h = s(h, emb)
                skips.append(h)
        h = self.mid_block.resnets[0](h, emb)
        h = self.mid_block.attentions[0].forward_image(h, ctx)
        h = self.mid_block.resnets[1](h, emb)
        for blk in self.up_blocks:
            for j, r in enumerate(blk.resnets):
                h = r(torch.cat([h, skips.pop()], dim=1), emb)
                if blk.attentions is not None:
                    h = blk.attentions[j].forward_image(h, ctx)
            s = blk.sampler()
            if s is not None:
                h = s(h, emb)
        return self.conv_out(F.silu(self.conv_norm_out(h)))


# ----------------------------------------------------------------------------------------------
# VQModel / MoVQ (diffusers names)

class SpatialNorm(nn.Module):
    def __init__(self, f_ch, zq_ch):
        super().__init__()
        self.norm_layer = nn.GroupNorm(32, f_ch, eps=1e-6)
        self.conv_y = nn.Conv2d(zq_ch, f_ch, 1)
        self.conv_b = nn.Conv2d(zq_ch, f_ch, 1)

    def forward(self, f, zq):
        zq = F.interpolate(zq, size=f.shape[-2:], mode="nearest")
        return self.norm_layer(f) * self.conv_y(zq) + self.conv_b(zq)


class ResnetBlockCondNorm2D(nn.Module):
    def __init__(self, cin, cout, zq_ch):
        super().__init__()
        self.norm1 = SpatialNorm(cin, zq_ch)
        self.conv1 = nn.Conv2d(cin, cout, 3, padding=1)
        self.norm2 = SpatialNorm(cout, zq_ch)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1)
        self.conv_shortcut = nn.Conv2d(cin, cout, 1) if cin != cout else None

    def forward(self, x, zq):
        h = self.conv1(F.silu(self.norm1(x, zq)))
        h = self.conv2(F.silu(self.norm2(h, zq)))
        if self.conv_shortcut is not None:
            x = self.conv_shortcut(x)
        return x + h


class Downsample2D(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.conv = nn.Conv2d(c, c, 3, stride=2, padding=0)

    def forward(self, x):
        return self.conv(F.pad(x, (0, 1, 0, 1)))


class Upsample2D(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.conv = nn.Conv2d(c, c, 3, padding=1)

    def forward(self, x):
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


class CodecBlock(nn.Module):
    def __init__(self, resnets, attentions=None, down=None, up=None):
        super().__init__()
        self.resnets = nn.ModuleList(resnets)
        self.attentions = nn.ModuleList(attentions) if attentions else None
        if down is not None:
            self.downsamplers = nn.ModuleList([down])
        if up is not None:
            self.upsamplers = nn.ModuleList([up])


class Encoder(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        ch = list(cfg["block_out_channels"])
        g = cfg.get("norm_num_groups", 32)
        lpb = cfg["layers_per_block"]
        self.conv_in = nn.Conv2d(cfg["in_channels"], ch[0], 3, padding=1)
        self.down_blocks = nn.ModuleList()
        cout = ch[0]
        for i, bt in enumerate(cfg["down_block_types"]):
            cin, cout = cout, ch[i]
            final = i == len(ch) - 1
            rs = [ResnetBlock2D(cin if j == 0 else cout, cout, None, g, 1e-6, False) for j in range(lpb)]
            ats = [Attention(cout, 1, cout, norm_groups=g, norm_eps=1e-6) for _ in range(lpb)] \
                if bt == "AttnDownEncoderBlock2D" else None
            self.down_blocks.append(CodecBlock(rs, ats, down=None if final else Downsample2D(cout)))
        c = ch[-1]
        mid_attn = cfg.get("mid_block_add_attention", True)
        self.mid_block = CodecBlock([ResnetBlock2D(c, c, None, g, 1e-6, False), ResnetBlock2D(c, c, None, g, 1e-6, False)],
                                    [Attention(c, 1, c, norm_groups=g, norm_eps=1e-6)] if mid_attn else None)
        self.conv_norm_out = nn.GroupNorm(g, c, eps=1e-6)
        self.conv_out = nn.Conv2d(c, cfg["latent_channels"], 3, padding=1)

    def forward(self, x):
        h = self.conv_in(x)
        for blk in self.down_blocks:
            for j, r in enumerate(blk.resnets):
                h = r(h)
                if blk.attentions is not None:
                    h = blk.attentions[j].forward_image(h)
            if hasattr(blk, "downsamplers"):
                h = blk.downsamplers[0](h)
        h = self.mid_block.resnets[0](h)
        if self.mid_block.attentions is not None:
            h = self.mid_block.attentions[0].forward_image(h)
        h = self.mid_block.resnets[1](h)
        return self.conv_out(F.silu(self.conv_norm_out(h)))


class Decoder(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        ch = list(cfg["block_out_channels"])
        lpb = cfg["layers_per_block"]
        z = cfg["latent_channels"]
        self.conv_in = nn.Conv2d(z, ch[-1], 3, padding=1)
        c = ch[-1]
        mid_attn = cfg.get("mid_block_add_attention", True)
        self.mid_block = CodecBlock([ResnetBlockCondNorm2D(c, c, z), ResnetBlockCondNorm2D(c, c, z)],
                                    [Attention(c, 1, c, spatial_norm_dim=z)] if mid_attn else None)
        rch = list(reversed(ch))
        self.up_blocks = nn.ModuleList()
        cout = rch[0]
        for i, bt in enumerate(cfg["up_block_types"]):
            prev, cout = cout, rch[i]
            final = i == len(ch) - 1
            rs = [ResnetBlockCondNorm2D(prev if j == 0 else cout, cout, z) for j in range(lpb + 1)]
            ats = [Attention(cout, 1, cout, spatial_norm_dim=z) for _ in range(lpb + 1)] \
                if bt == "AttnUpDecoderBlock2D" else None
            self.up_blocks.append(CodecBlock(rs, ats, up=None if final else Upsample2D(cout)))
        self.conv_norm_out = SpatialNorm(ch[0], z)
        self.conv_out = nn.Conv2d(ch[0], cfg["out_channels"], 3, padding=1)

    def forward(self, h, zq):
        h = self.conv_in(h)
        h = self.mid_block.resnets[0](h, zq)
        if self.mid_block.attentions is not None:
            h = self.mid_block.attentions[0].forward_image(h, zq=zq)
        h = self.mid_block.resnets[1](h, zq)
        for blk in self.up_blocks:
            for j, r in enumerate(blk.resnets):
                h = r(h, zq)
                if blk.attentions is not None:
                    h = blk.attentions[j].forward_image(h, zq=zq)
            if hasattr(blk, "upsamplers"):
                h = blk.upsamplers[0](h)
        return self.conv_out(F.silu(self.conv_norm_out(h, zq)))


class VectorQuantizer(nn.Module):
    def __init__(self, n, dim):
        super().__init__()
        self.embedding = nn.Embedding(n, dim)

    def forward(self, z):
        """Nearest codebook vectors of (B, C, H, W) latents and their (B, H, W) indices."""
        b, c, h, w = z.shape
        flat = z.permute(0, 2, 3, 1).reshape(-1, c)
        idx = torch.argmin(torch.cdist(flat, self.embedding.weight), dim=1)
        q = self.embedding(idx).reshape(b, h, w, c).permute(0, 3, 1, 2)
        return q, idx.reshape(b, h, w)


class VQModel(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.config = cfg
        assert cfg.get("norm_type", "spatial") == "spatial"
        self.encoder = Encoder(cfg)
        z, e = cfg["latent_channels"], cfg.get("vq_embed_dim") or cfg["latent_channels"]
        self.quant_conv = nn.Conv2d(z, e, 1)
        self.quantize = VectorQuantizer(cfg["num_vq_embeddings"], e)
        self.post_quant_conv = nn.Conv2d(e, z, 1)
        self.decoder = Decoder(cfg)

    @property
    def scale_factor(self):
        return 2 ** (len(self.config["block_out_channels"]) - 1)

    def encode(self, x):
        return self.quant_conv(self.encoder(x))

    def decode(self, z, force_not_quantize=True):
        q = z if force_not_quantize else self.quantize(z)[0]
        return self.decoder(self.post_quant_conv(q), q)


# ----------------------------------------------------------------------------------------------
# upscaler (Real-ESRGAN's SRVGGNetCompact names)

class SRVGGNetCompact(nn.Module):
    """Real-ESRGAN's compact super-resolution network: `body` is conv 3x3 (num_in_ch -> num_feat),
    activation, num_conv x (conv 3x3 num_feat -> num_feat, activation), conv 3x3 (num_feat ->
    num_out_ch * upscale^2); then a pixel shuffle by `upscale`, plus the input upsampled by
    nearest neighbour. Activations: "prelu" (one slope per channel, body.<odd>.weight),
    "leakyrelu" (slope 0.1), "relu". RGB in [0, 1], NCHW, output not clamped."""

    def __init__(self, cfg):
        super().__init__()
        self.config = cfg
        cin, cout = cfg.get("num_in_ch", 3), cfg.get("num_out_ch", 3)
        nf, n, act = cfg.get("num_feat", 64), cfg.get("num_conv", 16), cfg.get("act_type", "prelu")
        self.upscale = cfg.get("upscale", 4)

        def activation():
            if act == "prelu":
                return nn.PReLU(num_parameters=nf)
            if act == "leakyrelu":
                return nn.LeakyReLU(negative_slope=0.1)
            if act == "relu":
                return nn.ReLU()
            raise ValueError("unknown act_type %r" % act)

        body = [nn.Conv2d(cin, nf, 3, 1, 1), activation()]
        for _ in range(n):
            body += [nn.Conv2d(nf, nf, 3, 1, 1), activation()]
        body.append(nn.Conv2d(nf, cout * self.upscale ** 2, 3, 1, 1))
        self.body = nn.ModuleList(body)
        self.upsampler = nn.PixelShuffle(self.upscale)

    def forward(self, x):
        h = x
        for m in self.body:
            h = m(h)
        return self.upsampler(h) + F.interpolate(x, scale_factor=self.upscale, mode="nearest")


class _DenseBlock(nn.Module):
    """RRDBNet's residual dense block: five 3x3 convs, each seeing the block's input and every
    earlier conv's output (concatenated along channels in that order), LeakyReLU 0.2 after the
    first four; out = 0.2 * conv5 + input."""

    def __init__(self, nf, grow):
        super().__init__()
        for i in range(1, 5):
            setattr(self, "conv%d" % i, nn.Conv2d(nf + (i - 1) * grow, grow, 3, 1, 1))
        self.conv5 = nn.Conv2d(nf + 4 * grow, nf, 3, 1, 1)

    def forward(self, x):
        seen = [x]
        for i in range(1, 5):
            seen.append(F.leaky_relu(getattr(self, "conv%d" % i)(torch.cat(seen, 1)), 0.2))
        return 0.2 * self.conv5(torch.cat(seen, 1)) + x


class _RRDB(nn.Module):
    """Three dense blocks in a row, out = 0.2 * their result + input."""

    def __init__(self, nf, grow):
        super().__init__()
        self.rdb1, self.rdb2, self.rdb3 = _DenseBlock(nf, grow), _DenseBlock(nf, grow), _DenseBlock(nf, grow)

    def forward(self, x):
        return 0.2 * self.rdb3(self.rdb2(self.rdb1(x))) + x


class RRDBNet(nn.Module):
    """BasicSR's RRDBNet (ESRGAN, RealESRGAN_x4plus / x2plus) under its state-dict names: at
    scale 2 or 1 the picture is first pixel-unshuffled by 2 or 4 (so conv_first takes 4 or 16
    times num_in_ch channels); conv_first, num_block RRDBs, conv_body added to conv_first's
    output; then two rounds of nearest x2 + conv + LeakyReLU 0.2 (conv_up1, conv_up2), conv_hr +
    LeakyReLU 0.2 and conv_last. Every scale other than 1 and 2 enlarges by 4."""

    def __init__(self, cfg):
        super().__init__()
        self.config = cfg
        self.scale = cfg.get("scale", 4)
        self.unshuffle = {2: 2, 1: 4}.get(self.scale, 1)
        cin, cout = cfg.get("num_in_ch", 3), cfg.get("num_out_ch", 3)
        nf, grow = cfg.get("num_feat", 64), cfg.get("num_grow_ch", 32)
        self.conv_first = nn.Conv2d(cin * self.unshuffle ** 2, nf, 3, 1, 1)
        self.body = nn.Sequential(*[_RRDB(nf, grow) for _ in range(cfg.get("num_block", 23))])
        self.conv_body = nn.Conv2d(nf, nf, 3, 1, 1)
        self.conv_up1 = nn.Conv2d(nf, nf, 3, 1, 1)
        self.conv_up2 = nn.Conv2d(nf, nf, 3, 1, 1)
        self.conv_hr = nn.Conv2d(nf, nf, 3, 1, 1)
        self.conv_last = nn.Conv2d(nf, cout, 3, 1, 1)

    def forward(self, x):
        if self.unshuffle > 1:
            x = F.pixel_unshuffle(x, self.unshuffle)
        h = self.conv_first(x)
        h = h + self.conv_body(self.body(h))
        for conv in (self.conv_up1, self.conv_up2):
            h = F.leaky_relu(conv(F.interpolate(h, scale_factor=2, mode="nearest")), 0.2)
        return self.conv_last(F.leaky_relu(self.conv_hr(h), 0.2))


# ----------------------------------------------------------------------------------------------
# folders

def read_json(path):
    with open(path) as f:
        return json.load(f)


def build(cfg):
    name = cfg.get("_class_name") or cfg.get("architecture") or (cfg.get("architectures") or [None])[0]
    cls = {"CLIPTextModelWithProjection": CLIPTextModelWithProjection,
           "CLIPVisionModelWithProjection": CLIPVisionModelWithProjection,
           "PriorTransformer": PriorTransformer, "UNet2DConditionModel": UNet2DConditionModel,
           "VQModel": VQModel, "SRVGGNetCompact": SRVGGNetCompact, "RRDBNet": RRDBNet}[name]
    return cls(cfg)


def weights_file(folder):
    for n in ("model.safetensors", "diffusion_pytorch_model.safetensors"):
        p = os.path.join(folder, n)
        if os.path.exists(p):
            return p
    raise FileNotFoundError("no safetensors weights in " + folder)


def load_folder(folder):
    """Build a component from folder/config.json and load its safetensors weights strictly."""
    m = build(read_json(os.path.join(folder, "config.json")))
    sd = {k: v.float() for k, v in stio.load(weights_file(folder)).items() if not k.endswith("position_ids")}
    m.load_state_dict(sd, strict=True)
    return m.eval()


def state_dict_for_export(model, dtype=torch.float32):
    return {k: v.detach().to(dtype).contiguous() for k, v in model.state_dict().items()}
