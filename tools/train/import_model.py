#!/usr/bin/python3
"""Turns an exported model folder (export.py's layout) back into a run folder, so that training
can go on from shipped weights when the run that made them is gone:

    import_model.py [--model data/models/reverie-tiny] --run DIR

writes DIR/tokenizer/, DIR/clip_text/final.pt, DIR/clip_vision/final.pt, DIR/prior/final.pt,
DIR/movq/final.pt and DIR/unet/final.pt. A stage then goes on with --init, for example

    train.py unet --run DIR --init DIR/unet/final.pt --prior-dev 0.6 --minutes 60

The decoder UNet is exported in float32 and the inpaint UNet in float16; the imported UNet takes
every weight from the decoder and only conv_in's mask and masked-latent input channels from the
inpaint UNet, so all but those channels are exact."""
import argparse
import json
import os
import shutil
import sys

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import configs as C  # noqa: E402
import reverie_models as RM  # noqa: E402
import stio  # noqa: E402

REPO = os.path.abspath(os.path.join(HERE, "..", ".."))


def weights(folder, fname, model):
    """The float32 state dict of `model` from folder/fname, checked against the model's names and
    shapes."""
    path = os.path.join(folder, fname)
    if not os.path.isfile(path):
        sys.exit("%s: no such file (is --model an exported model folder?)" % path)
    st = {k: v.float() for k, v in stio.load(path).items()}
    want = model.state_dict()
    missing = sorted(set(want) - set(st))
    extra = sorted(set(st) - set(want))
    if missing or extra:
        sys.exit("%s: does not match this stage's model (missing %s; unexpected %s)"
                 % (path, ", ".join(missing[:5]) or "none", ", ".join(extra[:5]) or "none"))
    for k, v in want.items():
        if tuple(st[k].shape) != tuple(v.shape):
            sys.exit("%s: %s has shape %s, the model needs %s" % (path, k, list(st[k].shape), list(v.shape)))
    return st


def save(run, stage, obj):
    d = os.path.join(run, stage)
    os.makedirs(d, exist_ok=True)
    tmp = os.path.join(d, "final.pt.tmp")
    torch.save(obj, tmp)
    os.replace(tmp, os.path.join(d, "final.pt"))


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default=os.path.join(REPO, "data", "models", "reverie-tiny"))
    p.add_argument("--run", required=True, help="run folder to write (existing final.pt files are replaced)")
    a = p.parse_args()
    prior_dir = os.path.join(a.model, "prior")
    tok_src = os.path.join(prior_dir, "tokenizer")
    if not os.path.isdir(tok_src):
        sys.exit("%s: no tokenizer folder (is --model an exported model folder?)" % tok_src)
    tok_dst = os.path.join(a.run, "tokenizer")
    if os.path.exists(tok_dst):
        shutil.rmtree(tok_dst)
    shutil.copytree(tok_src, tok_dst)
    with open(os.path.join(tok_src, "vocab.json"), encoding="utf-8") as f:
        n_vocab = len(json.load(f))

    te = RM.CLIPTextModelWithProjection(C.text_encoder(n_vocab))
    save(a.run, "clip_text", {"text": weights(os.path.join(prior_dir, "text_encoder"), "model.safetensors", te)})
    ve = RM.CLIPVisionModelWithProjection(C.image_encoder())
    save(a.run, "clip_vision", {"vision": weights(os.path.join(prior_dir, "image_encoder"), "model.safetensors", ve)})
    pr = RM.PriorTransformer(C.prior())
    save(a.run, "prior", {"prior": weights(os.path.join(prior_dir, "prior"), "diffusion_pytorch_model.safetensors", pr)})
    # the latents of the export are already normalised: mark them so train.py leaves them alone
    mq = RM.VQModel(C.movq())
    save(a.run, "movq", {"movq": weights(os.path.join(a.model, "decoder", "movq"),
                                         "diffusion_pytorch_model.safetensors", mq), "normalized": True})

    dec = weights(os.path.join(a.model, "decoder", "unet"), "diffusion_pytorch_model.safetensors",
                  RM.UNet2DConditionModel(C.unet(4)))
    inp = weights(os.path.join(a.model, "decoder-inpaint", "unet"), "diffusion_pytorch_model.safetensors",
                  RM.UNet2DConditionModel(C.unet(9)))
    st = dict(dec)
    st["conv_in.weight"] = torch.cat([dec["conv_in.weight"], inp["conv_in.weight"][:, 4:]], dim=1)
    RM.UNet2DConditionModel(C.unet(9)).load_state_dict(st)
    save(a.run, "unet", {"unet": st})
    print("imported %s into %s" % (a.model, a.run))


if __name__ == "__main__":
    main()
