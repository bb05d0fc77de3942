#!/usr/bin/python3
"""Crash safety: kill -9 during a generation and during a gallery write, then
start again. Every picture in the gallery folder is whole (no partial PNG is
ever left under a gallery name), and the studio, started again on that
folder, loads and shows exactly the whole pictures.

The writers: reverie-cli generating into the gallery folder, a helper that
saves pictures over one gallery file the way the studio does (killed at
random moments, mostly mid-write), and the studio itself, killed mid-job.
With the studio built (REVERIE_APP), its part runs under Xvfb, a private
D-Bus session and the accessibility bus, driven as tests/ui/test-studio.py
drives it. TAP output.

Usage: test-crash.py REVERIE_CLI WRITE_LOOP"""
import glob
import importlib.util
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from rvtest import SKIP, finish, log, model_args, model_dirs  # noqa: E402

CLI, WRITE_LOOP = sys.argv[1], sys.argv[2]
SESSION_FLAG = "REVERIE_CRASH_IN_SESSION"
results = []


def tap(ok, what):
    results.append(ok)
    print("%s %d - %s" % ("ok" if ok else "not ok", len(results), what), flush=True)
    return ok


def whole_png(path):
    """Decodes in full, and the chunks run to IEND."""
    from PIL import Image
    try:
        with open(path, "rb") as f:
            data = f.read()
        if not data.endswith(b"IEND\xaeB`\x82"):
            return False
        with Image.open(path) as img:
            img.load()
        return True
    except Exception:
        return False


def pictures(gallery):
    return sorted(glob.glob(os.path.join(gallery, "*.png")))


