#!/usr/bin/python3
"""Suite hub: `reverie-cli models` against a local stand-in for the Hugging
Face Hub (hub-server.py, on 127.0.0.1 and an ephemeral port, started and
stopped here). The tiny reference models are served as three repositories of
a test catalogue; pulls, resumes, damage, faults and errors are checked
through the CLI, and a generated file over 2 GiB measures memory and speed.

Usage: test-hub.py REVERIE_CLI REFERENCE_MODELS_DIR [CHECK…]   (TAP on stdout)
"""
import hashlib
import importlib.util
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
spec = importlib.util.spec_from_file_location("hub_server", os.path.join(HERE, "hub-server.py"))
hub = importlib.util.module_from_spec(spec)
spec.loader.exec_module(hub)

CLI = os.path.abspath(sys.argv[1])
MODELS = os.path.abspath(sys.argv[2])
ONLY = sys.argv[3:]
TOKEN = "hf_test_token_123"
BIG = (2 << 30) + 12345          # over 2 GiB, not a multiple of anything
MiB = 1 << 20

PRIOR = "reverie-test/kandinsky-2-2-prior-tiny"
DECODER = "reverie-test/kandinsky-2-2-decoder-tiny"
INPAINT = "reverie-test/kandinsky-2-2-decoder-inpaint-tiny"


def log(msg):
    for line in str(msg).splitlines():
        print("# " + line, flush=True)


def catalogue(path):
    k22 = lambda local, repo, inc: {"repo": repo, "revision": "main", "local": local, "include": inc}
    prior_inc = ["prior/", "text_encoder/", "image_encoder/", "tokenizer/", "scheduler/",
                 "image_processor/", "model_index.json"]
    dec_inc = ["unet/", "movq/", "scheduler/", "model_index.json"]
    lic = {"name": "Apache-2.0", "url": "https://www.apache.org/licenses/LICENSE-2.0",
           "text": "Test licence text."}
    variants = [{"name": "fp16", "download_bytes": 20000000}, {"name": "full", "download_bytes": 25000000}]
    one = lambda name, repo, inc: {
        "name": name, "kind": "model-set", "title": name, "licence": lic,
        "variants": [{"name": "fp16", "download_bytes": 1000}],
        "sources": [{"repo": repo, "local": "", "include": inc}]}
    entries = [
        {"name": "reverie-tiny", "kind": "embedded", "title": "embedded"},
        {"name": "tiny-k22", "kind": "model-set", "title": "Kandinsky 2.2 tiny (test)",
         "licence": lic, "variants": variants,
         "device_memory": {"basis": "test", "sizes": [{"size": 512, "bytes": 1 << 20},
                                                       {"size": 768, "bytes": 1 << 50}]},
         "sources": [k22("prior", PRIOR, prior_inc), k22("decoder", DECODER, dec_inc),
                     k22("decoder-inpaint", INPAINT, dec_inc)]},
        one("gated-set", "reverie-test/gated", ["weights.safetensors"]),
        one("no-repo", "reverie-test/not-there", ["weights.safetensors"]),
        one("big", "reverie-test/big", ["weights.safetensors"]),
        {"name": "tiny-upscaler", "kind": "upscaler", "title": "upscaler (test)", "licence": lic,
         "variants": [{"name": "full", "download_bytes": 1000}],
         "sources": [{"repo": "reverie-test/upscaler", "local": "", "include": ["config.json", "model.safetensors"]}]},
    ]
    with open(path, "w") as f:
        json.dump({"format": 1, "entries": entries}, f, indent=1)


