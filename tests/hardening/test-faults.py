#!/usr/bin/python3
"""Device faults, injected, through the CLI and the server: an allocation
that fails (REVERIE_FAULT_ALLOC) and a lost device (REVERIE_FAULT_DEVICE_LOST)
in each stage of a job — loading, text encoding, the prior, image encoding,
the decoder, the MoVQ decode — and damaged model folders.

The CLI must exit with status 1 and a clear message and write nothing (the super-resolution stage is checked
through `reverie-cli upscale`, the CLI alone). The
server must answer the request with the API's error shape (507 for memory,
503 for a lost device), stay up, and make the next request's image exactly
as a server that never saw a fault does. TAP output; the matrix is printed
at the end.

Usage: test-faults.py REVERIE_CLI"""
import os
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from rvtest import (SKIP, Server, finish, b64_pixels, copy_model, is_error_shape, log, model_args,  # noqa: E402
                    multipart)

CLI = sys.argv[1]
STEPS = ["--steps", "3", "--prior-steps", "3"]
FAULTS = {
    "alloc": ("REVERIE_FAULT_ALLOC", "ran out of memory", 507, "out_of_memory"),
    "lost": ("REVERIE_FAULT_DEVICE_LOST", "device was lost", 503, "device_lost"),
}
# stage: the job that goes through it (text-to-image, or an edit that encodes an image)
STAGES = [("load", "generate"), ("text", "generate"), ("prior", "generate"),
          ("encode", "edit"), ("decoder", "generate"), ("decode", "generate")]

# a ×4 network of the Real-ESRGAN family (random weights: every code path runs)
UPSCALER = os.path.join(os.environ.get("REVERIE_REFERENCE_DIR", ""), "..", "real-esrgan-tiny",
                        "models", "srvgg_prelu_x4")

results = []
matrix = {}


def tap(ok, what):
    results.append(ok)
    print("%s %d - %s" % ("ok" if ok else "not ok", len(results), what), flush=True)
    return ok


def source_images(tmp):
    """An RGBA picture with a transparent hole (the edit), and its RGB form."""
    from PIL import Image
    img = Image.new("RGBA", (64, 64))
    img.putdata([((x * 4) % 256, (y * 4) % 256, 128, 0 if 20 <= x < 44 and 20 <= y < 44 else 255)
                 for y in range(64) for x in range(64)])
    path = os.path.join(tmp, "source.png")
    img.save(path)
    rgb = os.path.join(tmp, "source-rgb.png")
    img.convert("RGB").save(rgb)
    with open(path, "rb") as f:
        return path, rgb, f.read()


def cli_cell(model, tmp, stage, job, fault, rgb):
    env_name, message, _, _ = FAULTS[fault]
    out_dir = os.path.join(tmp, "cli-%s-%s" % (stage, fault))
    os.makedirs(out_dir)
    out = os.path.join(out_dir, "out.png")
    if job == "generate":
        cmd = [CLI, "generate", "a red circle", "-o", out, "--seed", "5", "--size", "64x64"]
    elif job == "upscale":
        cmd = [CLI, "upscale", rgb, "-o", out, "--model", UPSCALER]
    else:
        cmd = [CLI, "img2img", rgb, "a red circle", "--strength", "0.6", "-o", out, "--seed", "5"]
    env = dict(os.environ, **{env_name: stage + ":1"})
    extra = [] if job == "upscale" else STEPS + model
    p = subprocess.run(cmd + extra, env=env, capture_output=True, text=True, timeout=600)
    last = p.stderr.strip().splitlines()[-1] if p.stderr.strip() else ""
    ok = p.returncode == 1 and message in p.stderr and os.listdir(out_dir) == []
    if not ok:
        log("exit %d, files %s\n%s" % (p.returncode, os.listdir(out_dir), p.stderr[-2000:]))
    tap(ok, "CLI %s × %s: exit 1, “%s”, nothing written" % (stage, fault, message))
    return last


def server_request(server, job, image):
    if job == "generate":
        return server.request("/v1/images/generations",
                              {"prompt": "a red circle", "size": "64x64", "response_format": "b64_json",
                               "seed": 5})
    body, ctype = multipart({"image": ("source.png", image), "prompt": "a red circle",
                             "size": "64x64", "response_format": "b64_json", "seed": "5"})
    return server.request("/v1/images/edits", body, ctype)


