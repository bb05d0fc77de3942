#!/usr/bin/python3
"""Times the PyTorch implementation of the networks, schedulers and pipelines in tools/train on the
same work as the engine, and the engine itself (`reverie-dev bench pipeline --json`) in the same
run, and prints both side by side with the ratio engine / PyTorch.

  tools/bench-torch.py                        the embedded model, reverie.json's defaults
  tools/bench-torch.py --model DIR            another model set (prior/, decoder/, reverie.json)
  tools/bench-torch.py --random-weights tools/kandinsky-2-2-configs [--size 512x512]
                                              full-size configs with random weights, per stage:
                                              text encoder, one prior step, one UNet step, MoVQ decode
  tools/bench-torch.py --unet-step            the Kandinsky 2.2 UNet alone: one forward at 512×512
                                              (64×64 latents), batch 2, random weights

Every measurement is warm: one run first, then the best and the median of --runs. PyTorch runs
at each of --threads (torch.set_num_threads). Run it on an otherwise quiet machine and compare
only figures from the same run; timings here are never test assertions.

For PyTorch at its best on Debian, install libopenblas0-pthread and leave OMP_NUM_THREADS and
OPENBLAS_NUM_THREADS at 1 (this script sets them before importing torch if they are unset): the
thread count is then torch's own intra-op parallelism.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(HERE, "train"))

import torch  # noqa: E402

import reverie_models as RM  # noqa: E402
import reverie_pipelines as RP  # noqa: E402

STAGES = ("text", "prior", "decoder", "decode", "total")
RANDOM_STAGES = ("text", "prior", "unet", "movq")


def now():
    return time.perf_counter()


def summarise(runs):
    """runs: list of {stage: seconds} -> {stage: (best, median)}; best per stage over runs."""
    out = {}
    for k in runs[0]:
        v = [r[k] for r in runs]
        out[k] = (min(v), statistics.median(v))
    return out


# ---- the whole text-to-image pipeline ------------------------------------------------------------

class TorchPipeline:
    """The prior and decoder pipelines of reverie_pipelines.py, stage by stage with timings: the
    same calls as Prior.__call__ and Decoder.__call__ (text encoder, prior, UnCLIP scheduler;
    UNet, decoder scheduler, MoVQ decode)."""

    def __init__(self, model_dir, settings):
        self.s = settings
        self.prior = RP.Prior(os.path.join(model_dir, settings["prior"]))
        self.decoder = RP.Decoder(os.path.join(model_dir, settings["decoder"]))
        base = self.decoder.scheduler_config
        kind = settings.get("decoder_scheduler")
        if kind and base.get("_class_name") != {"ddim": "DDIMScheduler", "ddpm": "DDPMScheduler",
                                                 "dpmpp": "DPMSolverMultistepScheduler"}[kind]:
            base = RP.decoder_scheduler_config(base, kind)
        self.decoder_sched = base
        # the engine computes the zero-image embedding (the prior's unconditional image
        # embedding) once when it loads the prior side, not per job
        with torch.no_grad():
            self.zero = self.prior.zero_embed()

    @torch.no_grad()
    def run(self, prompt, seed):
        s = self.s
        gen = torch.Generator().manual_seed(seed)
        noise = RP.gaussian(gen)
        t = {}
        t0 = now()
        # text: prompt and the empty prompt (classifier-free guidance)
        pg = s["prior_guidance"]
        _, cmask, cemb, chid = self.prior.encode_text([prompt])
        if pg > 1.0:
            _, umask, uemb, uhid = self.prior.encode_text([""])
            emb, hid = torch.cat([uemb, cemb]), torch.cat([uhid, chid])
            mask = torch.cat([umask, cmask]).bool()
        else:
            emb, hid, mask = cemb, chid, cmask.bool()
        t1 = now()
        t["text"] = t1 - t0
        # prior: as Prior.__call__
        sch = RP.UnCLIPScheduler(self.prior.scheduler_config)
        ts = sch.set_timesteps(s["prior_steps"])
        x = noise((1, self.prior.prior.config["embedding_dim"]))
        for i, ti in enumerate(ts):
            inp = torch.cat([x, x]) if pg > 1.0 else x
            pred = self.prior.prior(inp, ti, emb, hid, mask)
            if pg > 1.0:
                u, c = pred.chunk(2)
                pred = u + pg * (c - u)
            x = sch.step(pred, ti, x, None if i + 1 == len(ts) else ts[i + 1], noise)
        image_embeds = self.prior.prior.post_process_latents(x)
        t2 = now()
        t["prior"] = t2 - t1
        # decoder: as Decoder.__call__, the loop and the decode timed apart
        dec = self.decoder
        dg = s["decoder_guidance"]
        dsch = RP.make_scheduler(self.decoder_sched)
        dts = dsch.set_timesteps(s["decoder_steps"])
        lh, lw = dec.latent_hw(s["height"], s["width"])
        lat = noise((1, dec.movq.config["latent_channels"], lh, lw))
        embs = dec.embeds(image_embeds, self.zero, dg)
        for ti in dts:
            eps = dec._unet(lat, ti, embs, dg, None)
            lat = dsch.step(eps, ti, lat, noise)
        t3 = now()
        t["decoder"] = t3 - t2
        img = dec.decode(lat)
        RP.to_uint8(img)
        t4 = now()
        t["decode"] = t4 - t3
        t["total"] = t4 - t0
        return t


def torch_pipeline(args, settings, threads):
    pipe = TorchPipeline(args.model, settings)
    out = {}
    for n in threads:
        torch.set_num_threads(n)
        pipe.run(args.prompt, 1)   # warm-up
        runs = [pipe.run(args.prompt, i + 2) for i in range(args.runs)]
        out[n] = summarise(runs)
        print("  pytorch, %d thread%s: total best %.3f s, median %.3f s" %
              (n, "" if n == 1 else "s", out[n]["total"][0], out[n]["total"][1]), file=sys.stderr)
    return out


def engine_pipeline(args, settings):
    cmd = [args.reverie_dev, "bench", "pipeline", "--json", "--runs", str(args.runs),
           "--model", args.model, "--prompt", args.prompt, "--size",
           "%dx%d" % (settings["width"], settings["height"]),
           "--steps", str(settings["decoder_steps"]), "--prior-steps", str(settings["prior_steps"]),
           "--guidance", repr(settings["decoder_guidance"]),
           "--prior-guidance", repr(settings["prior_guidance"])]
    if settings.get("decoder_scheduler"):
        cmd += ["--scheduler", settings["decoder_scheduler"]]
    print("  " + " ".join(cmd), file=sys.stderr)
    r = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout)
    w = r["warm_best"]
    stages = {k: w[k] for k in STAGES}
    return r, stages


def pipeline_mode(args):
    with open(os.path.join(args.model, "reverie.json")) as f:
        settings = json.load(f)
    settings.setdefault("prior", "prior")
    settings.setdefault("decoder", "decoder")
    for key, val in (("prior_steps", args.prior_steps), ("decoder_steps", args.steps),
                     ("prior_guidance", args.prior_guidance), ("decoder_guidance", args.guidance)):
        if val is not None:
            settings[key] = val
    if args.size:
        settings["width"], settings["height"] = (int(v) for v in args.size.split("x"))
    print("model %s: prior %d steps, guidance %g; decoder %s %d steps, guidance %g; %dx%d; "
          "%d warm runs after one warm-up" % (args.model, settings["prior_steps"], settings["prior_guidance"],
                                             settings.get("decoder_scheduler", "(folder's)"), settings["decoder_steps"],
                                             settings["decoder_guidance"], settings["width"], settings["height"],
                                             args.runs))
    eng = None
    if not args.no_engine:
        eng_json, eng = engine_pipeline(args, settings)
        print("engine: %s, %d dispatches per image" % (eng_json["device"], eng_json["warm_best"]["dispatches"]))
    tor = torch_pipeline(args, settings, args.threads)
    print_table("seconds per image (warm; engine: its fastest run, PyTorch: best / median of %d)" % args.runs,
                STAGES, eng, tor, args.threads)
    return {"settings": settings, "engine": eng, "pytorch": tor}


# ---- full-size configs with random weights -----------------------------------------------------

def random_model(folder):
    cfg = RM.read_json(os.path.join(folder, "config.json"))
    torch.manual_seed(0x5eed)
    m = RM.build(cfg).eval()
    return m


def time_call(fn, runs):
    with torch.no_grad():
        fn()   # warm-up
        v = []
        for _ in range(runs):
            t = now()
            fn()
            v.append(now() - t)
    return min(v), statistics.median(v)


def torch_random(args, stages, width, height, threads):
    d = args.random_weights
    out = {n: {} for n in threads}
    torch.set_flush_denormal(True)

    def each(name, fn):
        for n in threads:
            torch.set_num_threads(n)
            out[n][name] = time_call(fn, args.runs)
            print("  pytorch %-6s %d thread%s: best %.3f s" % (name, n, "" if n == 1 else "s", out[n][name][0]),
                  file=sys.stderr)

    E = None
    hid = emb = None
    if "text" in stages or "prior" in stages:
        te = random_model(os.path.join(d, "prior", "text_encoder"))
        L = te.config["max_position_embeddings"]
        vocab = te.config["vocab_size"]
        ids = torch.tensor([[0 if i % L == 0 else (i * 7919) % max(vocab - 1, 1) for i in range(j * L, (j + 1) * L)]
                            for j in range(2)])
        if "text" in stages:
            each("text", lambda: te(ids))
        with torch.no_grad():
            o = te(ids)
        hid, emb = o["last_hidden_state"], o["text_embeds"]
        del te
    if "prior" in stages:
        pr = random_model(os.path.join(d, "prior", "prior"))
        E = pr.config["embedding_dim"]
        hs = torch.zeros(2, E)
        mask = torch.ones(2, hid.shape[1], dtype=torch.bool)
        each("prior", lambda: pr(hs, torch.tensor(500), emb, hid, mask))
        del pr
    mq_cfg = RM.read_json(os.path.join(d, "decoder", "movq", "config.json"))
    f = 2 ** (len(mq_cfg["block_out_channels"]) - 1)
    lh, lw = RP.latent_side(height, f), RP.latent_side(width, f)
    if "unet" in stages:
        un = random_model(os.path.join(d, "decoder", "unet"))
        c = un.config
        sample = torch.full((2, c["in_channels"], lh, lw), 0.1)
        emb_dim = c.get("encoder_hid_dim") or E
        ie = torch.full((2, emb_dim), 0.1)
        each("unet", lambda: un(sample, torch.tensor(500), ie))
        del un
    if "movq" in stages:
        mq = random_model(os.path.join(d, "decoder", "movq"))
        z = torch.full((1, mq_cfg.get("vq_embed_dim") or mq_cfg["latent_channels"], lh, lw), 0.1)
        each("movq", lambda: mq.decode(z, force_not_quantize=True))
        del mq
    return out, (lh, lw)


def engine_random(args, stages, width, height):
    cmd = [args.reverie_dev, "bench", "pipeline", "--json", "--runs", str(args.runs),
           "--random-weights", args.random_weights, "--size", "%dx%d" % (width, height),
           "--stages", ",".join(stages)]
    print("  " + " ".join(cmd), file=sys.stderr)
    r = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout)
    names = {"text encoder": "text", "prior step": "prior", "UNet step": "unet", "MoVQ decode": "movq"}
    return r, {names[s["stage"]]: s["seconds"] for s in r["stages"] if s["stage"] in names}


def random_mode(args, stages):
    width, height = (int(v) for v in (args.size or "512x512").split("x"))
    print("random weights from %s, %dx%d: text encoder (batch 2, full length), one prior step (batch 2), "
          "one UNet step (batch 2), one MoVQ decode; stages: %s; best / median of %d after a warm-up"
          % (args.random_weights, width, height, ", ".join(stages), args.runs))
    eng = None
    if not args.no_engine:
        eng_json, eng = engine_random(args, stages, width, height)
        print("engine: %s" % eng_json["device"])
        whole = [s for s in eng_json["stages"] if s["stage"] == "whole run"]
        if whole:
            print("engine device memory for a whole run with these stages resident: %.2f GiB "
                  "(weights %.2f + the largest stage's work %.2f)" % (
                      whole[0]["peak_bytes"] / 2**30, whole[0]["weight_bytes"] / 2**30,
                      whole[0]["activation_bytes"] / 2**30))
    tor, (lh, lw) = torch_random(args, stages, width, height, args.threads)
    print("latents %dx%d" % (lh, lw))
    print_table("seconds per call", stages, eng, tor, args.threads)
    prior = [s for s in (eng_json["stages"] if eng else []) if s["stage"] == "prior step"]
    torch_prior = [tor[n]["prior"][0] for n in tor if "prior" in tor[n]]
    if prior and "cached_step_seconds" in prior[0] and torch_prior:
        best_t = min(torch_prior)
        print("\nthe engine's prior in a sampling loop: the text prefix once (%.4f s), then %.4f s per step "
              "(%.2f × the whole PyTorch step, which the PyTorch pipeline runs every step)"
              % (prior[0]["prefix_seconds"], prior[0]["cached_step_seconds"],
                 prior[0]["cached_step_seconds"] / best_t))
    return {"engine": eng, "pytorch": tor}


# ---- output ------------------------------------------------------------------------------------

def print_table(title, stages, eng, tor, threads):
    print()
    print(title)
    head = "| stage | engine |" + "".join(" PyTorch %dT best | median |" % n for n in threads) + \
        " engine / PyTorch best |"
    print(head)
    print("|" + "---|" * (head.count("|") - 1))
    for s in stages:
        row = "| %s | %s |" % (s, "%.3f" % eng[s] if eng else "—")
        best = None
        for n in threads:
            b, m = tor[n][s]
            row += " %.3f | %.3f |" % (b, m)
            best = b if best is None else min(best, b)
        ratio = "%.2f" % (eng[s] / best) if eng and best > 0 else "—"
        row += " %s |" % ratio
        print(row)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default=os.path.join(ROOT, "data", "models", "reverie-tiny"),
                   help="model set folder (default: the embedded reverie-tiny)")
    p.add_argument("--random-weights", metavar="DIR",
                   help="time each stage of the configs in DIR (prior/..., decoder/...) with random weights")
    p.add_argument("--unet-step", action="store_true",
                   help="one UNet forward of the Kandinsky 2.2 configs, batch 2, random weights (512x512 unless --size)")
    p.add_argument("--stages", default=None,
                   help="with --random-weights: comma-separated subset of text,prior,unet,movq")
    p.add_argument("--reverie-dev", default=os.path.join(ROOT, "build", "src", "dev", "reverie-dev"))
    p.add_argument("--no-engine", action="store_true", help="time PyTorch only")
    p.add_argument("--runs", type=int, default=None, help="timed runs after the warm-up (default 3; 1 with --unet-step)")
    p.add_argument("--threads", default="1,2", help="PyTorch thread counts (default 1,2)")
    p.add_argument("--prompt", default="a small red circle at the left on a blue background")
    p.add_argument("--size", help="WxH (default: reverie.json's, or 512x512 with random weights)")
    p.add_argument("--steps", type=int, help="decoder steps (default: reverie.json's)")
    p.add_argument("--prior-steps", type=int, help="prior steps (default: reverie.json's)")
    p.add_argument("--guidance", type=float, help="decoder guidance (default: reverie.json's)")
    p.add_argument("--prior-guidance", type=float, help="prior guidance (default: reverie.json's)")
    p.add_argument("--json", metavar="FILE", help="also write the figures to FILE")
    args = p.parse_args()
    args.threads = [int(v) for v in args.threads.split(",")]
    if args.runs is None:
        args.runs = 1 if args.unet_step else 3
    if args.runs < 1:
        p.error("--runs takes 1 or more")

    print("CPU: %s; torch %s, %s" % (cpu_name(), torch.__version__, blas_name()))
    if args.unet_step:
        args.random_weights = args.random_weights or os.path.join(ROOT, "tools", "kandinsky-2-2-configs")
        res = random_mode(args, ["unet"])
    elif args.random_weights:
        stages = args.stages.split(",") if args.stages else list(RANDOM_STAGES)
        bad = [s for s in stages if s not in RANDOM_STAGES]
        if bad:
            p.error("unknown stage %s" % ", ".join(bad))
        res = random_mode(args, stages)
    else:
        res = pipeline_mode(args)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(res, f, indent=1)


def cpu_name():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return "%s × %d" % (line.split(":", 1)[1].strip(), os.cpu_count())
    except OSError:
        pass
    return "unknown"


def blas_name():
    """The BLAS that torch's generic BLAS calls resolve to (Debian's alternatives), and MKL-DNN."""
    cfg = torch.__config__.show()
    dnn = ", oneDNN" if "USE_MKLDNN=ON" in cfg else ""
    try:
        out = subprocess.run(["update-alternatives", "--query", "libblas.so.3-x86_64-linux-gnu"],
                             capture_output=True, text=True).stdout
        for line in out.splitlines():
            if line.startswith("Value:"):
                return "BLAS " + line.split()[-1] + dnn
    except OSError:
        pass
    return "BLAS " + ("MKL" if "BLAS_INFO=mkl" in cfg else "generic") + dnn


if __name__ == "__main__":
    main()
