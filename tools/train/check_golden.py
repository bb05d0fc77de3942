#!/usr/bin/python3
"""Run the reference cases of a reference folder (default: tests/reference/kandinsky-2-2-tiny) through
reverie_models / reverie_pipelines and print relative L2 errors against the recorded tensors.

    /usr/bin/python3 tools/train/check_golden.py [FOLDER]

Exit status 0 when every compared quantity is within the folder's tolerances."""
import json
import os
import sys

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import reverie_models as RM  # noqa: E402
import reverie_pipelines as RP  # noqa: E402
import stio  # noqa: E402

torch.set_num_threads(1)
FORWARD_TOL = 1e-4
LOOP_TOL = 1e-3


def rel(x, ref):
    x, ref = x.double(), ref.double()
    d = torch.linalg.norm((x - ref).flatten())
    n = torch.linalg.norm(ref.flatten())
    return float(d / n) if n > 0 else float(d)


class Report:
    def __init__(self):
        self.failures = 0
        self.count = 0
        self.worst = {}

    def check(self, case, what, x, ref, tol):
        self.count += 1
        if ref.dtype in (torch.int64, torch.uint8, torch.int32) or x.dtype in (torch.int64, torch.uint8):
            ok = torch.equal(x.to(torch.int64).reshape(ref.shape), ref.to(torch.int64))
            err = 0.0 if ok else float("inf")
        else:
            err = rel(x.reshape(ref.shape), ref)
            ok = err <= tol
        key = (case, what.split(".")[0] if what.startswith(("step_latents", "calls")) else what)
        w = self.worst.get(key)
        if w is None or err > w[0]:
            self.worst[key] = (err, tol, what)
        if not ok:
            self.failures += 1
            print("  FAIL %-14s %-55s rel %.3e (tol %.0e)" % (case, what, err, tol))

    def summary(self):
        print("\n%-16s %-40s %-12s %s" % ("case", "quantity (worst)", "rel L2", "tol"))
        for (case, _), (err, tol, what) in self.worst.items():
            print("%-16s %-40s %-12.3e %.0e" % (case, what[:40], err, tol))
        print("\n%d comparisons, %d failures" % (self.count, self.failures))


def main():
    root = sys.argv[1] if len(sys.argv) > 1 else os.path.join(HERE, "..", "..", "tests", "reference",
                                                              "kandinsky-2-2-tiny")
    index = RM.read_json(os.path.join(root, "cases.json"))
    models = {k: os.path.join(root, v) for k, v in index["models"].items()}
    rep = Report()
    prior = RP.Prior(models["prior"])
    dec = RP.Decoder(models["decoder"])
    inp = RP.Decoder(models["inpaint"]) if "inpaint" in models else None
    for case in index["cases"]:
        name = case["name"]
        path = os.path.join(root, case["file"])
        if not os.path.exists(path):
            print("skip %s (no file)" % name)
            continue
        T = stio.load(path)
        P = case["params"]
        print("case %s" % name)
        fn = globals().get("case_" + case["kind"])
        fn(name, P, T, prior, dec, inp, rep)
    rep.summary()
    return 0 if rep.failures == 0 else 1


