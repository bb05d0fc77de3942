#!/usr/bin/python3
"""The studio driven like a user (meson suite ui), with TAP output.

Starts a private D-Bus session (dbus-run-session), Xvfb, the accessibility bus
and the real `reverie` with temporary XDG folders and a keyfile GSettings
backend, then finds widgets through the accessibility tree (dogtail / pyatspi)
by their accessible names and drives them with real pointer and keyboard
events (xdotool): type a prompt, generate and watch the previews, find the
result in the gallery and reuse its seed, paint a mask and edit, open a
picture and make variations, cancel mid-run, choose an upscaler, generate at
a size beyond the model's own (through the upscaler) and upscale pictures
from the canvas and the gallery, delete with undo, restart, extend a picture
by dragging its edges (outpainting) with undo, and refuse prompts under a
content policy, and download a model set from a local stand-in Hub and use
it. Screenshots
of each state go to the artifacts folder.

Environment (set by tests/ui/meson.build):
  REVERIE_APP            the reverie binary
  GSETTINGS_SCHEMA_DIR   the build's compiled schemas
  REVERIE_SOURCE_ROOT    the source tree (for the embedded model)
  REVERIE_REFERENCE_DIR  the reference set (its tiny models, when the embedded one is absent)
  REVERIE_UI_ARTIFACTS   where screenshots and logs go
  REVERIE_UI_MODELS      where a copy of the golden models is kept between runs
  REVERIE_UI_ONLY        (optional) the numbers of the scenarios to run, e.g. "1,11,12";
                         later ones may need what earlier ones made
"""
import base64
import glob
import hashlib
import io
import json
import os
import re
import shutil
import struct
import subprocess
import sys
import tempfile
import time
import traceback
import zlib

SESSION_FLAG = "REVERIE_UI_IN_SESSION"
WIDTH, HEIGHT = 1280, 860
STEPS = 8       # the golden models' steps (random weights: few are as good as many)
PROMPT = "a red circle on a blue background"
APP_ID_SCHEMA = "io.github.reverie.Reverie"


def log(msg):
    for line in str(msg).splitlines():
        print("# " + line, flush=True)


class Failure(Exception):
    pass


def check(cond, msg):
    if not cond:
        raise Failure(msg)


def wait_until(fn, timeout, what, interval=0.1):
    end = time.monotonic() + timeout
    while True:
        value = fn()
        if value:
            return value
        if time.monotonic() > end:
            raise Failure(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)


# ---- PNG files: text chunks (the recipe) without decoding pixels ----

