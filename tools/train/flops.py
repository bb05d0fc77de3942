#!/usr/bin/python3
"""Prints parameters and forward FLOPs (2 x multiply-adds of convolutions, linear layers and
attention products) of each reverie-tiny component at batch 1."""
import sys
import os

import torch
import torch.nn as nn

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import configs as C  # noqa: E402
import reverie_models as RM  # noqa: E402

COUNT = [0]


def hook_conv(m, i, o):
    COUNT[0] += 2 * o.numel() * m.in_channels // m.groups * m.kernel_size[0] * m.kernel_size[1]


def hook_linear(m, i, o):
    COUNT[0] += 2 * o.numel() * m.in_features


_attend = RM.attend


def counting_attend(q, k, v, heads, mask=None):
    COUNT[0] += 2 * q.shape[0] * q.shape[1] * k.shape[1] * (q.shape[2] + v.shape[2])
    return _attend(q, k, v, heads, mask)


def measure(model, fn):
    hs = []
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            hs.append(m.register_forward_hook(hook_conv))
        elif isinstance(m, nn.Linear):
            hs.append(m.register_forward_hook(hook_linear))
    COUNT[0] = 0
    RM.attend = counting_attend
    with torch.no_grad():
        fn()
    RM.attend = _attend
    for h in hs:
        h.remove()
    return COUNT[0]


def main():
    s = C.IMAGE_SIDE
    te = RM.CLIPTextModelWithProjection(C.text_encoder(609))
    ve = RM.CLIPVisionModelWithProjection(C.image_encoder())
    pr = RM.PriorTransformer(C.prior())
    un = RM.UNet2DConditionModel(C.unet(4))
    ui = RM.UNet2DConditionModel(C.unet(9))
    mq = RM.VQModel(C.movq())
    up = RM.SRVGGNetCompact(C.upscaler())
    lat = s // mq.scale_factor
    e = C.EMBED_DIM
    rows = [
        ("CLIP text (77 tokens)", te, lambda: te(torch.zeros(1, 77, dtype=torch.long))),
        ("CLIP vision (%dx%d)" % (s, s), ve, lambda: ve(torch.zeros(1, 3, s, s))),
        ("prior (81 tokens)", pr, lambda: pr(torch.zeros(1, e), torch.tensor(1), torch.zeros(1, e), torch.zeros(1, 77, e))),
        ("decoder UNet (%dx%d latent)" % (lat, lat), un, lambda: un(torch.zeros(1, 4, lat, lat), torch.tensor(1), torch.zeros(1, e))),
        ("inpaint UNet", ui, lambda: ui(torch.zeros(1, 9, lat, lat), torch.tensor(1), torch.zeros(1, e))),
        ("MoVQ decode", mq, lambda: mq.decode(torch.zeros(1, 4, lat, lat))),
        ("MoVQ encode", mq, lambda: mq.encode(torch.zeros(1, 3, s, s))),
        ("upscaler (%d -> %d)" % (s, 4 * s), up, lambda: up(torch.zeros(1, 3, s, s))),
        ("upscaler (%d -> %d)" % (4 * s, 16 * s), up, lambda: up(torch.zeros(1, 3, 4 * s, 4 * s))),
    ]
    print("| component | params | MFLOP / forward (batch 1) |")
    print("|---|---|---|")
    for name, m, fn in rows:
        print("| %s | %.2f M | %.1f |" % (name, sum(p.numel() for p in m.parameters()) / 1e6, measure(m, fn) / 1e6))


if __name__ == "__main__":
    main()