class Env:
    def __init__(self, tmp, state, port):
        self.tmp = tmp
        self.state = state
        self.port = port
        self.data = os.path.join(tmp, "data")
        self.models = os.path.join(self.data, "reverie", "models")
        self.cat = os.path.join(tmp, "catalogue.json")

    def env(self, **extra):
        e = dict(os.environ)
        for k in ("HF_TOKEN", "HF_HUB_OFFLINE", "REVERIE_FAULT_DISK_FULL", "REVERIE_FAULT_DISK_FREE",
                  "http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY"):
            e.pop(k, None)
        e.update({"XDG_DATA_HOME": self.data, "REVERIE_CATALOGUE": self.cat,
                  "HF_ENDPOINT": "http://127.0.0.1:%d" % self.port, "REVERIE_HUB_TIMEOUT": "5",
                  "no_proxy": "127.0.0.1", "LC_ALL": "C.UTF-8"})
        e.update({k: str(v) for k, v in extra.items()})
        return e

    def run(self, *args, timeout=120, **extra):
        t0 = time.monotonic()
        p = subprocess.run([CLI] + list(args), env=self.env(**extra), capture_output=True,
                           text=True, timeout=timeout)
        # GLib writes sizes with a no-break space
        p.stdout, p.stderr = p.stdout.replace("\u00a0", " "), p.stderr.replace("\u00a0", " ")
        p.seconds = time.monotonic() - t0
        return p

    def start(self, *args, **extra):
        return subprocess.Popen([CLI] + list(args), env=self.env(**extra), stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)

    def installed(self, name):
        return os.path.isdir(os.path.join(self.models, name))

    def staged(self, name):
        return os.path.join(self.models, ".staging", name)

    def served(self, repo, path):
        return self.state.served.get(repo + ":" + path, 0)

    def reset(self):
        self.state.reset_knobs()
        shutil.rmtree(self.models, ignore_errors=True)


def expect(cond, what, out=None):
    if not cond:
        log("FAILED: " + what)
        if out is not None:
            log("exit %s\nstdout:\n%s\nstderr:\n%s" % (out.returncode, out.stdout, out.stderr[-3000:]))
        raise AssertionError(what)