def png_text(path):
    out = {}
    with open(path, "rb") as f:
        data = f.read()
    check(data[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG")
    pos = 8
    while pos + 8 <= len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + length]
        pos += 12 + length
        if kind == b"tEXt":
            k, v = body.split(b"\0", 1)
            out[k.decode("latin-1")] = v.decode("latin-1")
        elif kind == b"zTXt":
            k, rest = body.split(b"\0", 1)
            out[k.decode("latin-1")] = zlib.decompress(rest[1:]).decode("latin-1")
        elif kind == b"iTXt":
            k, rest = body.split(b"\0", 1)
            compressed, _method = rest[0], rest[1]
            _lang, _tkey, text = rest[2:].split(b"\0", 2)
            out[k.decode("utf-8")] = (zlib.decompress(text) if compressed else text).decode("utf-8")
        elif kind == b"IEND":
            break
    return out


def recipe(path):
    t = png_text(path)
    return {k[len("reverie:"):]: v for k, v in t.items() if k.startswith("reverie:")}


def image_sha256(img):
    """The engine's rv_image_sha256: (width, height, channels) as int32, then the pixels."""
    img = img.convert("RGB")
    w, h = img.size
    return hashlib.sha256(struct.pack("<3i", w, h, 3) + img.tobytes()).hexdigest()


# ---- the session ----

class Studio:
    def __init__(self, tmp, artifacts, model_dir):
        self.tmp = tmp
        self.artifacts = artifacts
        self.model_dir = model_dir
        self.app_proc = None
        self.app = None
        self.shots = 0
        self.env = dict(os.environ)
        for sub in ("data", "config", "runtime"):
            os.makedirs(os.path.join(tmp, sub), mode=0o700, exist_ok=True)
        self.env.update({
            "XDG_DATA_HOME": os.path.join(tmp, "data"),
            "XDG_CONFIG_HOME": os.path.join(tmp, "config"),
            "XDG_RUNTIME_DIR": os.path.join(tmp, "runtime"),
            "GSETTINGS_BACKEND": "keyfile",
            "LANG": "C.UTF-8",
            "LANGUAGE": "",
            "GTK_A11Y": "atspi",
            "GSK_RENDERER": "cairo",
            "G_MESSAGES_DEBUG": "Reverie",
        })
        self.app_env = dict(self.env)
        self.gallery = os.path.join(tmp, "data", "reverie", "gallery")

    # -- the desktop: Xvfb, settings, the accessibility bus --

    def start_desktop(self):
        r, w = os.pipe()
        self.xvfb = subprocess.Popen(
            ["Xvfb", "-displayfd", str(w), "-screen", "0", f"{WIDTH}x{HEIGHT}x24", "-nolisten", "tcp"],
            pass_fds=(w,), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        os.close(w)
        # Xvfb writes the number when it is ready; the pipe stays open while
        # it runs (it fails if the reading end goes away)
        self.displayfd = r
        number = os.read(r, 16).decode().strip()
        check(number, "Xvfb did not start")
        self.env["DISPLAY"] = ":" + number
        os.environ.update(self.env)
        self.app_env["DISPLAY"] = self.env["DISPLAY"]
        keyfile = os.path.join(self.tmp, "config", "glib-2.0", "settings", "keyfile")
        os.makedirs(os.path.dirname(keyfile), exist_ok=True)
        model = self.model_dir or ""
        with open(keyfile, "w") as f:
            f.write("[org/gnome/desktop/interface]\ntoolkit-accessibility=true\n\n"
                    "[io/github/reverie/Reverie]\n"
                    f"window-width={WIDTH}\nwindow-height={HEIGHT - 40}\n"
                    "default-steps=0\n"
                    f"model='{model}'\n"
                    f"model-folders={[model] if model else []}\n")
        self.atspi = subprocess.Popen(["/usr/libexec/at-spi-bus-launcher", "--launch-immediately"],
                                      env=self.env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(1)

    def stop_desktop(self):
        for p in (getattr(self, "atspi", None), getattr(self, "xvfb", None)):
            if p is not None and p.poll() is None:
                p.terminate()
                try:
                    p.wait(10)
                except subprocess.TimeoutExpired:
                    p.kill()
        if getattr(self, "displayfd", None) is not None:
            os.close(self.displayfd)
            self.displayfd = None

    # -- the app --

    def start_app(self):
        from dogtail import tree
        self.app_log = open(os.path.join(self.artifacts, "reverie.log"), "a")
        self.app_log.write(f"---- start {time.strftime('%H:%M:%S')}\n")
        self.app_log.flush()
        wrapper = os.environ.get("REVERIE_UI_WRAPPER", "").split()
        self.app_proc = subprocess.Popen(wrapper + [os.environ["REVERIE_APP"]], env=self.app_env, cwd=self.tmp,
                                         stdout=self.app_log, stderr=subprocess.STDOUT)

        def find_app():
            check(self.app_proc.poll() is None, "the app exited at start; see reverie.log")
            try:
                for a in tree.root.applications():
                    if a.name == "reverie" and a.children:
                        return a
            except Exception:
                return None
            return None

        self.app = wait_until(find_app, 180, "the studio window")
        self._regions = {}
        self.frame = wait_until(lambda: [w for w in self.app.children if w.roleName == "frame"], 60,
                                "the window")[0]
        self.wait_idle()

    def quit_app(self):
        self.key("ctrl+q")
        try:
            self.app_proc.wait(60)
        except subprocess.TimeoutExpired:
            self.app_proc.kill()
            raise Failure("the app did not quit on Ctrl+Q")
        check(self.app_proc.returncode == 0, f"the app exited with {self.app_proc.returncode}")
        self.app = None

    def kill_app(self):
        if self.app_proc is not None and self.app_proc.poll() is None:
            self.app_proc.terminate()
            try:
                self.app_proc.wait(20)
            except subprocess.TimeoutExpired:
                self.app_proc.kill()

    def close_strays(self):
        """After a failed scenario: close the windows it left open (a dialog
        left open would fail the scenarios after it too)."""
        main = self.frame.name
        for _ in range(3):
            extra = [w.name for w in self.app.children
                     if w.name != main and self.extents(w)[2] > 0]
            if not extra:
                return
            print(f"closing what the failed scenario left open: {extra}", file=sys.stderr, flush=True)
            self.key("Escape")
            time.sleep(1.0)

    def wait_idle(self):
        time.sleep(0.5)

    # -- the accessibility tree --

    @staticmethod
    def _walk(node, depth=0):
        yield node
        if depth > 60:
            return
        try:
            kids = list(node.children)
        except Exception:
            kids = []
        for k in kids:
            yield from Studio._walk(k, depth + 1)

    REGIONS = {   # key: (inside, role, name)
        "panel": (None, "filler", "RvPromptPanel"),
        "editor": (None, "filler", "RvEditor"),
        "gallery": (None, "filler", "RvGallery"),
        "overlay": ("editor", "filler", "GtkOverlay"),   # the canvas, zoom and progress
    }

    def region(self, key):
        """A part of the window, found once (breadth first: they sit high in the tree)."""
        if key in self._regions:
            return self._regions[key]
        if key == "header":
            # the header bar: the first row of the window's content
            node = self.frame
            for _ in range(4):
                node = node.children[0]
            self._regions[key] = node
            return node
        inside, role, name = self.REGIONS[key]
        top = self.region(inside) if inside else self.frame

        def bfs():
            queue = [top]
            while queue:
                n = queue.pop(0)
                try:
                    if n.roleName == role and n.name == name:
                        return n
                    queue.extend(n.children)
                except Exception:
                    continue
            return None

        self._regions[key] = wait_until(bfs, 60, f"the {key}")
        return self._regions[key]

    def find_all(self, role, name=None, root=None, match=None):
        out = []
        for n in self._walk(root or self.app):
            try:
                if role is not None and n.roleName != role:
                    continue
                nm = n.name
            except Exception:
                continue
            if (name is None or nm == name) and (match is None or re.search(match, nm)):
                out.append(n)
        return out

    def find(self, role, name=None, root=None, match=None, timeout=20, interval=0.3):
        def look():
            found = [n for n in self.find_all(role, name, root, match) if self.extents(n)[2] > 0]
            return found[0] if found else None
        return wait_until(look, timeout, f"{role} “{name or match}”", interval=interval)

    @staticmethod
    def extents(node):
        import pyatspi
        try:
            e = node.queryComponent().getExtents(pyatspi.WINDOW_COORDS)
            return e.x, e.y, e.width, e.height
        except Exception:
            return 0, 0, 0, 0

    @staticmethod
    def sensitive(node):
        import pyatspi
        return node.getState().contains(pyatspi.STATE_SENSITIVE)

    def center(self, node):
        x, y, w, h = self.extents(node)
        check(w > 0 and h > 0, f"{node.roleName} “{node.name}” is not on screen")
        return x + w // 2, y + h // 2

    # -- input --

    def xdotool(self, *args):
        subprocess.run(["xdotool", *map(str, args)], env=self.env, check=True)

    def click(self, node):
        x, y = self.center(node)
        self.xdotool("mousemove", x, y, "click", 1)
        time.sleep(0.3)

    def press(self, role, name, region, timeout=60):
        """Clicks a button once it is enabled."""
        node = self.find(role, name, root=self.region(region))
        wait_until(lambda: self.sensitive(node), timeout, f"“{name}” to be enabled")
        self.click(node)
        return node

    def press_in(self, root, role, match):
        node = self.find(role, root=root, match=match)
        self.click(node)

    def key(self, *keys):
        self.xdotool("key", "--delay", 60, *keys)
        time.sleep(0.2)

    def type(self, text):
        self.xdotool("type", "--delay", 40, text)
        time.sleep(0.2)

    # -- what the app shows and writes --

    def screenshot(self, name):
        self.shots += 1
        path = os.path.join(self.artifacts, f"{self.shots:02d}-{name}.png")
        subprocess.run(["import", "-window", "root", path], env=self.env, check=True)
        return path

    def grab(self, node):
        """The pixels of a widget, now (straight from the X server: fast)."""
        from PIL import ImageGrab
        x, y, w, h = self.extents(node)
        return ImageGrab.grab(bbox=(x, y, x + w, y + h), xdisplay=self.env["DISPLAY"]).convert("RGB")

    def gallery_files(self):
        return sorted(glob.glob(os.path.join(self.gallery, "*.png")))

    STATUS = (r"(step \d+ of \d+|tile \d+ of \d+|Done in|pictures? in|Loading|Reading|Finishing|Starting|"
              r"Cancelled|Failed)")

    def status_label(self):
        return self.find("label", root=self.region("overlay"), match=self.STATUS, timeout=120, interval=0.05)

    def run_job(self, start, timeout=900, watch_previews=False):
        """Starts a job with start(), follows its status label to the end, and
        returns (the final status, the preview steps the canvas announced, two
        grabs of the canvas at different steps, the new gallery files); the
        statuses seen on the way are kept in self.seen."""
        before = set(self.gallery_files())
        canvas = None
        if watch_previews:
            canvas = self.find_all("image", "Canvas", root=self.region("overlay"))[0]
        try:
            stale = self.find_all("label", root=self.region("overlay"), match=self.STATUS)[0].name
        except Exception:
            stale = None
        start()
        label = self.status_label()
        previews, grabs = [], []
        self.seen = []
        end = time.monotonic() + timeout
        started = time.monotonic()
        while True:
            try:
                text = label.name
                described = canvas.description if canvas is not None else ""
            except Exception:
                text, described = "", ""
            if text and (not self.seen or self.seen[-1] != text):
                self.seen.append(text)
            m = re.match(r"Preview at step (\d+) of (\d+)", described or "")
            if m and int(m.group(1)) not in previews:
                previews.append(int(m.group(1)))
                # two grabs a few steps apart, from the second preview on (a grab
                # is slow: taken at the first, it can outlast a short job); each
                # counts if the job was still painting when it was done
                if len(previews) >= 2 and len(grabs) < 2 and (not grabs or previews[-1] >= grabs[-1][0] + 2):
                    picture = self.grab(canvas)
                    if "Painting" in (label.name or ""):
                        grabs.append((previews[-1], picture))
            if re.match(r"(Done in|\d+ pictures? in|Failed|Cancelled)", text):
                # the outcome of the job before stays shown a few seconds: an
                # unchanged one ends the wait only once this job has written
                # its pictures, or after long enough to have replaced it
                if (text != stale or set(self.gallery_files()) - before
                        or time.monotonic() - started > 30):
                    break
            else:
                stale = None
            check(time.monotonic() < end, f"the job did not finish in {timeout} s (status “{text}”)")
            check(self.app_proc.poll() is None, "the app exited during a job; see reverie.log")
            time.sleep(0.02)
        new = sorted(set(self.gallery_files()) - before)
        return text, previews, grabs, new

    # GTK 4.8's AT-SPI code asks for an object path of a widget going away when
    # a dialog closes while the tree is read; nothing of the app's own
    KNOWN = ("g_variant_is_object_path: assertion 'string != NULL' failed",
             "Screen coordinates not supported")

    def log_problems(self):
        """Warnings and criticals the app logged, but for GTK's known ones."""
        with open(os.path.join(self.artifacts, "reverie.log")) as f:
            lines = [l.strip() for l in f if re.search(r"-(WARNING|CRITICAL|ERROR) \*\*", l)]
        known = [l for l in lines if any(k in l for k in self.KNOWN)]
        return [l for l in lines if l not in known], known

    def frame_times(self):
        with open(os.path.join(self.artifacts, "reverie.log")) as f:
            return [line.split("Reverie-DEBUG: ", 1)[1].strip()
                    for line in f if "frame times during the job" in line]


# ---- scenarios ----

def scenario_generate(s, state):
    """Type a prompt, press Generate, see the preview change step by step."""
    prompt = s.find("text", "Prompt", root=s.region("panel"))
    s.click(prompt)
    s.key("ctrl+a")
    s.type(PROMPT)
    s.screenshot("prompt")
    status, previews, grabs, new = s.run_job(lambda: s.press("push button", "Generate", "panel"),
                                              watch_previews=True)
    s.screenshot("generated")
    log(f"status: {status}; the canvas showed the previews of steps {previews}")
    check(status.startswith("Done in"), f"the job ended with “{status}”")
    check(len(previews) >= 2, f"the canvas showed a preview only at steps {previews}")
    # the canvas itself changed between two previews, or from a preview to the result
    canvas = s.find_all("image", "Canvas", root=s.region("overlay"))[0]
    grabs = grabs[:2] if len(grabs) == 2 else grabs + [("result", s.grab(canvas))]
    for step, grab in grabs:
        grab.save(os.path.join(s.artifacts, f"canvas-{step}.png"))
    if len(grabs) >= 2:
        check(grabs[0][1].tobytes() != grabs[1][1].tobytes(),
              f"the canvas looked the same at step {grabs[0][0]} and at {grabs[1][0]}")
        log(f"the canvas pictures at step {grabs[0][0]} and at {grabs[1][0]} differ")
    else:
        log("the previews came and went before a screen grab could finish; only the announced steps count")
    check(len(new) == 1, f"expected one new gallery file, found {new}")
    r = recipe(new[0])
    check(r.get("kind") == "generate" and r.get("prompt") == PROMPT, f"recipe {r}")
    check(r.get("decoder_steps") == str(state["model_steps"]),
          f"decoder steps in the recipe: {r.get('decoder_steps')}, the model's: {state['model_steps']}")
    state["first"] = new[0]


def scenario_gallery_reuse_seed(s, state):
    """Find the result in the gallery, reuse its seed: the next picture is the same."""
    first = state["first"]
    seed = recipe(first)["seed"]
    s.click(s.find("page tab", "Gallery", root=s.region("header")))
    item = s.find("image", match=r"^Picture: " + re.escape(PROMPT) + r", seed " + seed + "$",
                  root=s.region("gallery"), timeout=30)
    s.click(item)
    s.press("push button", "Reuse seed", "gallery")
    s.screenshot("gallery-selected")
    status, _, _, new = s.run_job(lambda: s.press("push button", "Generate", "panel"))
    check(status.startswith("Done in"), f"the job ended with “{status}”")
    check(len(new) == 1, f"expected one new gallery file, found {new}")
    r = recipe(new[0])
    check(r["seed"] == seed, f"reused seed {seed}, the new picture has {r['seed']}")
    from PIL import Image
    a, b = Image.open(first).convert("RGB"), Image.open(new[0]).convert("RGB")
    check(a.tobytes() == b.tobytes(), "same prompt, seed and settings gave a different picture")
    log(f"seed {seed} reused: identical picture")
    state["second"] = new[0]


def scenario_mask_edit(s, state):
    """Paint a mask with real pointer strokes, then Edit (inpainting)."""
    canvas = s.find("image", "Canvas", root=s.region("editor"))
    before = s.grab(canvas)
    s.press("push button", "Mask brush", "editor")
    x, y, w, h = s.extents(canvas)
    cy = y + h // 2
    s.xdotool("mousemove", x + int(w * 0.40), cy)
    s.xdotool("mousedown", 1)
    for i in range(1, 21):
        s.xdotool("mousemove", x + int(w * (0.40 + 0.01 * i)), cy + (i % 3) - 1)
        time.sleep(0.02)
    s.xdotool("mouseup", 1)
    time.sleep(0.5)
    s.screenshot("mask")
    after = s.grab(canvas)
    # along the stroke only (the status card below may come and go)
    band = (int(w * 0.42), h // 2 - 6, int(w * 0.58), h // 2 + 6)
    changed = sum(1 for p, q in zip(before.crop(band).getdata(), after.crop(band).getdata()) if p != q)
    log(f"{changed} of {(band[2] - band[0]) * (band[3] - band[1])} canvas pixels along the stroke changed")
    check(changed > (band[2] - band[0]) * (band[3] - band[1]) // 2, "the mask overlay does not show the stroke")

    status, _, _, new = s.run_job(lambda: s.press("push button", "Edit", "editor"))
    s.screenshot("edited")
    check(status.startswith("Done in"), f"the edit ended with “{status}”")
    check(len(new) == 1, f"expected one new gallery file, found {new}")
    r = recipe(new[0])
    check(r.get("kind") == "inpaint", f"recipe kind {r.get('kind')}")
    from PIL import Image
    mask = Image.open(io.BytesIO(base64.b64decode(r["mask_png_base64"]))).convert("L")
    mw, mh = mask.size
    on = mask.getpixel((mw // 2, mh // 2))
    corners = [mask.getpixel(p) for p in ((0, 0), (mw - 1, 0), (0, mh - 1), (mw - 1, mh - 1), (mw // 2, 2))]
    log(f"mask {mw}x{mh}: centre {on}, corners and top {corners}")
    check(on == 255 and max(corners) == 0, "the mask in the recipe is not the stroke that was painted")
    s.press("push button", "Mask brush", "editor")   # brush off again


def scenario_open_variations(s, state):
    """Open a picture with the file chooser, then make variations of it."""
    from PIL import Image, ImageDraw
    path = os.path.join(s.tmp, "source.png")
    img = Image.new("RGB", (64, 64), (40, 80, 220))
    ImageDraw.Draw(img).ellipse((16, 16, 48, 48), fill=(220, 40, 40))
    img.save(path)
    s.press("push button", "Open picture", "header")

    def chooser():
        return [w for w in s.app.children if w.name == "Open a Picture"]

    wait_until(chooser, 30, "the file chooser")
    time.sleep(1.0)
    s.key("ctrl+l")
    s.type(path)
    s.key("Return")
    wait_until(lambda: not chooser(), 30, "the file chooser to close")
    time.sleep(1.0)
    s.screenshot("opened")
    status, _, _, new = s.run_job(lambda: s.press("push button", "Variations", "editor"))
    s.screenshot("variations")
    check(status.startswith("Done in"), f"the variations ended with “{status}”")
    check(len(new) >= 1, "no variation in the gallery")
    r = recipe(new[0])
    check(r.get("kind") == "variation", f"recipe kind {r.get('kind')}")
    check(r.get("source_sha256") == image_sha256(img),
          "the variation was not made from the opened picture")
    log(f"variation of {os.path.basename(path)}: {os.path.basename(new[0])}")
    state["variation"] = new[0]


def scenario_cancel(s, state):
    """A long run stops within a step of Escape, and leaves nothing behind."""
    steps_spin = s.find("spin button", "Steps", root=s.region("panel"))
    x, y, w, h = s.extents(steps_spin)
    s.xdotool("mousemove", x + 12, y + h // 2, "click", 1)   # the text, not the − and + buttons
    s.key("ctrl+a")
    s.type("400")
    s.key("Tab")
    before = set(s.gallery_files())
    s.press("push button", "Generate", "panel")
    label = s.status_label()

    def running():
        text = label.name or ""
        check(not re.match(r"(Done in|Failed)", text), f"the long job ended before it was cancelled: {text}")
        return re.search(r"Painting · step ([2-9]|\d\d+) of 400", text)

    wait_until(running, 600, "the second painting step")
    s.screenshot("running")
    t0 = time.monotonic()
    s.key("Escape")
    wait_until(lambda: (label.name or "").startswith("Cancelled"), 60, "the job to stop")
    latency = time.monotonic() - t0
    s.screenshot("cancelled")
    log(f"cancelled {latency:.2f} s after Escape")
    check(set(s.gallery_files()) == before, "a cancelled job left a picture in the gallery")
    check(s.sensitive(s.find("push button", "Generate", root=s.region("panel"))),
          "Generate is not enabled after cancelling")
    s.xdotool("mousemove", x + 12, y + h // 2, "click", 1)
    s.key("ctrl+a")
    s.type("0")   # Auto: the model's steps
    s.key("Tab")
    state["cancel_latency"] = latency


def scenario_invalid_model(s, state):
    """Adding a folder that is not a model set says what is wrong and what to do."""
    folder = os.path.join(s.tmp, "not-a-model")
    os.makedirs(folder)
    with open(os.path.join(folder, "notes.txt"), "w") as f:
        f.write("not a model\n")
    s.press("push button", "Add model folder", "panel")

    def top(name):
        return [w for w in s.app.children if w.name == name]

    wait_until(lambda: top("Choose a Model Folder"), 30, "the folder chooser")
    time.sleep(1.0)
    s.key("ctrl+l")
    s.type(folder + "/")
    s.key("Return")
    dialog = wait_until(lambda: top("This Folder Is Not a Model Set"), 60, "the message")[0]
    text = " ".join(l.name for l in s.find_all("label", root=dialog))
    s.screenshot("invalid-model")
    log(text)
    check("prior" in text and "decoder" in text and folder in text,
          "the message does not say which folders a model set needs")
    s.press_in(dialog, "push button", r"(^|\s)_?Close$")
    wait_until(lambda: not top("This Folder Is Not a Model Set"), 30, "the message to close")


def scenario_windows(s, state):
    """Preferences list the Vulkan devices and turn live previews off; the
    shortcuts and about windows open."""
    def top(name):
        return [w for w in s.app.children if w.name == name and s.extents(w)[2] > 0]

    def devices_shown():
        return [l.name for l in s.find_all("label", root=s.app)
                if re.search(r"llvmpipe|lavapipe|GPU|NVIDIA|AMD|Intel", l.name or "") and s.extents(l)[2] > 0]

    s.key("ctrl+comma")
    prefs = wait_until(lambda: top("Preferences"), 60, "the preferences window")[0]
    device = s.find("combo box", "Vulkan device", root=prefs, timeout=30)
    time.sleep(1.0)   # a window that has just appeared may not take a click yet
    # the devices are listed by a thread, and a window that has just appeared
    # can miss a click: until a device is shown, click the row again
    found = None
    for attempt in range(4):
        s.click(device)
        try:
            found = wait_until(devices_shown, 15, "the list of devices")
            break
        except Failure:
            # a click while the list is open closes it; the next opens it again
            log(f"no device shown {15 * (attempt + 1)} s after clicking the device row")
    check(found, "the preferences list no Vulkan device")
    log(f"devices: {found}")
    s.key("Escape")
    s.screenshot("preferences")
    switch = s.find(None, "Live previews", root=prefs, timeout=10)
    s.click(switch)
    s.key("Escape")
    wait_until(lambda: not top("Preferences"), 30, "the preferences to close")

    # without previews, the canvas announces none, but the picture comes
    status, previews, _, new = s.run_job(lambda: s.press("push button", "Generate", "panel"),
                                         watch_previews=True)
    check(status.startswith("Done in") and len(new) == 1, f"the job ended with “{status}”")
    check(not previews, f"previews were shown with live previews off: {previews}")
    state["no-previews"] = new[0]

    s.key("ctrl+comma")
    prefs = wait_until(lambda: top("Preferences"), 60, "the preferences window")[0]
    s.click(s.find(None, "Live previews", root=prefs, timeout=10))
    s.key("Escape")
    wait_until(lambda: not top("Preferences"), 30, "the preferences to close")

    s.key("ctrl+question")
    wait_until(lambda: top("Keyboard Shortcuts"), 30, "the shortcuts window")
    s.screenshot("shortcuts")
    s.key("Escape")
    wait_until(lambda: not top("Keyboard Shortcuts"), 30, "the shortcuts window to close")


def scenario_delete_undo(s, state):
    """Delete to the trash with an Undo toast."""
    s.click(s.find("page tab", "Gallery", root=s.region("header")))
    target = state["variation"]
    name = r"^Picture: Variation, seed " + recipe(target)["seed"] + "$"
    s.click(s.find("image", match=name, root=s.region("gallery"), timeout=10))
    s.press("push button", "Delete picture", "gallery")
    # the toast's button (GTK 4.8 names it after its label, mnemonic and all)
    undo = s.find("push button", match=r"(^|\s)_?Undo$", root=s.region("gallery"), timeout=10)
    s.screenshot("deleted-toast")
    s.click(undo)
    s.click(s.find("image", match=name, root=s.region("gallery"), timeout=10))
    check(os.path.exists(target), "Undo did not keep the picture")
    trash = os.path.join(s.tmp, "data", "Trash", "files")
    check(not os.path.exists(os.path.join(trash, os.path.basename(target))), "undone, yet in the trash")
    s.press("push button", "Delete picture", "gallery")
    s.find("push button", match=r"(^|\s)_?Undo$", root=s.region("gallery"), timeout=10)
    s.xdotool("mousemove", 10, HEIGHT - 60)   # off the toast: hovering keeps it
    # the file goes when the toast does
    wait_until(lambda: not os.path.exists(target), 60, "the picture to go to the trash")
    check(os.path.exists(os.path.join(trash, os.path.basename(target))), "the picture is not in the trash")
    check(not s.find_all("image", match=name, root=s.region("gallery")), "the deleted picture is still shown")
    state["deleted"] = target


def scenario_copy_save(s, state):
    """Copy a picture to the clipboard and save a copy elsewhere, recipe and all."""
    s.click(s.find("page tab", "Gallery", root=s.region("header")))
    s.click(s.find("image", match=r"^Picture: ", root=s.region("gallery"), timeout=10))
    s.press("push button", "Copy picture", "gallery")
    s.find("label", "Picture copied", root=s.region("gallery"), timeout=30)
    s.press("push button", "Save picture as", "gallery")

    def chooser():
        return [w for w in s.app.children if w.name == "Save Picture As"]

    wait_until(chooser, 30, "the save dialog")
    time.sleep(1.0)
    dest = os.path.join(s.tmp, "saved copy.png")
    s.key("ctrl+a")
    s.type(dest)
    s.key("Return")
    wait_until(lambda: os.path.exists(dest), 30, "the saved copy")
    selected = [f for f in s.gallery_files() if recipe(f) == recipe(dest)]
    check(selected, "the saved copy does not carry the recipe of a gallery picture")
    log(f"saved {os.path.basename(selected[0])} as {os.path.basename(dest)}")


def scenario_restart(s, state):
    """The gallery comes back after a restart, newest first."""
    s.quit_app()
    s.start_app()
    s.click(s.find("page tab", "Gallery", root=s.region("header")))
    files = s.gallery_files()

    def shown():
        items = [i for i in s.find_all("image", match=r"^Picture: ", root=s.region("gallery"))
                 if s.extents(i)[2] > 0]
        return items if len(items) == len(files) else None

    items = wait_until(shown, 30, f"{len(files)} pictures in the gallery")
    time.sleep(1)
    s.screenshot("gallery-restarted")
    order = [i.name for i in sorted(items, key=lambda i: (s.extents(i)[1], s.extents(i)[0]))]
    newest = recipe(max(files, key=lambda f: (int(recipe(f).get("created", 0)), f)))
    title = newest.get("prompt") or "Variation"
    check(order[0] == f"Picture: {title}, seed {newest['seed']}", f"the first thumbnail is not the newest picture: {order}")
    check(state.get("deleted") not in files and not any(n.startswith("Picture: Variation") for n in order),
          "a deleted picture came back")
    log(f"{len(files)} pictures after the restart, newest first")

    # search by prompt
    search = s.find(None, "Search gallery", root=s.region("gallery"))
    s.click(search)
    s.type("no such picture")
    wait_until(lambda: not [i for i in s.find_all("image", match=r"^Picture: ", root=s.region("gallery"))
                            if s.extents(i)[2] > 0], 10, "the search to hide every picture")
    s.key("ctrl+a")
    s.type("red circle")
    wait_until(shown, 10, "the search to show the matching pictures")
    s.screenshot("gallery-search")


# ---- upscaling ----

def top_windows(s, name):
    return [w for w in s.app.children if w.name == name and s.extents(w)[2] > 0]


UPSCALER_ROW = r"( · ×\d+ · |^None: |^Not in use: |^Checking)"


def upscaler_shown(s, prefs):
    """What the Upscaler row of the preferences says, once it is not checking."""
    names = [l.name for l in s.find_all("label", root=prefs, match=UPSCALER_ROW) if s.extents(l)[2] > 0]
    return names[0] if names and not names[0].startswith("Checking") else None


def setting(s, key):
    """A key as the app wrote it to the keyfile backend (None when unset)."""
    path = os.path.join(s.tmp, "config", "glib-2.0", "settings", "keyfile")
    with open(path) as f:
        for line in f:
            if line.startswith(key + "="):
                return line.split("=", 1)[1].strip()
    return None


def choose_folder(s, title, folder):
    wait_until(lambda: top_windows(s, title), 30, "the folder chooser")
    time.sleep(1.0)
    s.key("ctrl+l")
    s.type(folder + "/")
    s.key("Return")


def open_preferences(s):
    s.key("ctrl+comma")
    return wait_until(lambda: top_windows(s, "Preferences"), 60, "the preferences window")[0]


def close_preferences(s):
    s.key("Escape")
    wait_until(lambda: not top_windows(s, "Preferences"), 30, "the preferences to close")


def scenario_upscaler(s, state):
    """Without an upscaler, Upscale says what to do; a folder that is not an
    upscaler is refused and not kept; a Real-ESRGAN folder is shown with its
    name and scale (the reference ×4 network when the embedded model has no
    upscaler of its own)."""
    prefs = open_preferences(s)
    s.find(None, "Upscaler", root=prefs, timeout=30)
    own = wait_until(lambda: upscaler_shown(s, prefs), 120, "the upscaler row to say what is in use")
    log(f"upscaler at start: {own}")
    s.screenshot("upscaler-own")
    if own.startswith("None: "):
        # Upscale without an upscaler: a message that says what to do, nothing lost
        close_preferences(s)
        s.click(s.find("page tab", "Canvas", root=s.region("header")))
        time.sleep(1.0)
        before = set(s.gallery_files())
        canvas = s.find("image", "Canvas", root=s.region("editor"))
        x, y, w, h = s.extents(canvas)
        middle = (w // 4, h // 5, w * 3 // 4, h * 3 // 5)   # clear of the zoom buttons and the status
        picture = s.grab(canvas).crop(middle)
        s.press("push button", "Upscale", "editor")
        dialog = wait_until(lambda: top_windows(s, "The Picture Could Not Be Enlarged"), 120, "the message")[0]
        text = " ".join(l.name for l in s.find_all("label", root=dialog))
        s.screenshot("no-upscaler")
        log(text)
        check("upscaler" in text and "Preferences" in text and "convert-esrgan" in text,
              "the message does not say how to get an upscaler")
        s.press_in(dialog, "push button", r"(^|\s)_?Close$")
        wait_until(lambda: not top_windows(s, "The Picture Could Not Be Enlarged"), 30, "the message to close")
        check(set(s.gallery_files()) == before, "a failed upscale left a picture in the gallery")
        check(s.grab(canvas).crop(middle).tobytes() == picture.tobytes(), "the canvas lost its picture")
        prefs = open_preferences(s)

    # a folder that is not an upscaler
    bad = os.path.join(s.tmp, "not-an-upscaler")
    os.makedirs(bad, exist_ok=True)
    with open(os.path.join(bad, "notes.txt"), "w") as f:
        f.write("not an upscaler\n")
    s.press_in(prefs, "push button", r"^Choose upscaler folder$")
    choose_folder(s, "Choose an Upscaler Folder", bad)
    dialog = wait_until(lambda: top_windows(s, "This Folder Is Not an Upscaler"), 120, "the message")[0]
    text = " ".join(l.name for l in s.find_all("label", root=dialog))
    s.screenshot("not-an-upscaler")
    log(text)
    check(bad in text and "config.json" in text and "convert-esrgan" in text,
          "the message does not say what an upscaler folder holds")
    s.press_in(dialog, "push button", r"(^|\s)_?Close$")
    wait_until(lambda: not top_windows(s, "This Folder Is Not an Upscaler"), 30, "the message to close")
    check(not (setting(s, "upscaler") or "").strip("'"), "the folder that is not an upscaler was kept")
    check(wait_until(lambda: upscaler_shown(s, prefs), 60, "the upscaler row") == own,
          "the upscaler row changed after a refused folder")

    # the reference ×4 network, copied (its name is its folder's)
    ref = os.path.join(s.tmp, "srvgg_prelu_x4")
    if not os.path.isdir(ref):
        shutil.copytree(os.path.join(os.environ["REVERIE_SOURCE_ROOT"], "tests", "reference",
                                     "real-esrgan-tiny", "models", "srvgg_prelu_x4"), ref)
    s.press_in(prefs, "push button", r"^Choose upscaler folder$")
    choose_folder(s, "Choose an Upscaler Folder", ref)
    shown = wait_until(lambda: (upscaler_shown(s, prefs) or "").startswith("srvgg_prelu_x4 · ×4 · ")
                       and upscaler_shown(s, prefs), 120, "the row to show the chosen upscaler")
    s.screenshot("upscaler-chosen")
    log(f"upscaler chosen: {shown}")
    check(ref in shown, f"the row does not show the folder: {shown}")
    wait_until(lambda: setting(s, "upscaler") == repr(ref), 30, "the setting to be stored")
    state["upscaler"], state["upscale"] = "srvgg_prelu_x4", 4
    if not own.startswith("None: "):
        # the model set has one: back to it, and the tests go on with it
        s.press_in(prefs, "push button", r"^Use the model set’s upscaler$")
        wait_until(lambda: upscaler_shown(s, prefs) == own, 120, "the row to show the set's own again")
        m = re.match(r"(.+) · ×(\d+) · ", own)
        state["upscaler"], state["upscale"] = m.group(1), int(m.group(2))
    close_preferences(s)


def pick_size(s, item):
    s.press("combo box", "Size", "panel")
    s.click(s.find("label", item, timeout=10))
    time.sleep(0.5)


def scenario_upscaled_size(s, state):
    """The 256 preset goes through the upscaler: the panel says so with the
    time to expect, and a 256 × 256 picture comes with the upscaler in its recipe."""
    pick_size(s, "256 × 256")
    estimate = s.find("label", root=s.region("panel"), match=r"^About \d+ (s|min)", timeout=60)
    s.screenshot("size-256")
    log(f"estimate: {estimate.name}")
    m = re.search(r"generated at (\d+) px, then enlarged ×(\d+)$", estimate.name)
    check(m and int(m.group(1)) * int(m.group(2)) == 256,
          f"the estimate does not say the picture is enlarged to 256: “{estimate.name}”")
    status, _, _, new = s.run_job(lambda: s.press("push button", "Generate", "panel"))
    s.screenshot("generated-256")
    log(f"statuses: {s.seen}")
    check(status.startswith("Done in"), f"the job ended with “{status}”")
    check(len(new) == 1, f"expected one new gallery file, found {new}")
    from PIL import Image
    size = Image.open(new[0]).size
    r = recipe(new[0])
    log(f"{os.path.basename(new[0])}: {size}, upscaler {r.get('upscaler')} ({r.get('upscaler_hash')})")
    check(size == (256, 256), f"the picture is {size}, not 256 × 256")
    check(r.get("upscaler") == state["upscaler"] and r.get("upscaler_hash"),
          f"the recipe does not name the upscaler {state['upscaler']}: {r}")
    check(r.get("width") == "256" and r.get("kind") == "generate", f"recipe {r}")
    measured = s.find("label", root=s.region("panel"), match=r"^About \d+ (s|min)", timeout=10).name
    log(f"estimate after measuring: {measured}")
    pick_size(s, "Model default")
    state["big"] = new[0]


def check_upscaled(s, state, source, new, what):
    from PIL import Image
    check(len(new) == 1, f"expected one new gallery file, found {new}")
    src, out = Image.open(source), Image.open(new[0])
    k = state["upscale"]
    check(out.size == (src.size[0] * k, src.size[1] * k), f"{what}: {src.size} became {out.size}, not ×{k}")
    r, rs = recipe(new[0]), recipe(source)
    log(f"{what}: {os.path.basename(source)} {src.size} → {os.path.basename(new[0])} {out.size}")
    check(r.get("kind") == "upscale" and r.get("upscale") == str(k), f"recipe {r}")
    check(r.get("upscaler") == state["upscaler"] and r.get("upscaler_hash"), f"recipe {r}")
    check(r.get("source_sha256") == image_sha256(src), "the recipe does not name the source picture")
    check(r.get("prompt") == rs.get("prompt") and r.get("seed") == rs.get("seed"),
          f"the source's prompt and seed were not carried over: {r}")


def scenario_upscale_canvas(s, state):
    """Upscale on the canvas picture: tile previews, then a picture 4× larger in the gallery."""
    s.click(s.find("page tab", "Canvas", root=s.region("header")))
    time.sleep(1.0)
    status, _, _, new = s.run_job(lambda: s.press("push button", "Upscale", "editor"))
    s.screenshot("upscaled-canvas")
    log(f"statuses: {s.seen}")
    check(status.startswith("Done in"), f"the upscale ended with “{status}”")
    # a quick upscale may be over before the status is first read: the statuses are logged, not required
    check_upscaled(s, state, state["big"], new, "canvas")


def scenario_upscale_gallery(s, state):
    """Upscale from a gallery picture's context menu: a picture 4× larger, its recipe
    shown in the gallery."""
    from PIL import Image
    source = state["first"]
    w, h = Image.open(source).size
    name = r"^Picture: " + re.escape(PROMPT) + r", seed " + recipe(source)["seed"] + "$"

    def select(size):
        """Clicks the pictures of that name until the details show one of that size
        (a locked seed gives several the same name)."""
        s.click(s.find("page tab", "Gallery", root=s.region("header")))
        s.find("image", match=name, root=s.region("gallery"), timeout=30)
        for item in s.find_all("image", match=name, root=s.region("gallery")):
            if s.extents(item)[2] <= 0:
                continue
            s.click(item)
            s.last_clicked = item
            try:
                return s.find("label", root=s.region("gallery"), match=size, timeout=3)
            except Failure:
                continue
        raise Failure(f"no picture “{name}” of {size} in the gallery")

    select(rf"(^|\n){w} × {h}( |\n|$)")
    button = s.find("push button", "Upscale", root=s.region("gallery"))
    check(s.sensitive(button), "the gallery's Upscale button is not enabled for a selected picture")
    # the thumbnail's context menu
    def from_menu():
        import pyatspi
        x, y = s.center(s.last_clicked)
        s.xdotool("mousemove", x, y, "click", 3)
        item = s.find("menu item", match=r"^_?Upscale$", timeout=10)
        s.screenshot("gallery-menu")
        # a popover's items report coordinates in its own surface: the keyboard
        # reaches them without guessing where it is
        for _ in range(8):
            if item.getState().contains(pyatspi.STATE_FOCUSED):
                break
            s.key("Down")
        check(item.getState().contains(pyatspi.STATE_FOCUSED), "the menu's Upscale item never took the focus")
        s.key("Return")

    status, _, _, new = s.run_job(from_menu)
    check(status.startswith("Done in"), f"the upscale ended with “{status}”")
    check_upscaled(s, state, source, new, "gallery")
    k = state["upscale"]
    details = select(rf"(^|\n){w * k} × {h * k}( |\n|$)")
    log(details.name)
    check(re.search(r"Enlarged ×\d+ by " + re.escape(state["upscaler"]), details.name),
          f"the gallery does not say what enlarged the picture: {details.name}")
    s.screenshot("upscaled-gallery")


# ---- extending a picture, and a content policy ----

def open_picture(s, path):
    s.press("push button", "Open picture", "header")

    def chooser():
        return [w for w in s.app.children if w.name == "Open a Picture"]

    wait_until(chooser, 30, "the file chooser")
    time.sleep(1.0)
    s.key("ctrl+l")
    s.type(path)
    s.key("Return")
    wait_until(lambda: not chooser(), 30, "the file chooser to close")
    time.sleep(1.0)


def set_spin(s, name, value, region="panel"):
    spin = s.find("spin button", name, root=s.region(region))
    x, y, w, h = s.extents(spin)
    s.xdotool("mousemove", x + 12, y + h // 2, "click", 1)   # the text, not the − and + buttons
    s.key("ctrl+a")
    s.type(str(value))
    s.key("Tab")


def extend_info(s, match=r"^\d+ × \d+( · |$)"):
    """The size the extend bar says the canvas will have."""
    label = s.find("label", root=s.region("editor"), match=match, timeout=20)
    m = re.match(r"^(\d+) × (\d+)", label.name)
    return int(m.group(1)), int(m.group(2)), label.name


def drag_handle(s, name, dx, dy):
    """A real pointer drag of an edge handle, in small moves."""
    handle = s.find(None, name, root=s.region("editor"), timeout=20)
    x, y = s.center(handle)
    s.xdotool("mousemove", x, y)
    time.sleep(0.2)
    s.xdotool("mousedown", 1)
    for i in range(1, 21):
        s.xdotool("mousemove", x + dx * i // 20, y + dy * i // 20)
        time.sleep(0.03)
    s.xdotool("mouseup", 1)
    time.sleep(0.5)


def check_extended(s, source, path, what):
    """The picture is the source on a canvas grown by the recipe's borders,
    the source's own pixels unchanged."""
    from PIL import Image
    r = recipe(path)
    l, rt, t, b = (int(r.get(k, 0)) for k in ("extend_left", "extend_right", "extend_top", "extend_bottom"))
    out = Image.open(path).convert("RGB")
    sw, sh = source.size
    log(f"{what}: {os.path.basename(path)} {out.size}, borders left {l} right {rt} top {t} bottom {b}, "
        f"{len(json.loads(r.get('frames', '[]')))} frames")
    check(r.get("kind") == "extend", f"recipe kind {r.get('kind')}")
    check(out.size == (sw + l + rt, sh + t + b), f"{what}: {out.size} is not the source {source.size} plus the borders")
    check(r.get("source_sha256") == image_sha256(source), f"{what}: the recipe does not name the source picture")
    inner = out.crop((l, t, l + sw, t + sh))
    check(inner.tobytes() == source.convert("RGB").tobytes(), f"{what}: the source's pixels changed")
    return l, rt, t, b


def scenario_extend(s, state):
    """Extend mode: drag the right and top edges outward with real pointer
    drags, extend with two candidates, keep the second, extend it again on the
    left (a border typed in), then undo back to the source."""
    from PIL import Image, ImageDraw
    path = os.path.join(s.tmp, "extend-source.png")
    src = Image.new("RGB", (64, 64), (30, 120, 60))
    ImageDraw.Draw(src).rectangle((12, 20, 50, 44), fill=(230, 200, 40))
    src.save(path)
    open_picture(s, path)
    s.click(s.find("page tab", "Canvas", root=s.region("header")))
    prompt = s.find("text", "Prompt", root=s.region("panel"))
    s.click(prompt)
    s.key("ctrl+a")
    s.type("a green meadow")
    set_spin(s, "Number of pictures", 2)

    s.press("push button", "Extend canvas", "editor")
    w0, h0, text = extend_info(s)
    check((w0, h0) == (64, 64), f"extend mode shows {text} for a 64 × 64 picture")
    drag_handle(s, "Extend right edge", 160, 0)
    drag_handle(s, "Extend top edge", 0, -90)
    w1, h1, text = extend_info(s, r"^\d+ × \d+ · \d+ frames?$")
    s.screenshot("extend-dragged")
    log(f"after dragging the right and top edges: {text}")
    check(w1 > 64 and h1 > 64, f"the drags did not grow the canvas: {text}")

    status, _, _, new = s.run_job(lambda: s.press("push button", "Extend", "editor"))
    s.screenshot("extended")
    log(f"statuses: {len(s.seen)}, the last {s.seen[-4:]}")
    check(status.endswith(" s"), f"the extension ended with “{status}”")
    check(len(new) == 2, f"expected two candidates in the gallery, found {new}")
    for i, f in enumerate(new):
        l, rt, t, b = check_extended(s, src, f, f"candidate {i + 1}")
        check(rt > 0 and t > 0 and l == 0 and b == 0, "the borders are not the dragged edges")
        check((64 + l + rt, 64 + t + b) == (w1, h1), f"the canvas said {w1} × {h1}")

    # flip to the second candidate and keep it
    second = s.find("image", match=r"^Result 2 of 2, seed ", root=s.region("editor"), timeout=20)
    seed = second.name.rsplit(" ", 1)[1]
    s.click(second)
    kept = [f for f in new if recipe(f)["seed"] == seed]
    check(kept, f"no candidate of seed {seed} in the gallery")
    w2, h2, text = extend_info(s, r"^\d+ × \d+ · drag an edge outward$")
    check((w2, h2) == (w1, h1), f"after the extension the canvas is {text}, not {w1} × {h1}")

    # again, on the left, with a border typed in, one candidate
    set_spin(s, "Number of pictures", 1)
    set_spin(s, "Left border", 32, region="editor")
    w3, h3, text = extend_info(s, r"^\d+ × \d+ · \d+ frames?$")
    check((w3, h3) == (w2 + 32, h2), f"a left border of 32 shows {text}")
    status, _, _, new2 = s.run_job(lambda: s.press("push button", "Extend", "editor"))
    check(status.startswith("Done in") and len(new2) == 1, f"the second extension ended with “{status}”, {new2}")
    kept_img = Image.open(kept[0]).convert("RGB")
    l, rt, t, b = check_extended(s, kept_img, new2[0], "extended again")
    check((l, rt, t, b) == (32, 0, 0, 0), f"the second extension's borders are {(l, rt, t, b)}")
    s.screenshot("extended-again")

    # undo, twice: back to the kept candidate, then to the source
    s.press("push button", "Undo extend", "editor")
    w4, h4, text = extend_info(s, rf"^{w2} × {h2} · ")
    s.press("push button", "Undo extend", "editor")
    w5, h5, text = extend_info(s, r"^64 × 64 · ")
    s.screenshot("extend-undone")
    log("undo went back to the kept candidate, then to the source")
    s.press("push button", "Extend canvas", "editor")


def press_visible(s, window, role, match, timeout=20):
    """Scrolls a window with the wheel until the widget is inside it, then
    clicks it (the preferences are taller than their window)."""
    node = s.find(role, root=window, match=match, timeout=timeout)
    wx, wy, ww, wh = s.extents(window)
    s.xdotool("mousemove", wx + ww // 2, wy + wh // 2)
    for _ in range(40):
        x, y, w, h = s.extents(node)
        if y >= wy + 50 and y + h <= wy + wh - 10:
            break
        s.xdotool("click", 5 if y + h > wy + wh - 10 else 4)
        time.sleep(0.15)
    time.sleep(0.3)
    s.click(node)


def scenario_content_policy(s, state):
    """A content policy: a file that is not one is refused with its line and
    not kept; a good one is kept, a prompt in one of its categories shows the
    category and makes nothing; --content-policy with a bad file stops at once."""
    bad = os.path.join(s.tmp, "bad-policy.txt")
    with open(bad, "w") as f:
        f.write("# no category yet\nlaser sword\n")
    good = os.path.join(s.tmp, "policy.txt")
    with open(good, "w") as f:
        f.write("# test policy\n[imaginary weapons]\nlaser sword\nblaster*\n")

    r = subprocess.run([os.environ["REVERIE_APP"], "--content-policy", bad], env=s.app_env,
                       capture_output=True, text=True, timeout=60)
    log(f"reverie --content-policy {os.path.basename(bad)}: exit {r.returncode}, {r.stderr.strip()}")
    check(r.returncode != 0 and f"{bad}:2" in r.stderr, "a bad --content-policy file did not stop the studio with its line")

    prefs = open_preferences(s)
    press_visible(s, prefs, "push button", r"^Choose content policy file$")
    wait_until(lambda: top_windows(s, "Choose a Content Policy"), 30, "the file chooser")
    time.sleep(1.0)
    s.key("ctrl+l")
    s.type(bad)
    s.key("Return")
    dialog = wait_until(lambda: top_windows(s, "This File Is Not a Content Policy"), 60, "the message")[0]
    text = " ".join(l.name for l in s.find_all("label", root=dialog))
    s.screenshot("policy-refused")
    log(text)
    check(f"{bad}:2" in text, "the message does not name the file and line")
    s.press_in(dialog, "push button", r"(^|\s)_?Close$")
    wait_until(lambda: not top_windows(s, "This File Is Not a Content Policy"), 30, "the message to close")
    check(not (setting(s, "content-policy") or "").strip("'"), "the file that is not a policy was kept")

    press_visible(s, prefs, "push button", r"^Choose content policy file$")
    wait_until(lambda: top_windows(s, "Choose a Content Policy"), 30, "the file chooser")
    time.sleep(1.0)
    s.key("ctrl+l")
    s.type(good)
    s.key("Return")
    s.find("label", root=prefs, match=re.escape(good) + r" · 1 category", timeout=60)
    wait_until(lambda: setting(s, "content-policy") == repr(good), 30, "the setting to be stored")
    s.screenshot("policy-chosen")
    close_preferences(s)

    before = set(s.gallery_files())
    prompt = s.find("text", "Prompt", root=s.region("panel"))
    s.click(prompt)
    s.key("ctrl+a")
    s.type("a knight with a Laser-Sword at dawn")
    s.press("push button", "Generate", "panel")
    dialog = wait_until(lambda: top_windows(s, "This Prompt Is Not Allowed Here"), 30, "the refusal")[0]
    text = " ".join(l.name for l in s.find_all("label", root=dialog))
    s.screenshot("policy-refusal")
    log(text)
    check("imaginary weapons" in text, "the refusal does not name the category")
    check("laser" not in text.lower() and "blaster" not in text.lower(), "the refusal shows the policy's phrases")
    s.press_in(dialog, "push button", r"(^|\s)_?Close$")
    wait_until(lambda: not top_windows(s, "This Prompt Is Not Allowed Here"), 30, "the refusal to close")
    time.sleep(2)
    check(set(s.gallery_files()) == before, "a refused prompt wrote a picture")
    check(not s.find_all("label", root=s.region("overlay"), match=r"^(Starting|Loading|Reading)"),
          "a refused prompt started a job")

    # off again: the same prompt is made
    prefs = open_preferences(s)
    press_visible(s, prefs, "push button", r"^Turn the content policy off$")
    wait_until(lambda: not (setting(s, "content-policy") or "").strip("'"), 30, "the policy to be turned off")
    close_preferences(s)
    status, _, _, new = s.run_job(lambda: s.press("push button", "Generate", "panel"))
    check(status.startswith("Done in") and len(new) == 1, f"without a policy the job ended with “{status}”")
    s.click(prompt)
    s.key("ctrl+a")
    s.type(PROMPT)


# ---- downloading a model set from the catalogue ----

def close_with_button(s, prefs):
    """Closes the preferences with their close button: a row's button that
    hid itself when pressed took the keyboard focus with it."""
    s.press_in(prefs, "push button", r"^(_?Close|Close window)$")
    wait_until(lambda: not top_windows(s, "Preferences"), 30, "the preferences to close")


def scenario_model_download(s, state):
    """Preferences list the catalogue's sets: a set too large for the device
    says so before anything is downloaded; downloading the test set from a
    local stand-in Hub shows its licence and size first, shows its progress
    again after the preferences were closed, is cancelled, offers Resume after
    a restart, resumes, finishes with the preferences closed, and the
    installed set can be chosen."""
    import importlib.util
    spec = importlib.util.spec_from_file_location(
        "hub_server", os.path.join(os.environ["REVERIE_SOURCE_ROOT"], "tests", "hub", "hub-server.py"))
    hub = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(hub)
    models = os.path.join(os.environ["REVERIE_REFERENCE_DIR"], "models")
    repos = {"prior": "reverie-test/kandinsky-2-2-prior-tiny",
             "decoder": "reverie-test/kandinsky-2-2-decoder-tiny",
             "decoder-inpaint": "reverie-test/kandinsky-2-2-decoder-inpaint-tiny"}
    hub_state = hub.state_from_config({"cache_dir": os.path.join(s.tmp, "hub-cache"), "repos": [
        {"name": repo, "folder": os.path.join(models, "kandinsky-2-2-%s-tiny" % local)}
        for local, repo in repos.items()]})
    srv = hub.HubServer(hub_state).start()
    # the text encoder slowly, so that the download can be watched, cancelled and resumed
    slow = repos["prior"] + ":text_encoder/model.safetensors"
    hub_state.throttle[slow] = 400 * 1024
    try:
        lic = {"name": "Apache-2.0", "url": "https://www.apache.org/licenses/LICENSE-2.0",
               "text": "Test licence text for the stand-in set."}
        inc = {"prior": ["prior/", "text_encoder/", "image_encoder/", "tokenizer/", "scheduler/",
                         "image_processor/", "model_index.json"],
               "decoder": ["unet/", "movq/", "scheduler/", "model_index.json"],
               "decoder-inpaint": ["unet/", "movq/", "scheduler/", "model_index.json"]}
        sources = [{"repo": repo, "revision": "main", "local": local, "include": inc[local]}
                   for local, repo in repos.items()]
        cat = os.path.join(s.tmp, "catalogue.json")
        with open(cat, "w") as f:
            json.dump({"format": 1, "entries": [
                {"name": "reverie-tiny", "kind": "embedded", "title": "Reverie tiny (embedded)"},
                {"name": "tiny-k22", "kind": "model-set", "title": "Kandinsky 2.2 tiny (test)",
                 "licence": lic, "variants": [{"name": "fp16", "download_bytes": 20000000}],
                 "device_memory": {"basis": "test", "sizes": [{"size": 512, "bytes": 1 << 20}]},
                 "sources": sources},
                {"name": "huge-test", "kind": "model-set", "title": "Huge (test)",
                 "licence": lic, "variants": [{"name": "fp16", "download_bytes": 1 << 40}],
                 "device_memory": {"basis": "test", "sizes": [{"size": 512, "bytes": 1 << 50}]},
                 "sources": sources}]}, f)
        for k in ("HF_TOKEN", "HF_HUB_OFFLINE", "http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY"):
            s.app_env.pop(k, None)
        s.app_env.update({"REVERIE_CATALOGUE": cat, "HF_ENDPOINT": "http://127.0.0.1:%d" % srv.port,
                          "REVERIE_HUB_TIMEOUT": "10", "no_proxy": "127.0.0.1"})
        s.quit_app()
        s.start_app()
        before = setting(s, "model")

        prefs = open_preferences(s)
        huge = s.find("label", root=prefs, match=r"will not fit this device", timeout=120)
        log(f"Huge (test): {huge.name}")
        s.find("label", root=prefs, match=r"Not installed · about .* · fits this device", timeout=30)
        s.screenshot("model-sets")
        press_visible(s, prefs, "push button", r"^Download Kandinsky 2\.2 tiny \(test\)$")
        dialog = wait_until(lambda: top_windows(s, "Download Kandinsky 2.2 tiny (test)?"), 30, "the download dialog")[0]
        text = " ".join(l.name for l in s.find_all("label", root=dialog))
        log(text)
        check("Test licence text for the stand-in set." in text and "Apache-2.0" in text,
              "the dialog does not show the licence")
        check(re.search(r"About \d[\d.]*\s(MB|kB)", text) and "fits this device" in text,
              "the dialog does not say the size and whether it fits")
        s.screenshot("model-download-dialog")
        s.press_in(dialog, "push button", r"(^|\s)_?Download$")
        wait_until(lambda: not top_windows(s, "Download Kandinsky 2.2 tiny (test)?"), 30, "the dialog to close")
        progress = s.find("label", root=prefs, match=r"^(Downloading|Asking the Hub|Checking) ", timeout=60)
        log(f"the row: {progress.name}")
        s.screenshot("model-downloading")
        # the download goes on without the window, and shows when it opens again
        close_with_button(s, prefs)
        prefs = open_preferences(s)
        progress = s.find("label", root=prefs, match=r"^Downloading · .* of ", timeout=60)
        log(f"reopened, the row: {progress.name}")
        press_visible(s, prefs, "push button", r"^Cancel download of Kandinsky 2\.2 tiny \(test\)$")
        kept = s.find("label", root=prefs, match=r"^Unfinished: .* kept", timeout=60)
        log(f"cancelled: {kept.name}")
        check(not os.path.isdir(os.path.join(s.tmp, "data", "reverie", "models", "tiny-k22")),
              "a cancelled download was installed")
        close_with_button(s, prefs)

        # after a restart, the unfinished download can be resumed
        s.quit_app()
        s.start_app()
        prefs = open_preferences(s)
        s.find("label", root=prefs, match=r"^Unfinished: .* kept", timeout=120)
        del hub_state.throttle[slow]
        press_visible(s, prefs, "push button", r"^Resume download of Kandinsky 2\.2 tiny \(test\)$")
        s.screenshot("model-resumed")
        close_with_button(s, prefs)
        installed = os.path.join(s.tmp, "data", "reverie", "models", "tiny-k22")
        wait_until(lambda: all(os.path.isdir(os.path.join(installed, d))
                               for d in ("prior", "decoder", "decoder-inpaint")), 180, "the set to be installed")
        s.find("label", root=s.frame,
               match=r"Kandinsky 2\.2 tiny \(test\) is installed", timeout=30)
        log(f"installed in {installed}")

        prefs = open_preferences(s)
        s.find("label", root=prefs, match=r"^Installed", timeout=30)
        press_visible(s, prefs, "push button", r"^Use Kandinsky 2\.2 tiny \(test\)$")
        wait_until(lambda: setting(s, "model") == repr(installed), 30, "the set to be chosen")
        s.find("label", root=prefs, match=r"^In use · installed", timeout=30)
        s.screenshot("model-installed")
        check("'" + installed + "'" in (setting(s, "model-folders") or ""), "the set is not in the model list")
        # back to the model the tests use
        if before in (None, "''"):
            press_visible(s, prefs, "push button", r"^Use Reverie tiny \(embedded\)$")
        else:
            subprocess.run(["gsettings", "set", APP_ID_SCHEMA, "model", before.strip("'")], env=s.app_env)
        wait_until(lambda: setting(s, "model") == (before or "''"), 30, "the model to be restored")
        close_with_button(s, prefs)
    finally:
        srv.close()


SCENARIOS = [
    ("type a prompt, generate, live previews", scenario_generate),
    ("find it in the gallery, reuse its seed", scenario_gallery_reuse_seed),
    ("paint a mask with pointer strokes and edit", scenario_mask_edit),
    ("open a picture and make variations", scenario_open_variations),
    ("cancel mid-run with Escape", scenario_cancel),
    ("an invalid model folder gets a clear message", scenario_invalid_model),
    ("preferences: devices and live previews; shortcuts", scenario_windows),
    ("delete to the trash, with undo", scenario_delete_undo),
    ("copy to the clipboard, save a copy", scenario_copy_save),
    ("preferences: the upscaler, a refused folder, a Real-ESRGAN folder", scenario_upscaler),
    ("the 256 preset goes through the upscaler", scenario_upscaled_size),
    ("Upscale on the canvas", scenario_upscale_canvas),
    ("Upscale from a gallery picture's menu", scenario_upscale_gallery),
    ("the gallery after a restart", scenario_restart),
    ("extend a picture by dragging its edges, keep a candidate, undo", scenario_extend),
    ("a content policy refuses a prompt by category; a bad policy file is refused", scenario_content_policy),
    ("download a model set from a stand-in Hub, then use it", scenario_model_download),
]


# ---- screenshots for the metainfo (--screenshots DIR) ----

def take_screenshots(s, folder):
    from PIL import Image

    def save(name):
        shot = Image.open(s.screenshot(name)).convert("RGB").crop((0, 0, WIDTH - 10, HEIGHT - 44))
        shot.quantize(colors=256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE).save(
            os.path.join(folder, name + ".png"), optimize=True)

    n_spin = s.find("spin button", "Number of pictures", root=s.region("panel"))
    x, y, w, h = s.extents(n_spin)
    s.xdotool("mousemove", x + 12, y + h // 2, "click", 1)
    s.key("ctrl+a")
    s.type("4")
    s.key("Tab")
    s.click(s.find("text", "Prompt", root=s.region("panel")))
    s.key("ctrl+a")
    s.type("a large yellow circle on a purple background")
    status, _, _, _ = s.run_job(lambda: s.press("push button", "Generate", "panel"))
    check(status.endswith(" s"), f"the batch ended with “{status}”")
    time.sleep(5)   # the status card goes
    save("generate")
    s.press("push button", "Mask brush", "editor")
    canvas = s.find("image", "Canvas", root=s.region("editor"))
    x, y, w, h = s.extents(canvas)
    s.xdotool("mousemove", x + int(w * 0.45), y + int(h * 0.35))
    s.xdotool("mousedown", 1)
    for i in range(1, 31):
        s.xdotool("mousemove", x + int(w * (0.45 + 0.005 * i)), y + int(h * (0.35 + 0.01 * i)))
        time.sleep(0.02)
    s.xdotool("mouseup", 1)
    s.xdotool("mousemove", x + int(w * 0.62), y + int(h * 0.66))
    time.sleep(1)
    save("mask")
    s.press("push button", "Mask brush", "editor")
    s.click(s.find("page tab", "Gallery", root=s.region("header")))
    s.click(s.find("image", match=r"^Picture: ", root=s.region("gallery"), timeout=30))
    s.xdotool("mousemove", WIDTH // 2, HEIGHT - 60)
    time.sleep(2)
    save("gallery")


# ---- setup ----

def model_dir():
    """'' for the embedded model; else a copy of the golden tiny models (kept
    in the build folder, never symlinks into the source tree); None when neither."""
    src = os.environ.get("REVERIE_SOURCE_ROOT", "")
    embedded = os.path.join(src, "data", "models", "reverie-tiny")
    if all(os.path.isdir(os.path.join(embedded, d)) for d in ("prior", "decoder", "decoder-inpaint")):
        return ""
    golden = os.path.join(os.environ.get("REVERIE_REFERENCE_DIR", ""), "models")
    parts = {"prior": "kandinsky-2-2-prior-tiny", "decoder": "kandinsky-2-2-decoder-tiny",
             "decoder-inpaint": "kandinsky-2-2-decoder-inpaint-tiny"}
    if not all(os.path.isdir(os.path.join(golden, p)) for p in parts.values()):
        return None
    dest = os.path.join(os.environ["REVERIE_UI_MODELS"], "golden-tiny")
    if not os.path.isfile(os.path.join(dest, "reverie.json")):
        partial = dest + ".partial"
        shutil.rmtree(partial, ignore_errors=True)
        for name, folder in parts.items():
            shutil.copytree(os.path.join(golden, folder), os.path.join(partial, name), symlinks=False)
        with open(os.path.join(partial, "reverie.json"), "w") as f:
            json.dump({"name": "golden-tiny", "width": 64, "height": 64, "prior_steps": 5,
                       "decoder_steps": STEPS}, f)
        shutil.rmtree(dest, ignore_errors=True)
        os.rename(partial, dest)
    return dest


def main():
    if os.environ.get(SESSION_FLAG) != "1":
        env = dict(os.environ, **{SESSION_FLAG: "1"})
        os.execvpe("dbus-run-session", ["dbus-run-session", "--", sys.executable,
                                        os.path.abspath(__file__)] + sys.argv[1:], env)

    model = model_dir()
    if model is None:
        print("1..0 # SKIP no model: neither data/models/reverie-tiny nor tests/reference/kandinsky-2-2-tiny/models")
        return 0
    artifacts = os.environ["REVERIE_UI_ARTIFACTS"]
    shutil.rmtree(artifacts, ignore_errors=True)
    os.makedirs(artifacts)
    tmp = tempfile.mkdtemp(prefix="reverie-ui-")
    s = Studio(tmp, artifacts, model)
    print(f"1..{len(SCENARIOS) + 1}", flush=True)
    log(f"model: {model or 'the embedded reverie-tiny'}; artifacts in {artifacts}")
    failed = 0
    settings = os.path.join(model or os.path.join(os.environ["REVERIE_SOURCE_ROOT"], "data", "models",
                                                  "reverie-tiny"), "reverie.json")
    with open(settings) as f:
        state = {"model_steps": json.load(f).get("decoder_steps", 100)}
    try:
        s.start_desktop()
        subprocess.run(["gsettings", "set", "org.gnome.desktop.interface", "toolkit-accessibility", "true"],
                       env=s.env, check=False)
        from dogtail.config import config
        config.searchShowingOnly = False
        config.logDebugToFile = False
        config.logDebugToStdOut = False
        s.start_app()
        if "--screenshots" in sys.argv:
            take_screenshots(s, os.path.abspath(sys.argv[sys.argv.index("--screenshots") + 1]))
            return 0
        only = {int(x) for x in os.environ.get("REVERIE_UI_ONLY", "").split(",") if x.strip()}
        for i, (title, fn) in enumerate(SCENARIOS, 1):
            if only and i not in only:
                print(f"ok {i} - {title} # SKIP not in REVERIE_UI_ONLY", flush=True)
                continue
            t0 = time.monotonic()
            try:
                fn(s, state)
                print(f"ok {i} - {title} ({time.monotonic() - t0:.0f} s)", flush=True)
            except Exception as e:
                failed += 1
                print(f"not ok {i} - {title}", flush=True)
                why = traceback.format_exc() if not isinstance(e, Failure) else f"FAIL: {e}"
                log(why)
                # the test runner shows stderr of a failed test: say there what went wrong
                print(f"not ok {i} - {title}\n{why}", file=sys.stderr, flush=True)
                try:
                    s.screenshot("failure")
                except Exception:
                    pass
                try:
                    s.close_strays()
                except Exception:
                    pass
                if s.app_proc is None or s.app_proc.poll() is not None:
                    if s.app_proc is not None:
                        rc = s.app_proc.returncode
                        how = f"signal {-rc}" if rc < 0 else f"exit status {rc}"
                        print(f"the app ended during “{title}”: {how}", file=sys.stderr, flush=True)
                    for j in range(i + 1, len(SCENARIOS) + 1):
                        print(f"not ok {j} - {SCENARIOS[j - 1][0]} # the app is gone", flush=True)
                    failed += len(SCENARIOS) - i
                    break
        problems, known = s.log_problems()
        n = len(SCENARIOS) + 1
        if problems:
            failed += 1
            print(f"not ok {n} - the app logged no warnings or criticals", flush=True)
            log("\n".join(problems[:20]))
            print("\n".join(problems[:20]), file=sys.stderr, flush=True)
        else:
            print(f"ok {n} - the app logged no warnings or criticals ({len(known)} known GTK 4.8 ones)",
                  flush=True)
        for line in s.frame_times():
            log(line)
        if "cancel_latency" in state:
            log(f"cancel latency: {state['cancel_latency']:.2f} s")
        if failed:
            with open(os.path.join(artifacts, "reverie.log")) as f:
                tail = f.readlines()[-40:]
            print("the end of the app's log:\n" + "".join(tail), file=sys.stderr, flush=True)
    finally:
        s.kill_app()
        s.stop_desktop()
        shutil.rmtree(tmp, ignore_errors=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
