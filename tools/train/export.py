#!/usr/bin/python3
"""Exports a training run to the diffusers folder layout (data/models/reverie-tiny/{prior,decoder,
decoder-inpaint}, plus reverie.json with the recommended defaults), the upscaler where the run has
one (upscaler/: Real-ESRGAN's SRVGGNetCompact config.json and model.safetensors), and writes a
reference case folder in the shared golden format (data/models/reverie-tiny-reference/) computed
from the exported files by reverie_models / reverie_pipelines in float32.

    export.py --run DIR [--out data/models/reverie-tiny] [--reference data/models/reverie-tiny-reference]
    export.py --run DIR --only upscaler [--out data/models/reverie-tiny]
"""
import argparse
import hashlib
import json
import os
import shutil
import sys

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import configs as C  # noqa: E402
import reverie_models as RM  # noqa: E402
import reverie_pipelines as RP  # noqa: E402
import scenes as S  # noqa: E402
import stio  # noqa: E402
import train as T  # noqa: E402

REPO = os.path.abspath(os.path.join(HERE, "..", ".."))

# Recommended defaults (reverie.json); chosen from tools/train/evaluate.py measurements.
DEFAULTS = {
    "width": 64, "height": 64,
    "prior_steps": 10, "prior_guidance": 2.0,
    "decoder_steps": 12, "decoder_guidance": 1.5, "decoder_scheduler": "ddim",
    "inpaint_steps": 12, "inpaint_scheduler": "ddim", "variation_steps": 12,
    # extending: frames conditioned on the image embedding of what surrounds them, without
    # guidance (docs/tiny-model.md: a prompt-conditioned frame draws the prompt's shapes again)
    "extend_context": 1.0, "extend_guidance": 1.0,
}


def dump(path, obj):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        json.dump(obj, f, indent=2)
        f.write("\n")


def save_component(folder, cfg, model, fname, dtype=torch.float32):
    os.makedirs(folder, exist_ok=True)
    dump(os.path.join(folder, "config.json"), cfg)
    stio.save(os.path.join(folder, fname), RM.state_dict_for_export(model, dtype))


def export_models(run, out, defaults):
    tok, te, ve = T.load_clip(run)
    pr = RM.PriorTransformer(C.prior())
    pr.load_state_dict(T.load_final(run, "prior")["prior"])
    movq = T.load_movq(run)
    # one UNet learned both jobs (train.py stage_unet): the inpaint UNet as trained, and the
    # decoder UNet with conv_in's first 4 input channels (the text-to-image examples had the mask
    # and masked-latent channels zero)
    inp = RM.UNet2DConditionModel(C.unet(9))
    inp.load_state_dict(T.load_final(run, "unet")["unet"])
    unet = RM.UNet2DConditionModel(C.unet(4))
    st = inp.state_dict()
    st["conv_in.weight"] = st["conv_in.weight"][:, :4].clone()
    unet.load_state_dict(st)
    if os.path.exists(out):
        shutil.rmtree(out)
    p = os.path.join(out, "prior")
    dump(os.path.join(p, "model_index.json"), {
        "_class_name": "KandinskyV22PriorPipeline", "_diffusers_version": "0.31.0",
        "image_encoder": ["transformers", "CLIPVisionModelWithProjection"],
        "image_processor": ["transformers", "CLIPImageProcessor"], "prior": ["diffusers", "PriorTransformer"],
        "scheduler": ["diffusers", "UnCLIPScheduler"], "text_encoder": ["transformers", "CLIPTextModelWithProjection"],
        "tokenizer": ["transformers", "CLIPTokenizer"]})
    save_component(os.path.join(p, "prior"), C.prior(), pr, "diffusion_pytorch_model.safetensors")
    save_component(os.path.join(p, "text_encoder"), C.text_encoder(len(tok.encoder)), te, "model.safetensors")
    save_component(os.path.join(p, "image_encoder"), C.image_encoder(), ve, "model.safetensors")
    shutil.copytree(os.path.join(run, "tokenizer"), os.path.join(p, "tokenizer"))
    dump(os.path.join(p, "scheduler", "scheduler_config.json"), C.prior_scheduler())
    dump(os.path.join(p, "image_processor", "preprocessor_config.json"), C.image_processor())
    sched = RP.decoder_scheduler_config(C.ddpm_scheduler(), defaults["decoder_scheduler"])
    sched["_diffusers_version"] = "0.31.0"
    isched = RP.decoder_scheduler_config(C.ddpm_scheduler(), defaults["inpaint_scheduler"])
    isched["_diffusers_version"] = "0.31.0"
    for name, u, cls, sc, dt in (("decoder", unet, "KandinskyV22Pipeline", sched, torch.float32),
                                 ("decoder-inpaint", inp, "KandinskyV22InpaintPipeline", isched, torch.float16)):
        d = os.path.join(out, name)
        dump(os.path.join(d, "model_index.json"), {
            "_class_name": cls, "_diffusers_version": "0.31.0", "movq": ["diffusers", "VQModel"],
            "scheduler": ["diffusers", sc["_class_name"]], "unet": ["diffusers", "UNet2DConditionModel"]})
        save_component(os.path.join(d, "unet"), C.unet(u.config["in_channels"]), u, "diffusion_pytorch_model.safetensors", dt)
        save_component(os.path.join(d, "movq"), C.movq(), movq, "diffusion_pytorch_model.safetensors")
        dump(os.path.join(d, "scheduler", "scheduler_config.json"), sc)
    write_reverie_json(out, defaults, export_upscaler(run, out))