def server_cell(model, tmp, stage, job, fault, image, reference):
    env_name, _, status, code = FAULTS[fault]
    env = dict(os.environ, **{env_name: stage + ":1"})
    server = Server(CLI, model + STEPS, env, os.path.join(tmp, "server-%s-%s.log" % (stage, fault)))
    try:
        s1, b1 = server_request(server, job, image)
        health, _ = server.request("/health")
        s2, b2 = server_request(server, job, image)
        same = s2 == 200 and b64_pixels(b2) == reference[job]
        ok = (s1 == status and is_error_shape(b1, s1) and b1["error"]["code"] == code and
              health == 200 and server.alive() and same)
        if not ok:
            log("first: %s %s; health %s; second: %s, same image: %s" % (s1, b1, health, s2, same))
        tap(ok, "server %s × %s: %d %s, then the next request succeeds with the same image"
            % (stage, fault, status, code))
        return "%d %s; next: %s" % (s1, b1["error"]["code"] if is_error_shape(b1, s1) else "?",
                                   "200, same image" if same else "FAILED")
    finally:
        rc = server.stop()
        tap(rc == 0, "server %s × %s: stops cleanly (exit %s)" % (stage, fault, rc))


def bad_models(model, tmp):
    """A model whose weights are damaged (configs fine) and one whose config is
    broken: never a crash, the server stays up."""
    damaged = copy_model(model, os.path.join(tmp, "damaged"))
    unet = os.path.join(damaged[1], "decoder", "unet")
    for name in os.listdir(unet):
        if name.endswith(".safetensors"):
            path = os.path.join(unet, name)
            size = os.path.getsize(path)
            with open(path, "r+b") as f:
                f.truncate(size // 2)
    p = subprocess.run([CLI, "generate", "x", "-o", os.path.join(tmp, "damaged.png")] + STEPS + damaged,
                       capture_output=True, text=True, timeout=600)
    tap(p.returncode == 1 and "reverie-cli: " in p.stderr and not os.path.exists(os.path.join(tmp, "damaged.png")),
        "CLI, damaged weights: exit 1 with a message (%s)" % p.stderr.strip().splitlines()[-1][:120])
    server = Server(CLI, damaged + STEPS, None, os.path.join(tmp, "server-damaged.log"))
    try:
        gen = {"prompt": "x", "size": "64x64", "response_format": "b64_json"}
        s1, b1 = server.request("/v1/images/generations", gen)
        health, _ = server.request("/health")
        s2, b2 = server.request("/v1/images/generations", gen)
        tap(s1 == 500 and is_error_shape(b1, s1) and b1["error"]["code"] == "model_error" and
            health == 200 and s2 == 500 and server.alive(),
            "server, damaged weights: 500 model_error each time, /health stays up (%s)"
            % (b1["error"]["message"][:100] if is_error_shape(b1, s1) else b1))
    finally:
        tap(server.stop() == 0, "server, damaged weights: stops cleanly")

    # the configs read at startup: the scheduler's (the networks' are read with
    # their weights, as above)
    broken = copy_model(model, os.path.join(tmp, "broken"))
    with open(os.path.join(broken[1], "decoder", "scheduler", "scheduler_config.json"), "w") as f:
        f.write('{"num_train_timesteps": ')
    p = subprocess.run([CLI, "serve", "--port", "0"] + broken, capture_output=True, text=True, timeout=120)
    tap(p.returncode == 1 and "scheduler_config.json" in p.stderr,
        "server, broken config: refuses to start with exit 1 and names the file (%s)"
        % p.stderr.strip()[:120])


def main():
    model = model_args()
    if model is None:
        print("1..0 # SKIP no model: neither data/models/reverie-tiny nor tests/reference/kandinsky-2-2-tiny/models")
        return SKIP
    tmp = tempfile.mkdtemp(prefix="reverie-faults-")
    log("model: %s; scratch: %s" % (" ".join(model), tmp))
    path, rgb, image = source_images(tmp)

    # what a server that never saw a fault makes
    server = Server(CLI, model + STEPS, None, os.path.join(tmp, "server-reference.log"))
    reference = {}
    for job in ("generate", "edit"):
        status, body = server_request(server, job, image)
        if status != 200:
            log("reference %s: %s %s" % (job, status, body))
            tap(False, "reference %s" % job)
            return 1
        reference[job] = b64_pixels(body)
    server.stop()

    for stage, job in STAGES:
        for fault in FAULTS:
            cli = cli_cell(model, tmp, stage, job, fault, rgb)
            srv = server_cell(model, tmp, stage, job, fault, image, reference)
            matrix[(stage, fault)] = (cli, srv)
    for fault in FAULTS:
        matrix[("upscale", fault)] = (cli_cell(model, tmp, "upscale", "upscale", fault, rgb), "-")
    bad_models(model, tmp)

    log("fault-injection matrix (stage × fault → outcome):")
    for (stage, fault), (cli, srv) in matrix.items():
        log("  %-8s %-6s CLI: %s" % (stage, fault, cli))
        log("  %-8s %-6s server: %s" % ("", "", srv))
    return finish(results, tmp)


if __name__ == "__main__":
    sys.exit(main())