def wait_part(env, path, at_least, timeout=60):
    """Waits until the .part of a staged file holds at_least bytes."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        try:
            if os.path.getsize(path) >= at_least:
                return os.path.getsize(path)
        except OSError:
            pass
        time.sleep(0.02)
    raise AssertionError("the download never reached %d bytes of %s" % (at_least, path))


def tree_sha(folder):
    out = {}
    for root, _, names in os.walk(folder):
        for n in names:
            p = os.path.join(root, n)
            with open(p, "rb") as f:
                out[os.path.relpath(p, folder)] = hashlib.sha256(f.read()).hexdigest()
    return out


# ---- the checks ----

def check_list(e):
    p = e.run("models")
    expect(p.returncode == 0, "models lists", p)
    expect("tiny-k22" in p.stdout and "available" in p.stdout, "the test set is listed as available", p)
    expect("20.0 MB fp16 (default), 25.0 MB full" in p.stdout, "download sizes shown", p)
    expect("1.0 MB at 512²" in p.stdout, "device memory shown", p)
    expect("512² only" in p.stdout, "whether it fits this device is shown", p)
    expect("reverie-tiny" in p.stdout and "built in" in p.stdout, "the embedded model is listed", p)
    log(p.stdout)
    # a catalogue with a mistake is refused with a message naming it
    bad = os.path.join(e.tmp, "bad.json")
    with open(bad, "w") as f:
        json.dump({"format": 1, "entries": [{"name": "x", "kind": "model-set", "title": "x",
                                             "sources": [{"repo": "a/b", "local": "../evil",
                                                          "include": ["x"]}]}]}, f)
    p = e.run("models", REVERIE_CATALOGUE=bad)
    expect(p.returncode == 1 and "“local” must be one folder name" in p.stderr, "a bad catalogue is refused", p)
    with open(bad, "w") as f:
        json.dump({"format": 1, "entries": [{"name": "x", "kind": "embedded", "title": "x", "colour": 1}]}, f)
    p = e.run("models", REVERIE_CATALOGUE=bad)
    expect(p.returncode == 1 and "unknown member “colour”" in p.stderr, "unknown keys are refused", p)


def check_pull_generate(e):
    e.reset()
    p = e.run("models", "pull", "tiny-k22")
    expect(p.returncode == 0, "pull succeeds", p)
    log(p.stdout.strip())
    m = re.search(r"\(([\d.]+) MB/s\)", p.stdout)
    expect(m is not None, "the pull reports its throughput", p)
    log("throughput (tiny set, ~24 MB, loopback): %s MB/s" % m.group(1))
    expect("Apache-2.0" in p.stderr and "Test licence text." in p.stderr, "the licence is shown first", p)
    expect(e.installed("tiny-k22") and not os.path.exists(e.staged("tiny-k22")),
           "installed, staging gone", p)
    root = os.path.join(e.models, "tiny-k22")
    # the fp16 variant where the repo has it, nothing else beside it; no pickle fetched
    unet = os.path.join(root, "decoder", "unet")
    expect(sorted(os.listdir(unet)) == ["config.json", "diffusion_pytorch_model.fp16.safetensors"],
           "the decoder UNet came as its fp16 variant only: %s" % os.listdir(unet))
    expect(not any(r[1].endswith(".bin") for r in e.state.requests), "no pickled file requested")
    expect(not os.path.exists(os.path.join(root, "prior", "prior", "diffusion_pytorch_model.bin")),
           "no pickled file installed")
    want = tree_sha(os.path.join(MODELS, "kandinsky-2-2-prior-tiny"))
    got = tree_sha(os.path.join(root, "prior"))
    expect(want == got, "the prior arrived byte for byte")
    p = e.run("models")
    expect("installed (fp16" in p.stdout, "listed as installed", p)
    p = e.run("models", "pull", "tiny-k22")
    expect(p.returncode == 0 and "already installed" in p.stdout, "a second pull does nothing", p)
    p = e.run("models", "verify", "tiny-k22")
    expect(p.returncode == 0 and "intact" in p.stdout, "verify passes", p)
    out = os.path.join(e.tmp, "k22.png")
    p = e.run("generate", "--model", "tiny-k22", "a red circle", "-o", out, "--size", "64x64",
              "--steps", "2", "--prior-steps", "2", "--seed", "1", "-q", timeout=300)
    expect(p.returncode == 0 and os.path.getsize(out) > 0, "generate --model NAME runs the pulled set", p)
    p = e.run("generate", "--model", "no-such-set", "x", "-o", out, "-q")
    expect(p.returncode == 1 and "models pull no-such-set" in p.stderr, "an unknown name says how to get it", p)
    # damage found by verify
    f = os.path.join(root, "decoder", "movq", "diffusion_pytorch_model.safetensors")
    with open(f, "r+b") as fh:
        fh.seek(1000)
        b = fh.read(1)
        fh.seek(1000)
        fh.write(bytes([b[0] ^ 1]))
    p = e.run("models", "verify", "tiny-k22")
    expect(p.returncode == 1 and "damaged" in p.stderr and "movq" in p.stderr
           and "models rm tiny-k22" in p.stderr, "verify finds a flipped bit and says what to do", p)
    p = e.run("models", "rm", "tiny-k22")
    expect(p.returncode == 0 and not e.installed("tiny-k22"), "rm removes the set", p)
    p = e.run("models", "pull", "tiny-k22", "--full-precision")
    expect(p.returncode == 0 and os.path.exists(os.path.join(unet, "diffusion_pytorch_model.safetensors"))
           and not os.path.exists(os.path.join(unet, "diffusion_pytorch_model.fp16.safetensors")),
           "--full-precision takes the full weights", p)


def check_kill_resume(e):
    e.reset()
    key = "text_encoder/model.safetensors"
    size = e.state.repos[PRIOR].files[key].size
    e.state.throttle[PRIOR + ":" + key] = 3 * MiB
    proc = e.start("models", "pull", "tiny-k22")
    part = os.path.join(e.staged("tiny-k22"), "prior", key + ".part")
    try:
        wait_part(e, part, int(2.5 * MiB))
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
    kept = os.path.getsize(part)
    expect(not e.installed("tiny-k22"), "nothing installed after kill -9")
    before = e.served(PRIOR, key)
    del e.state.throttle[PRIOR + ":" + key]
    p = e.run("models", "pull", "tiny-k22")
    expect(p.returncode == 0 and e.installed("tiny-k22"), "the pull resumes and installs", p)
    again = e.served(PRIOR, key) - before
    refetched = again - (size - kept)
    log("killed with %d of %d bytes on disk; the resume fetched %d bytes: %d already fetched "
        "bytes again" % (kept, size, again, refetched))
    expect(0 <= refetched <= MiB, "at most 1 MiB fetched again (%d)" % refetched)
    p = e.run("models", "verify", "tiny-k22")
    expect(p.returncode == 0, "the resumed set verifies", p)


def check_corrupt(e):
    e.reset()
    key = "unet/diffusion_pytorch_model.safetensors"
    inp = INPAINT + ":" + key
    e.state.corrupt[inp] = 1
    p = e.run("models", "pull", "tiny-k22")
    size = e.state.repos[INPAINT].files[key].size
    expect(p.returncode == 0 and e.installed("tiny-k22"), "a byte damaged once: fetched again, installed", p)
    expect("SHA-256" in p.stderr, "the damage is reported", p)
    expect(e.served(INPAINT, key) == 2 * size, "the damaged file was fetched twice (%d)" % e.served(INPAINT, key))
    got = tree_sha(os.path.join(e.models, "tiny-k22", "decoder-inpaint"))
    want = tree_sha(os.path.join(MODELS, "kandinsky-2-2-decoder-inpaint-tiny"))
    expect(got == want, "installed intact")
    e.reset()
    e.state.corrupt[inp] = 100
    p = e.run("models", "pull", "tiny-k22")
    expect(p.returncode == 1 and "SHA-256" in p.stderr and "nothing was installed" in p.stderr,
           "damaged every time: a clear error", p)
    expect(not e.installed("tiny-k22"), "never installed corrupt")
    expect(not os.path.exists(os.path.join(e.staged("tiny-k22"), "decoder-inpaint", key)),
           "the damaged file does not count as done")


def check_disk_full(e):
    e.reset()
    p = e.run("models", "pull", "tiny-k22", REVERIE_FAULT_DISK_FREE=1000)
    expect(p.returncode == 1 and "disk space" in p.stderr and "Nothing was downloaded" in p.stderr,
           "too little free space: refused before the first byte", p)
    expect(sum(e.state.served.values()) == 0, "no byte fetched")
    p = e.run("models", "pull", "tiny-k22", REVERIE_FAULT_DISK_FULL=5000000)
    expect(p.returncode == 1 and "disk is full" in p.stderr and "Free some space" in p.stderr,
           "the disk filling up gives a clear message", p)
    expect(not e.installed("tiny-k22"), "nothing installed")
    p = e.run("models", "pull", "tiny-k22")
    expect(p.returncode == 0 and e.installed("tiny-k22"), "with space again the pull completes", p)


def check_cancel(e):
    e.reset()
    key = "text_encoder/model.safetensors"
    e.state.throttle[PRIOR + ":" + key] = 3 * MiB
    proc = e.start("models", "pull", "tiny-k22")
    part = os.path.join(e.staged("tiny-k22"), "prior", key + ".part")
    try:
        wait_part(e, part, 2 * MiB)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    expect(proc.returncode == 130 and "stopped" in err and "to resume" in err,
           "Ctrl-C stops with a message (exit %s): %s" % (proc.returncode, err[-500:]))
    expect(not e.installed("tiny-k22"), "nothing installed after Ctrl-C")
    kept = os.path.getsize(part)
    before = e.served(PRIOR, key)
    e.state.throttle.clear()
    p = e.run("models", "pull", "tiny-k22")
    expect(p.returncode == 0 and e.installed("tiny-k22"), "the next pull resumes", p)
    size = e.state.repos[PRIOR].files[key].size
    refetched = e.served(PRIOR, key) - before - (size - kept)
    log("cancelled with %d bytes kept; %d fetched again" % (kept, refetched))
    expect(refetched <= MiB, "at most 1 MiB fetched again")


def check_errors(e):
    e.reset()
    p = e.run("models", "pull", "gated-set")
    expect(p.returncode == 1 and "gated" in p.stderr and "HF_TOKEN" in p.stderr
           and "licence" in p.stderr, "401: accept the licence and set HF_TOKEN", p)
    p = e.run("models", "pull", "gated-set", "--token", "wrong")
    expect(p.returncode == 1 and "refused the token" in p.stderr, "a wrong token is named", p)
    p = e.run("models", "pull", "gated-set", HF_TOKEN=TOKEN)
    expect(p.returncode == 0 and e.installed("gated-set"), "HF_TOKEN opens a gated repo", p)
    p = e.run("models", "pull", "no-repo")
    expect(p.returncode == 1 and "no repository reverie-test/not-there" in p.stderr, "404 repo named", p)
    e.state.hidden.add(DECODER + ":movq/config.json")
    p = e.run("models", "pull", "tiny-k22")
    expect(p.returncode == 1 and "has no file movq/config.json" in p.stderr, "404 file named", p)
    e.state.hidden.clear()
    # connection refused: a port nobody listens on
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    closed = s.getsockname()[1]
    s.close()
    p = e.run("models", "pull", "tiny-k22", HF_ENDPOINT="http://127.0.0.1:%d" % closed)
    expect(p.returncode == 1 and "connection refused" in p.stderr and "online" in p.stderr,
           "connection refused: is this machine online?", p)
    n = len(e.state.requests)
    p = e.run("models", "pull", "tiny-k22", HF_HUB_OFFLINE="1")
    expect(p.returncode == 1 and "HF_HUB_OFFLINE" in p.stderr and len(e.state.requests) == n,
           "offline mode: no request, a clear error", p)
    # a stalled server
    e.reset()
    e.state.stall_after[DECODER + ":movq/diffusion_pytorch_model.safetensors"] = 100000
    p = e.run("models", "pull", "tiny-k22", REVERIE_HUB_TIMEOUT=1, timeout=60)
    expect(p.returncode == 1 and "stalled" in p.stderr and "resumes" in p.stderr,
           "a stalled server: the connection stalled, pull again", p)
    log("stall detected in %.1f s (timeout 1 s, 3 attempts)" % p.seconds)
    expect(not e.installed("tiny-k22"), "nothing installed after a stall")
    # a dropped connection is resumed within the same pull
    e.state.stall_after.clear()
    e.state.drop_after[PRIOR + ":text_encoder/model.safetensors"] = [3 * MiB + 123, 1]
    p = e.run("models", "pull", "tiny-k22")
    expect(p.returncode == 0 and e.installed("tiny-k22"), "a dropped connection resumes by itself", p)
    # an upscaler entry pulls like a set
    p = e.run("models", "pull", "tiny-upscaler")
    expect(p.returncode == 0 and os.path.exists(os.path.join(e.models, "tiny-upscaler", "config.json")),
           "an upscaler entry is pulled", p)


def check_big(e):
    e.reset()
    proc = e.start("models", "pull", "big", REVERIE_DEBUG_RSS=1)
    try:
        out, err = proc.communicate(timeout=400)
    finally:
        if proc.poll() is None:
            proc.kill()
    expect(proc.returncode == 0, "a %d-byte file downloads (%s)" % (BIG, err[-800:]))
    m = re.search(r"rss: start (\d+) KiB, peak (\d+) KiB", err)
    expect(m is not None, "the CLI reports its memory")
    start, peak = int(m.group(1)), int(m.group(2))
    t = re.search(r"\(([\d.]+) MB/s\)", out)
    log("%.2f GiB: RSS %d MiB at start, peak %d MiB (growth %d MiB); %s MB/s" % (
        BIG / 2**30, start >> 10, peak >> 10, (peak - start) >> 10, t.group(1) if t else "?"))
    expect(peak - start <= 64 * 1024, "RSS growth ≤ 64 MiB")
    path = os.path.join(e.models, "big", "weights.safetensors")
    expect(os.path.getsize(path) == BIG, "the whole file is there")
    p = e.run("models", "rm", "big")
    expect(p.returncode == 0, "removed", p)


CHECKS = [("models lists the catalogue; bad catalogues are refused", check_list),
          ("pull, verify, generate --model NAME, rm, --full-precision", check_pull_generate),
          ("kill -9 mid-download, then resume", check_kill_resume),
          ("a damaged byte is caught and fetched again, never installed", check_corrupt),
          ("disk full: before the first byte and while writing", check_disk_full),
          ("Ctrl-C leaves nothing installed and resumes", check_cancel),
          ("401, 404, refused, offline, stalled, dropped; upscaler entries", check_errors),
          ("a file over 2 GiB in flat memory", check_big)]


def main():
    tmp = tempfile.mkdtemp(prefix="reverie-hub-")
    cache = os.environ.get("REVERIE_HUB_CACHE", tmp)
    cfg = {"cache_dir": cache, "repos": [
        {"name": PRIOR, "folder": os.path.join(MODELS, "kandinsky-2-2-prior-tiny"),
         # a pickle beside the weights: listed, never fetched
         "files": [{"rfilename": "prior/diffusion_pytorch_model.bin", "text": "pickle"}]},
        {"name": DECODER, "folder": os.path.join(MODELS, "kandinsky-2-2-decoder-tiny"),
         "fp16_of": ["unet/diffusion_pytorch_model.safetensors"]},
        {"name": INPAINT, "folder": os.path.join(MODELS, "kandinsky-2-2-decoder-inpaint-tiny")},
        {"name": "reverie-test/gated", "token": TOKEN,
         "files": [{"rfilename": "weights.safetensors", "generated_size": 100000}]},
        {"name": "reverie-test/big", "files": [{"rfilename": "weights.safetensors", "generated_size": BIG}]},
        {"name": "reverie-test/upscaler",
         "folder": os.path.join(MODELS, "..", "..", "real-esrgan-tiny", "models", "srvgg_prelu_x4")},
    ]}
    t0 = time.monotonic()
    state = hub.state_from_config(cfg)
    log("stand-in ready in %.1f s" % (time.monotonic() - t0))
    srv = hub.HubServer(state).start()
    e = Env(tmp, state, srv.port)
    catalogue(e.cat)
    results = []
    try:
        for i, (name, fn) in enumerate(CHECKS, 1):
            if ONLY and fn.__name__[6:] not in ONLY:
                continue
            t0 = time.monotonic()
            try:
                fn(e)
                ok = True
            except AssertionError:
                ok = False
            except Exception as ex:   # a harness error is a failure too, with its cause
                log("%s: %s" % (type(ex).__name__, ex))
                ok = False
            results.append(ok)
            print("%sok %d - %s (%.1f s)" % ("" if ok else "not ", len(results), name,
                                              time.monotonic() - t0), flush=True)
    finally:
        srv.close()
    print("1..%d" % len(results))
    if all(results):
        shutil.rmtree(tmp, ignore_errors=True)
    else:
        log("kept for a look: " + tmp)
    return 0 if all(results) else 1


if __name__ == "__main__":
    sys.exit(main())