def write_reverie_json(out, defaults, upscaler):
    folders = {"prior": "prior", "decoder": "decoder", "inpaint": "decoder-inpaint"}
    if upscaler:
        folders["upscaler"] = "upscaler"
    dump(os.path.join(out, "reverie.json"), dict({"name": "reverie-tiny", "format_version": 1}, **folders, **defaults))


def export_upscaler(run, out):
    """out/upscaler/ (config.json, model.safetensors in float32 with SRVGGNetCompact's state-dict
    names) from the upscaler stage's final.pt; False where the run has none."""
    path = os.path.join(run, "upscaler", "final.pt")
    if not os.path.exists(path):
        return False
    st = torch.load(path, map_location="cpu")["upscaler"]
    cfg = C.upscaler_of(st)
    m = RM.SRVGGNetCompact(cfg)
    m.load_state_dict(st)
    d = os.path.join(out, "upscaler")
    if os.path.exists(d):
        shutil.rmtree(d)
    save_component(d, cfg, m, "model.safetensors")
    return True


# ----------------------------------------------------------------------------------------------
# reference cases

class Noise:
    """Standard-normal draws from a seeded generator, recorded in call order."""

    def __init__(self, seed):
        self.g = torch.Generator().manual_seed(seed)
        self.drawn = []

    def __call__(self, shape):
        z = torch.randn(shape, generator=self.g, dtype=torch.float32)
        self.drawn.append(z)
        return z


def role_of(name):
    if name.startswith("in.") or ".in." in name and not name.startswith("calls."):
        return "input"
    if name.startswith("out.") or ".out." in name and not name.startswith("calls."):
        return "output"
    return "intermediate"


def write_case(ref, name, kind, desc, params, tensors, descs=None):
    path = os.path.join(ref, "cases", name + ".safetensors")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tensors = {k: (v.detach().contiguous() if torch.is_tensor(v) else torch.tensor(v)) for k, v in tensors.items()}
    for k, v in list(tensors.items()):
        if v.dtype == torch.bool:
            tensors[k] = v.to(torch.uint8)
        elif v.dtype == torch.float64:
            tensors[k] = v.float()
    stio.save(path, tensors, {"case": name})
    with open(path, "rb") as f:
        sha = hashlib.sha256(f.read()).hexdigest()
    dt = {torch.float32: "float32", torch.int64: "int64", torch.uint8: "uint8", torch.float16: "float16"}
    return {"name": name, "description": desc, "kind": kind, "params": params, "file": "cases/%s.safetensors" % name,
            "sha256": sha, "tensors": [{"name": k, "role": role_of(k), "dtype": dt[v.dtype], "shape": list(v.shape),
                                        "desc": (descs or {}).get(k, "")} for k, v in sorted(tensors.items())]}