def case_component(name, P, T, prior, dec, inp, rep):
    if name == "tokenizer":
        tok = prior.tokenizer
        ids, mask = tok(P["texts"])
        rep.check(name, "out.input_ids", ids, T["out.input_ids"], 0)
        rep.check(name, "out.attention_mask", mask, T["out.attention_mask"], 0)
        return
    # components
    with torch.no_grad():
        if "text_encoder.in.input_ids" in T:
            ids = T["text_encoder.in.input_ids"]
            o = prior.text_encoder(ids)
            rep.check(name, "text_encoder.out.last_hidden_state", o["last_hidden_state"], T["text_encoder.out.last_hidden_state"], FORWARD_TOL)
            rep.check(name, "text_encoder.out.text_embeds", o["text_embeds"], T["text_encoder.out.text_embeds"], FORWARD_TOL)
            if "text_encoder.in.prompts" not in T and "prompts" in P:
                pass
        if "image_encoder.in.pixel_values" in T:
            o = prior.image_encoder(T["image_encoder.in.pixel_values"])
            rep.check(name, "image_encoder.out.image_embeds", o["image_embeds"], T["image_encoder.out.image_embeds"], FORWARD_TOL)
            rep.check(name, "image_encoder.out.last_hidden_state", o["last_hidden_state"], T["image_encoder.out.last_hidden_state"], FORWARD_TOL)
        if "image_encoder.zero_embed" in T:
            rep.check(name, "image_encoder.zero_embed", prior.zero_embed(), T["image_encoder.zero_embed"], FORWARD_TOL)
        if "image_processor.in.image_uint8_hwc" in T:
            px = prior.image_processor(T["image_processor.in.image_uint8_hwc"].numpy())
            # PIL's bicubic is used on both sides; a different resampler would differ slightly
            rep.check(name, "image_processor.out.pixel_values", px, T["image_processor.out.pixel_values"], 1e-2)
        if "prior.in.hidden_states" in T:
            o = prior.prior(T["prior.in.hidden_states"], T["prior.in.timestep"], T["prior.in.proj_embedding"],
                            T["prior.in.encoder_hidden_states"], T["prior.in.attention_mask"].bool())
            rep.check(name, "prior.out.predicted_image_embedding", o, T["prior.out.predicted_image_embedding"], FORWARD_TOL)
            rep.check(name, "prior.post_process.out", prior.prior.post_process_latents(T["prior.post_process.in"]),
                      T["prior.post_process.out"], FORWARD_TOL)
        if "unet.in.sample" in T:
            o = dec.unet(T["unet.in.sample"], T["unet.in.timestep"], T["unet.in.image_embeds"])
            rep.check(name, "unet.out.sample", o, T["unet.out.sample"], FORWARD_TOL)
            o = dec.unet(T["unet.in.sample"], T["unet.in.timestep_per_sample"], T["unet.in.image_embeds"])
            rep.check(name, "unet.out.sample_per_sample_t", o, T["unet.out.sample_per_sample_t"], FORWARD_TOL)
        if "unet_inpaint.in.sample" in T and inp is not None:
            o = inp.unet(T["unet_inpaint.in.sample"], T["unet_inpaint.in.timestep"], T["unet_inpaint.in.image_embeds"])
            rep.check(name, "unet_inpaint.out.sample", o, T["unet_inpaint.out.sample"], FORWARD_TOL)
        if "movq.decode.in.latents" in T:
            z = T["movq.decode.in.latents"]
            rep.check(name, "movq.decode.out.sample_force_not_quantize", dec.movq.decode(z, True),
                      T["movq.decode.out.sample_force_not_quantize"], FORWARD_TOL)
            if "movq.decode.out.sample_quantized" in T:
                rep.check(name, "movq.decode.out.sample_quantized", dec.movq.decode(z, False),
                          T["movq.decode.out.sample_quantized"], FORWARD_TOL)
            if "movq.quantize.out.quant" in T:
                q, idx = dec.movq.quantize(z)
                rep.check(name, "movq.quantize.out.quant", q, T["movq.quantize.out.quant"], FORWARD_TOL)
                rep.check(name, "movq.quantize.out.indices", idx, T["movq.quantize.out.indices"], 0)
        if "movq.encode.in.image_uint8_hwc" in T:
            x = RP.image_to_tensor(T["movq.encode.in.image_uint8_hwc"].numpy())
            rep.check(name, "movq.encode.in.image", x, T["movq.encode.in.image"], 0.0)
            rep.check(name, "movq.encode.out.latents", dec.movq.encode(x), T["movq.encode.out.latents"], FORWARD_TOL)


def case_scheduler(name, P, T, prior, dec, inp, rep):
    scheds = {
        "unclip": RP.UnCLIPScheduler(dict(P["prior_scheduler"], beta_schedule="squaredcos_cap_v2")),
        "ddpm": RP.DDPMScheduler(P["ddpm_scheduler"]),
        "ddim": RP.DDIMScheduler(P["ddim_scheduler"]),
        "dpmpp": RP.DPMSolverMultistepScheduler(P["dpmpp_scheduler"]),
    }
    for key, s in scheds.items():
        for tab in ("alphas_cumprod", "betas"):
            if "%s.%s" % (key, tab) in T:
                rep.check(name, "%s.%s" % (key, tab), getattr(s, tab), T["%s.%s" % (key, tab)], 1e-6)
        for k in sorted(T):
            if k.startswith(key + ".timesteps_"):
                n = int(k.rsplit("_", 1)[1])
                rep.check(name, k, s.set_timesteps(n), T[k], 0)
                if key == "dpmpp":
                    rep.check(name, "dpmpp.sigmas_%d" % n, s.sigmas, T["dpmpp.sigmas_%d" % n], 1e-6)
        for j in range(10):
            pre = "%s.step%d." % (key, j)
            if pre + "in.model_output" not in T:
                continue
            mo, t, x = T[pre + "in.model_output"], T[pre + "in.timestep"], T[pre + "in.sample"]
            z = T.get(pre + "noise0")
            noise = (lambda shape, z=z: z)
            if key == "unclip":
                prev = int(T[pre + "in.prev_timestep"])
                out = s.step(mo, t, x, None if prev == -1 else prev, noise)
            else:
                s.set_timesteps(10)
                out = s.step(mo, t, x, noise)
            rep.check(name, pre + "out.prev_sample", out, T[pre + "out.prev_sample"], FORWARD_TOL)


def compare_record(name, rec, T, rep):
    for k, v in rec.t.items():
        if k not in T:
            continue
        if k.startswith("calls.") and ".out." not in k:
            tol = LOOP_TOL  # inputs of calls inside a loop carry the loop's accumulated round-off
        elif k.startswith("calls.") and "movq_decode" not in k:
            tol = LOOP_TOL
        else:
            tol = LOOP_TOL
        if k.startswith("pre.") and k in ("pre.image", "pre.mask_inverted", "pre.mask_latent_nearest", "pre.mask_latent"):
            tol = 0.0
        rep.check(name, k, v, T[k], tol)