def kill_generation(model, gallery):
    """reverie-cli killed while its decoder runs: nothing under the name."""
    out = os.path.join(gallery, "reverie-killed-generation.png")
    p = subprocess.Popen([CLI, "generate", "a blue square", "-o", out, "--seed", "3", "--steps", "40",
                          "--prior-steps", "3", "--size", "64x64"] + model,
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    seen = b""
    end = time.monotonic() + 300
    while b"decoder" not in seen and time.monotonic() < end and p.poll() is None:
        seen += os.read(p.stderr.fileno(), 4096) or b""
    running = p.poll() is None
    p.send_signal(signal.SIGKILL)
    p.wait()
    tap(running and not os.path.exists(out), "kill -9 of reverie-cli mid-decoder leaves no file")


def kill_writes(gallery, tmp, rounds=8):
    """The writer killed at random moments: the gallery file is always one of
    the two whole pictures (or not there yet)."""
    target = os.path.join(gallery, "reverie-writer.png")
    refs = os.path.join(tmp, "refs", "writer.png")
    os.makedirs(os.path.dirname(refs))
    expected = None
    rng = random.Random(1234)
    outcomes = []
    for r in range(rounds):
        p = subprocess.Popen([WRITE_LOOP, target if r else refs, "768"], stdout=subprocess.PIPE)
        if p.stdout.readline().strip() != b"ready":
            p.wait()
            return tap(False, "the writer started")
        if r == 0:
            # the first round only makes the reference pictures
            p.kill()
            p.wait()
            expected = []
            for ext in (".a", ".b"):
                with open(refs + ext, "rb") as f:
                    expected.append(f.read())
            continue
        time.sleep(rng.uniform(0.05, 0.8))
        os.kill(p.pid, signal.SIGKILL)
        p.wait()
        writes = p.stdout.read().count(b"wrote")
        if os.path.exists(target):
            with open(target, "rb") as f:
                data = f.read()
            outcomes.append("A" if data == expected[0] else "B" if data == expected[1] else "PARTIAL")
        else:
            outcomes.append("none")
        outcomes[-1] += "(%d)" % writes
    leftovers = [n for n in os.listdir(gallery) if n.startswith("reverie-writer.png.")]
    log("writer rounds (kept picture, whole writes before the kill): %s; %d temporary files left "
        "by writes cut short" % (" ".join(outcomes), len(leftovers)))
    tap(not any(o.startswith("PARTIAL") for o in outcomes) and any(o[0] in "AB" for o in outcomes),
        "kill -9 mid-write: the gallery file is always a whole picture")


def generate(s, prompt):
    """Types a prompt into the studio's panel and presses Generate: the status label."""
    field = s.find("text", "Prompt", root=s.region("panel"))
    s.click(field)
    s.key("ctrl+a")
    s.type(prompt)
    s.press("push button", "Generate", "panel")
    return s.status_label()


def app_part(model, gallery, tmp, expected):
    """The studio: killed mid-job, started again, shows the whole pictures."""
    app = os.environ.get("REVERIE_APP")
    if not app or not os.path.exists(app):
        log("the studio is not built: its part is skipped")
        return
    try:
        import dogtail  # noqa: F401
    except ImportError:
        log("dogtail is missing: the studio part is skipped")
        return
    here = os.path.dirname(os.path.abspath(__file__))
    spec = importlib.util.spec_from_file_location("test_studio", os.path.join(here, "..", "ui", "test-studio.py"))
    studio = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(studio)
    artifacts = os.environ.get("REVERIE_HARDENING_ARTIFACTS") or os.path.join(tmp, "artifacts")
    shutil.rmtree(artifacts, ignore_errors=True)
    os.makedirs(artifacts)
    # '' is the embedded model; else a copy of the reference one (files, no links)
    app_model = ""
    if model[0] != "--model" or not os.path.abspath(model[1]).endswith(os.path.join("data", "models", "reverie-tiny")):
        app_model = os.path.join(tmp, "model")
        for name, src in zip(("prior", "decoder", "decoder-inpaint"), model_dirs(model)):
            shutil.copytree(src, os.path.join(app_model, name), symlinks=False)
    s = studio.Studio(tmp, artifacts, app_model)
    try:
        s.start_desktop()
        from dogtail.config import config  # as the ui suite sets it: no log lines on stdout (TAP)
        config.searchShowingOnly = False
        config.logDebugToFile = False
        config.logDebugToStdOut = False
        s.start_app()
        label = generate(s, "a green circle")
        studio.wait_until(lambda: "step" in (label.name or ""), 300, "the job's steps")
        s.app_proc.send_signal(signal.SIGKILL)
        s.app_proc.wait()
        tap(pictures(gallery) == expected, "kill -9 of the studio mid-job adds nothing to the gallery")

        s.start_app()
        s.click(s.find("page tab", "Gallery", root=s.region("header")))

        def shown():
            items = [i for i in s.find_all("image", match=r"^Picture: ", root=s.region("gallery"))
                     if s.extents(i)[2] > 0]
            return items if len(items) >= len(expected) else None

        try:
            items = studio.wait_until(shown, 60, "%d pictures in the gallery" % len(expected))
        except studio.Failure:
            items = []
        time.sleep(2)
        items = [i for i in s.find_all("image", match=r"^Picture: ", root=s.region("gallery"))
                 if s.extents(i)[2] > 0]
        s.screenshot("gallery-after-crashes")
        log("the studio shows: %s" % ", ".join(sorted(i.name for i in items)))
        tap(len(items) == len(expected), "started again, the studio shows the %d whole pictures (shows %d)"
            % (len(expected), len(items)))
        with open(os.path.join(artifacts, "reverie.log")) as f:
            broken = [l.strip() for l in f if "No thumbnail" in l]
        tap(not broken, "every picture shown has a thumbnail%s" % ("" if not broken else ": " + broken[0]))
        problems, _ = s.log_problems()
        tap(not problems, "the studio logged no warnings or criticals" + ("" if not problems else ": " + problems[0]))
        s.quit_app()
        tap(True, "the studio quits cleanly after the crashes")

        # a model folder whose weights are damaged: the job fails with a
        # message, the studio stays up
        damaged = os.path.join(tmp, "damaged-model")
        for name, src in zip(("prior", "decoder", "decoder-inpaint"), model_dirs(model)):
            shutil.copytree(src, os.path.join(damaged, name), symlinks=False)
        unet = os.path.join(damaged, "decoder", "unet")
        for name in os.listdir(unet):
            if name.endswith(".safetensors"):
                with open(os.path.join(unet, name), "r+b") as f:
                    f.truncate(os.path.getsize(os.path.join(unet, name)) // 2)
        keyfile = os.path.join(tmp, "config", "glib-2.0", "settings", "keyfile")
        with open(keyfile) as f:
            text = f.read()
        with open(keyfile, "w") as f:
            f.write(re.sub(r"(?m)^model=.*$", "model='%s'" % damaged,
                           re.sub(r"(?m)^model-folders=.*$", "model-folders=['%s']" % damaged, text)))
        s.start_app()
        label = generate(s, "a damaged model")
        studio.wait_until(lambda: re.match(r"(Failed|Done|Cancelled)", label.name or ""), 300,
                          "the job to end")
        s.screenshot("damaged-model")
        tap((label.name or "").startswith("Failed") and s.app_proc.poll() is None,
            "a damaged model folder fails the job, the studio stays up (“%s”)" % label.name)
        # the message says what went wrong; close it
        dialogs = studio.wait_until(lambda: [w for w in s.app.children if w.roleName != "frame"], 30,
                                    "the message")
        text = " ".join(l.name for l in s.find_all("label", root=dialogs[0]))
        log("the message: %s" % text)
        tap("safetensors" in text, "the message names the damaged file")
        s.press_in(dialogs[0], "push button", r"(^|\s)_?Close$")
        studio.wait_until(lambda: not [w for w in s.app.children if w.roleName != "frame"], 30,
                          "the message to close")
        s.quit_app()
        tap(True, "the studio quits cleanly after the failed job")
    except Exception as e:
        tap(False, "the studio part: %s" % e)
    finally:
        s.kill_app()
        s.stop_desktop()


def main():
    if os.environ.get("REVERIE_APP") and os.environ.get(SESSION_FLAG) != "1" and shutil.which("dbus-run-session"):
        env = dict(os.environ, **{SESSION_FLAG: "1"})
        os.execvpe("dbus-run-session", ["dbus-run-session", "--", sys.executable,
                                        os.path.abspath(__file__)] + sys.argv[1:], env)
    model = model_args()
    if model is None:
        print("1..0 # SKIP no model: neither data/models/reverie-tiny nor tests/reference/kandinsky-2-2-tiny/models")
        return SKIP
    tmp = tempfile.mkdtemp(prefix="reverie-crash-")
    gallery = os.path.join(tmp, "data", "reverie", "gallery")
    os.makedirs(gallery)
    for seed in (1, 2):
        out = os.path.join(gallery, "reverie-20250101-00000%d-%d.png" % (seed, seed))
        subprocess.run([CLI, "generate", "a red circle", "-o", out, "--seed", str(seed), "--steps", "3",
                        "--prior-steps", "3", "-q"] + model, check=True, timeout=600,
                       stdout=subprocess.DEVNULL)
    kill_generation(model, gallery)
    kill_writes(gallery, tmp)
    whole = [p for p in pictures(gallery) if whole_png(p)]
    tap(whole == pictures(gallery) and len(whole) >= 3,
        "every *.png in the gallery folder is whole (%d pictures)" % len(whole))
    app_part(model, gallery, tmp, whole)
    return finish(results, tmp)


if __name__ == "__main__":
    sys.exit(main())
