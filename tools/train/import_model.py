#!/usr/bin/python3
"""Turns an exported model folder (export.py's layout) back into a run folder, so that training
can go on from shipped weights when the run that made them is gone:

    import_model.py [--model data/models/reverie-tiny] --run DIR

writes DIR/tokenizer/, DIR/clip_text/final.pt, DIR/clip_vision/final.pt, DIR/prior/final.pt,
DIR/movq/final.pt, DIR/unet/final.pt and, where the folder has an upscaler, DIR/upscaler/final.pt.
A stage then goes on with --init, for example

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

REPO = os.path.abspath(os.path.join(HERE, "..", ".."))


def weights(folder, model):
    """The float32 state dict of the component in `folder` (config.json and safetensors, loaded by
    reverie_models.load_folder), checked against `model`, the training config's network."""
    try:
        st = RM.load_folder(folder).state_dict()
        model.load_state_dict(st)
    except (OSError, KeyError, RuntimeError) as e:
        sys.exit("%s: not a component of this model's training configs (is --model an exported model "
                 "folder?): %s" % (folder, str(e).splitlines()[0]))
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
    with open(os.path.join(tok_src, "vocab.json"), encoding="utf-8") as f:
        n_vocab = len(json.load(f))

    # every component is read and checked before anything in the run folder is replaced
    dec = weights(os.path.join(a.model, "decoder", "unet"), RM.UNet2DConditionModel(C.unet(4)))
    inp = weights(os.path.join(a.model, "decoder-inpaint", "unet"), RM.UNet2DConditionModel(C.unet(9)))
    unet = dict(dec)
    unet["conv_in.weight"] = torch.cat([dec["conv_in.weight"], inp["conv_in.weight"][:, 4:]], dim=1)
    stages = {
        "clip_text": {"text": weights(os.path.join(prior_dir, "text_encoder"),
                                      RM.CLIPTextModelWithProjection(C.text_encoder(n_vocab)))},
        "clip_vision": {"vision": weights(os.path.join(prior_dir, "image_encoder"),
                                          RM.CLIPVisionModelWithProjection(C.image_encoder()))},
        "prior": {"prior": weights(os.path.join(prior_dir, "prior"), RM.PriorTransformer(C.prior()))},
        # the latents of the export are already normalised: marked so train.py leaves them alone
        "movq": {"movq": weights(os.path.join(a.model, "decoder", "movq"), RM.VQModel(C.movq())), "normalized": True},
        "unet": {"unet": unet},
    }
    up = os.path.join(a.model, "upscaler")
    if os.path.isdir(up):
        st = RM.load_folder(up).state_dict()
        stages["upscaler"] = {"upscaler": weights(up, RM.SRVGGNetCompact(C.upscaler_of(st)))}
    tok_dst = os.path.join(a.run, "tokenizer")
    if os.path.exists(tok_dst):
        shutil.rmtree(tok_dst)
    shutil.copytree(tok_src, tok_dst)
    for stage, obj in stages.items():
        save(a.run, stage, obj)
    print("imported %s into %s" % (a.model, a.run))


if __name__ == "__main__":
    main()