def recompute_calls(name, T, prior, unet, movq, rep):
    """Every recorded model call, recomputed from its own recorded inputs (single-forward tolerance)."""
    with torch.no_grad():
        k = 0
        while "calls.prior.%03d.args.0" % k in T:
            p = "calls.prior.%03d." % k
            o = prior.prior(T[p + "args.0"], T[p + "in.timestep"], T[p + "in.proj_embedding"],
                            T[p + "in.encoder_hidden_states"], T[p + "in.attention_mask"].bool())
            rep.check(name, p + "out.predicted_image_embedding(recomputed)", o, T[p + "out.predicted_image_embedding"], FORWARD_TOL)
            k += 1
        k = 0
        while "calls.text_encoder.%03d.args.0" % k in T:
            p = "calls.text_encoder.%03d." % k
            o = prior.text_encoder(T[p + "args.0"])
            rep.check(name, p + "out.text_embeds(recomputed)", o["text_embeds"], T[p + "out.text_embeds"], FORWARD_TOL)
            rep.check(name, p + "out.last_hidden_state(recomputed)", o["last_hidden_state"], T[p + "out.last_hidden_state"], FORWARD_TOL)
            k += 1
        k = 0
        while "calls.unet.%03d.in.sample" % k in T:
            p = "calls.unet.%03d." % k
            o = unet(T[p + "in.sample"], T[p + "in.timestep"], T[p + "in.added_cond_kwargs.image_embeds"])
            rep.check(name, p + "out.0(recomputed)", o, T[p + "out.0"], FORWARD_TOL)
            k += 1
        if "calls.movq_encode.000.args.0" in T:
            o = movq.encode(T["calls.movq_encode.000.args.0"])
            rep.check(name, "calls.movq_encode.000.out.latents(recomputed)", o, T["calls.movq_encode.000.out.latents"], FORWARD_TOL)
        if "calls.movq_decode.000.args.0" in T:
            o = movq.decode(T["calls.movq_decode.000.args.0"], True)
            rep.check(name, "calls.movq_decode.000.out.sample(recomputed)", o, T["calls.movq_decode.000.out.sample"], LOOP_TOL)


def noise_list(T):
    out = []
    i = 0
    while "step_noise.%03d" % i in T:
        out.append(T["step_noise.%03d" % i])
        i += 1
    return out


def case_pipeline(name, P, T, prior, dec, inp, rep):
    rec = RP.Record()
    noise = RP.replay(noise_list(T))
    if name.startswith("prior"):
        img, neg = prior(P["prompt"], P.get("negative_prompt"), steps=P["num_inference_steps"],
                         guidance=P["guidance_scale"], latents=T["in.latents"], noise=noise, rec=rec)
        rep.check(name, "out.image_embeds", img, T["out.image_embeds"], LOOP_TOL)
        rep.check(name, "out.negative_image_embeds", neg, T["out.negative_image_embeds"], LOOP_TOL)
        compare_record(name, rec, T, rep)
        recompute_calls(name, T, prior, dec.unet, dec.movq, rep)
        return
    d = inp if name.startswith("inpaint") else dec
    cfg = dict(P["scheduler_config"], _class_name=P["scheduler_class"])
    emb, neg = T["in.image_embeds"], T["in.negative_image_embeds"]
    if name.startswith("variation"):
        px = prior.image_processor(T["in.image_uint8_hwc"].numpy())
        rep.check(name, "pre.pixel_values", px, T["pre.pixel_values"], 1e-2)
        with torch.no_grad():
            e = prior.image_encoder(T["pre.pixel_values"])["image_embeds"]
            rep.check(name, "pre.image_embeds", e, T["pre.image_embeds"], FORWARD_TOL)
            rep.check(name, "pre.zero_image_embeds", prior.zero_embed(), T["pre.zero_image_embeds"], FORWARD_TOL)
    if name.startswith("img2img"):
        d2 = RP.Decoder.from_models(d.unet, d.movq, cfg)
        out = d2.img2img(T["in.image_uint8_hwc"].numpy(), emb, neg, strength=P["strength"], steps=P["num_inference_steps"],
                         guidance=P["guidance_scale"], start_noise=T["in.noise"], noise=noise, rec=rec)
    elif name.startswith("inpaint"):
        out = d.inpaint(T["in.image_uint8_hwc"].numpy(), T["in.mask"], emb, neg, steps=P["num_inference_steps"],
                        guidance=P["guidance_scale"], latents=T["in.latents"], noise=noise, scheduler_config=cfg, rec=rec)
    else:
        out = d(emb, neg, P["height"], P["width"], steps=P["num_inference_steps"], guidance=P["guidance_scale"],
                latents=T["in.latents"], noise=noise, scheduler_config=cfg, rec=rec)
    images = (out * 0.5 + 0.5).clamp(0, 1).permute(0, 2, 3, 1)
    rep.check(name, "out.images", images, T["out.images"], LOOP_TOL)
    compare_record(name, rec, T, rep)
    recompute_calls(name, T, prior, d.unet, d.movq, rep)


if __name__ == "__main__":
    sys.exit(main())