def build_reference(out, ref, defaults, seed=1234):
    torch.set_num_threads(1)
    if os.path.exists(ref):
        shutil.rmtree(ref)
    os.makedirs(ref)
    rel = os.path.relpath(out, ref)
    models = {"prior": os.path.join(rel, "prior"), "decoder": os.path.join(rel, "decoder"),
              "inpaint": os.path.join(rel, "decoder-inpaint")}
    prior = RP.Prior(os.path.join(out, "prior"))
    dec = RP.Decoder(os.path.join(out, "decoder"))
    inp = RP.Decoder(os.path.join(out, "decoder-inpaint"))
    g = torch.Generator().manual_seed(seed)
    rs = np.random.RandomState(seed)
    prompt = "a small red circle to the left of a blue square on a white background"
    prompt = "a red circle to the left of a blue square on a white background"
    negative = "a green triangle"
    texts = [prompt, negative, "", "Hello, World!  It's 3:45pm -- d\u00e9j\u00e0 vu?",
             " ".join("word%d" % i for i in range(60))]
    cases = []

    ids, mask = prior.tokenizer(texts)
    cases.append(write_case(ref, "tokenizer", "component", "CLIPTokenizer of the model folder: padding to 77, truncation",
                            {"texts": texts, "pad_token": prior.tokenizer.pad, "pad_token_id": prior.tokenizer.pad_id,
                             "bos_token_id": prior.tokenizer.bos_id, "eos_token_id": prior.tokenizer.eos_id,
                             "model_max_length": 77, "model_folder": "prior/tokenizer"},
                            {"out.input_ids": ids, "out.attention_mask": mask}))

    # components
    side = C.IMAGE_SIDE
    lat = RP.latent_side(side, dec.movq.scale_factor)
    t = {}
    with torch.no_grad():
        ids2, mask2 = prior.tokenizer([prompt, negative])
        o = prior.text_encoder(ids2)
        t.update({"text_encoder.in.input_ids": ids2, "text_encoder.in.attention_mask": mask2,
                  "text_encoder.out.last_hidden_state": o["last_hidden_state"], "text_encoder.out.text_embeds": o["text_embeds"]})
        px = torch.randn(2, 3, side, side, generator=g)
        o2 = prior.image_encoder(px)
        t.update({"image_encoder.in.pixel_values": px, "image_encoder.out.image_embeds": o2["image_embeds"],
                  "image_encoder.out.last_hidden_state": o2["last_hidden_state"], "image_encoder.zero_embed": prior.zero_embed()})
        img = rs.randint(0, 256, (96, 128, 3)).astype(np.uint8)
        t.update({"image_processor.in.image_uint8_hwc": torch.from_numpy(img),
                  "image_processor.out.pixel_values": prior.image_processor(img)})
        e = C.EMBED_DIM
        hs = torch.randn(2, e, generator=g)
        pm = torch.zeros(2, 77, dtype=torch.bool)
        pm[0, :9] = True
        pm[1, :14] = True
        ehs = o["last_hidden_state"]
        pj = o["text_embeds"]
        t.update({"prior.in.hidden_states": hs, "prior.in.timestep": torch.tensor(637), "prior.in.proj_embedding": pj,
                  "prior.in.encoder_hidden_states": ehs, "prior.in.attention_mask": pm,
                  "prior.out.predicted_image_embedding": prior.prior(hs, torch.tensor(637), pj, ehs, pm)})
        ppi = torch.randn(2, e, generator=g)
        t.update({"prior.post_process.in": ppi, "prior.post_process.out": prior.prior.post_process_latents(ppi)})
        us = torch.randn(2, 4, lat, lat, generator=g)
        ue = torch.randn(2, e, generator=g)
        t.update({"unet.in.sample": us, "unet.in.timestep": torch.tensor(801), "unet.in.image_embeds": ue,
                  "unet.out.sample": dec.unet(us, torch.tensor(801), ue),
                  "unet.in.timestep_per_sample": torch.tensor([10, 999]),
                  "unet.out.sample_per_sample_t": dec.unet(us, torch.tensor([10, 999]), ue)})
        ius = torch.randn(2, 9, lat, lat, generator=g)
        t.update({"unet_inpaint.in.sample": ius, "unet_inpaint.in.timestep": torch.tensor(455),
                  "unet_inpaint.in.image_embeds": ue, "unet_inpaint.out.sample": inp.unet(ius, torch.tensor(455), ue)})
        ml = torch.randn(1, 4, lat, lat, generator=g)
        q, qi = dec.movq.quantize(ml)
        t.update({"movq.decode.in.latents": ml, "movq.decode.out.sample_force_not_quantize": dec.movq.decode(ml, True),
                  "movq.decode.out.sample_quantized": dec.movq.decode(ml, False), "movq.quantize.out.quant": q,
                  "movq.quantize.out.indices": qi})
        sc = S.make_scene(S.HELDOUT_SEED + 77)
        im = sc.render()
        x = RP.image_to_tensor(im)
        t.update({"movq.encode.in.image_uint8_hwc": torch.from_numpy(im), "movq.encode.in.image": x,
                  "movq.encode.out.latents": dec.movq.encode(x)})
    folders = {"text_encoder": "prior/text_encoder", "image_encoder": "prior/image_encoder",
               "image_processor": "prior/image_processor", "prior": "prior/prior", "unet": "decoder/unet",
               "unet_inpaint": "decoder-inpaint/unet", "movq": "decoder/movq"}
    cases.append(write_case(ref, "components", "component", "Single forward passes of each model on fixed inputs",
                            {"movq_scale_factor": dec.movq.scale_factor, "latent_hw": [lat, lat], "model_folders": folders}, t))

    # prior, with and without a negative prompt
    psc = C.prior_scheduler()
    for name, neg, sd in (("prior_t2i", negative, seed + 1), ("prior_t2i_noneg", None, seed + 2)):
        rec = RP.Record()
        nz = Noise(sd)
        b = 2 if neg is not None else 1
        lat0 = torch.randn(b, C.EMBED_DIM, generator=torch.Generator().manual_seed(sd + 100))
        img_e, neg_e = prior(prompt, neg, steps=defaults["prior_steps"], guidance=defaults["prior_guidance"],
                             latents=lat0, noise=nz, rec=rec)
        tt = dict(rec.t)
        tt.update({"in.latents": lat0, "out.image_embeds": img_e, "out.negative_image_embeds": neg_e})
        for i, z in enumerate(nz.drawn):
            tt["step_noise.%03d" % i] = z
        calls = {"text_encoder": 2, "prior": defaults["prior_steps"]}
        if neg is None:
            calls["image_encoder"] = 1
        cases.append(write_case(ref, name, "pipeline",
                                "KandinskyV22PriorPipeline(prompt%s) with explicit initial latents; UnCLIPScheduler noise "
                                "recorded as step_noise.*" % (", negative_prompt" if neg else ""),
                                {"prompt": prompt, "negative_prompt": neg, "num_inference_steps": defaults["prior_steps"],
                                 "guidance_scale": defaults["prior_guidance"], "num_images_per_prompt": 1,
                                 "generator_seed": sd, "output_type": "pt", "model_folder": "prior", "scheduler": "unclip",
                                 "scheduler_config": psc,
                                 "batch_order": "prompt batch is [prompt] + [negative_prompt] when negative_prompt is given; "
                                                "the text encoder sees [uncond..., cond...] = [neg, neg, prompt, neg] "
                                                "(or ['', prompt] without one)",
                                 "model_calls": calls}, tt))
        if neg is None:
            emb, nemb = img_e, neg_e

    # decoder with the default scheduler, and inpainting
    kind = defaults["decoder_scheduler"]
    dsc = RP.decoder_scheduler_config(C.ddpm_scheduler(), kind)
    ncls = dsc["_class_name"]
    for name, d, sc_cfg, steps in (("decoder_" + kind, dec, dsc, defaults["decoder_steps"]),
                                   ("inpaint_ddpm", inp, RP.decoder_scheduler_config(C.ddpm_scheduler(), "ddpm"), 10)):
        rec = RP.Record()
        nz = Noise(seed + 10 + len(cases))
        lat0 = torch.randn(1, 4, lat, lat, generator=torch.Generator().manual_seed(seed + 200 + len(cases)))
        tt = {}
        params = {"height": side, "width": side, "latent_height": lat, "latent_width": lat,
                  "movq_scale_factor": d.movq.scale_factor, "num_inference_steps": steps,
                  "guidance_scale": defaults["decoder_guidance"], "scheduler": name.split("_")[1],
                  "scheduler_class": sc_cfg["_class_name"], "scheduler_config": sc_cfg, "output_type": "np",
                  "cfg_batch_order": "unet batch = [negative, positive]; noise_pred = uncond + g*(text-uncond) on the "
                                     "first 4 channels; channels 4..7 (variance) are dropped",
                  "model_calls": {"unet": steps, "movq_decode": 1}}
        if name.startswith("inpaint"):
            im = S.make_scene(S.HELDOUT_SEED + 5, "single").render()
            mk = np.zeros((side, side), np.float32)
            mk[8:40, 24:60] = 1
            out = d.inpaint(im, mk, emb, nemb, steps=steps, guidance=defaults["decoder_guidance"], latents=lat0,
                            noise=nz, scheduler_config=sc_cfg, rec=rec)
            tt.update({"in.image_uint8_hwc": torch.from_numpy(im), "in.mask": torch.from_numpy(mk)})
            params.update({"model_folder": "decoder-inpaint", "mask_kind": "rect",
                           "model_calls": {"movq_encode": 1, "unet": steps, "movq_decode": 1}})
            desc = ("KandinskyV22InpaintPipeline, DDPM, explicit latents, uint8 64x64 image and float mask (>= 0.5 = "
                    "repaint); see tests/reference/kandinsky-2-2-tiny/README.md §5.4 for the mask preparation and the known-region blend")
        else:
            out = d(emb, nemb, side, side, steps=steps, guidance=defaults["decoder_guidance"], latents=lat0, noise=nz,
                    scheduler_config=sc_cfg, rec=rec)
            params["model_folder"] = "decoder"
            desc = "KandinskyV22Pipeline (decoder), %s scheduler, explicit initial latents; embeddings from prior_t2i_noneg" % ncls
        tt.update(rec.t)
        tt.update({"in.image_embeds": emb, "in.negative_image_embeds": nemb, "in.latents": lat0,
                   "out.images": (out * 0.5 + 0.5).clamp(0, 1).permute(0, 2, 3, 1),
                   "calls.movq_decode.000.out.commit_loss": torch.zeros(1)})
        for i, z in enumerate(nz.drawn):
            tt["step_noise.%03d" % i] = z
        cases.append(write_case(ref, name, "pipeline", desc, params, tt))

    index = {
        "format_version": 2, "set": "reverie-tiny", "seed": seed,
        "producer": {"torch": torch.__version__, "numpy": np.__version__, "device": "cpu", "compute_dtype": "float32",
                     "code": "tools/train/reverie_models.py, tools/train/reverie_pipelines.py"},
        "dtype": "float32", "device": "cpu", "weights_dtype": "as stored (decoder-inpaint/unet float16, others float32)",
        "models": models,
        "configs": {"text_encoder": C.text_encoder(len(prior.tokenizer.encoder)), "image_encoder": C.image_encoder(),
                    "prior": C.prior(), "unet": C.unet(4), "unet_inpaint": C.unet(9), "movq": C.movq(),
                    "prior_scheduler": psc, "ddpm_scheduler": C.ddpm_scheduler(), "decoder_scheduler": dsc,
                    "image_processor": C.image_processor(),
                    "tokenizer": {"pad_token": prior.tokenizer.pad, "model_max_length": 77}},
        "config_notes": ["The reverie-tiny model as shipped; same classes, names and semantics as the golden set.",
                         "Tokenizer: pad token <|endoftext|> (as Kandinsky 2.2); pooled text token = argmax(input_ids)."],
        "run_parameters": {"prompt": prompt, "negative_prompt": negative, "prior_guidance": defaults["prior_guidance"],
                           "decoder_guidance": defaults["decoder_guidance"],
                           "steps": {"prior": defaults["prior_steps"], kind: defaults["decoder_steps"], "ddpm": 10}},
        "perturbed_parameters": {},
        "tensor_naming": {"in.*": "inputs", "pre.*": "preprocessed inputs", "out.*": "outputs",
                          "calls.<model>.<k>.in.<kwarg> / .args.<i> / .out.<field>": "k-th call of a model in the pipeline",
                          "step_latents.<i>": "latents after denoising step i", "step_noise.<i>": "i-th N(0,1) draw of the scheduler",
                          "timesteps": "timesteps run by the loop"},
        "comparison": {"metric": "relative L2 error ||x - ref||_2 / ||ref||_2 over the whole tensor (float64 accumulation)",
                       "single_forward_fp32": 1e-4, "full_loop_latents": 1e-3,
                       "notes": ["Same rules as the golden set; integer tensors must match exactly."]},
        "cases": cases,
    }
    dump(os.path.join(ref, "cases.json"), index)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--run", required=True)
    p.add_argument("--out", default=os.path.join(REPO, "data", "models", "reverie-tiny"))
    p.add_argument("--reference", default=os.path.join(REPO, "data", "models", "reverie-tiny-reference"))
    p.add_argument("--no-reference", action="store_true")
    p.add_argument("--only", choices=["upscaler"],
                   help="upscaler: write only out/upscaler/ and reverie.json (the other folders and the reference "
                        "cases are left as they are)")
    a = p.parse_args()
    if a.only == "upscaler":
        if not export_upscaler(a.run, a.out):
            sys.exit("%s: no upscaler/final.pt (train.py upscaler first)" % a.run)
        write_reverie_json(a.out, DEFAULTS, True)
        print("exported %s" % os.path.join(a.out, "upscaler"))
        return
    export_models(a.run, a.out, DEFAULTS)
    if not a.no_reference:
        build_reference(a.out, a.reference, DEFAULTS)
    total = 0
    for root, _, files in os.walk(a.out):
        for f in files:
            total += os.path.getsize(os.path.join(root, f))
    print("exported %s (%.1f MB)" % (a.out, total / 1e6))


if __name__ == "__main__":
    main()
