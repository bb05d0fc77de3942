"""Helpers shared by the hardening tests: the model to use, the CLI, a server
started on a free port, HTTP requests and images."""
import base64
import io
import json
import os
import shutil
import subprocess
import urllib.error
import urllib.request

SKIP = 77


def finish(results, tmp):
    """The TAP plan; the scratch folder goes when every check passed (it is
    kept for a look otherwise). The exit status."""
    print("1..%d" % len(results))
    if all(results):
        shutil.rmtree(tmp, ignore_errors=True)
    return 0 if all(results) else 1


def log(msg):
    for line in str(msg).splitlines():
        print("# " + line, flush=True)


def model_args():
    """The CLI options naming the model: the embedded one when it is there,
    else the reference set's tiny models (by folder, no links); None when neither."""
    src = os.environ.get("REVERIE_SOURCE_DIR") or os.path.join(os.path.dirname(__file__), "..", "..")
    embedded = os.path.join(src, "data", "models", "reverie-tiny")
    if all(os.path.isdir(os.path.join(embedded, d)) for d in ("prior", "decoder", "decoder-inpaint")):
        return ["--model", os.path.abspath(embedded)]
    golden = os.path.join(os.environ.get("REVERIE_REFERENCE_DIR", ""), "models")
    parts = [("--prior", "kandinsky-2-2-prior-tiny"), ("--decoder", "kandinsky-2-2-decoder-tiny"),
             ("--inpaint-decoder", "kandinsky-2-2-decoder-inpaint-tiny")]
    if all(os.path.isdir(os.path.join(golden, p)) for _, p in parts):
        return [a for opt, p in parts for a in (opt, os.path.join(golden, p))]
    return None


def model_dirs(args):
    """prior, decoder, inpaint folders of model_args()."""
    if args[0] == "--model":
        return [os.path.join(args[1], d) for d in ("prior", "decoder", "decoder-inpaint")]
    return args[1::2]


def copy_model(args, dest):
    """A private copy of the model (files, never links), for damaging."""
    for name, src in zip(("prior", "decoder", "decoder-inpaint"), model_dirs(args)):
        shutil.copytree(src, os.path.join(dest, name), symlinks=False)
    return ["--model", dest]


class Server:
    """reverie-cli serve on a free port, with its own environment."""

    def __init__(self, cli, args, env=None, log_path=None):
        self.log = open(log_path or os.devnull, "a")
        self.proc = subprocess.Popen([cli, "serve", "--port", "0"] + args, env=env,
                                     stdout=subprocess.PIPE, stderr=self.log, text=True)
        line = self.proc.stdout.readline()
        if not line.startswith("Listening on "):
            self.proc.wait(30)
            raise RuntimeError("the server did not start (exit %s)" % self.proc.returncode)
        self.url = line.split()[-1]

    def alive(self):
        return self.proc.poll() is None

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()
        return self.proc.returncode

    def request(self, path, body=None, content_type="application/json", timeout=600):
        """(status, parsed JSON or None)"""
        data = json.dumps(body).encode() if isinstance(body, dict) else body
        req = urllib.request.Request(self.url + path, data=data, method="POST" if data else "GET")
        if data is not None:
            req.add_header("Content-Type", content_type)
        try:
            with urllib.request.urlopen(req, timeout=timeout) as r:
                status, raw = r.status, r.read()
        except urllib.error.HTTPError as e:
            status, raw = e.code, e.read()
        try:
            return status, json.loads(raw)
        except ValueError:
            return status, None


def multipart(fields):
    """(body, content type) of a form: name -> str or (filename, bytes)."""
    boundary = "reverie-hardening-boundary"
    out = b""
    for name, value in fields.items():
        out += b"--" + boundary.encode() + b"\r\n"
        if isinstance(value, tuple):
            out += ('Content-Disposition: form-data; name="%s"; filename="%s"\r\n'
                    "Content-Type: image/png\r\n\r\n" % (name, value[0])).encode() + value[1]
        else:
            out += ('Content-Disposition: form-data; name="%s"\r\n\r\n' % name).encode() + str(value).encode()
        out += b"\r\n"
    out += b"--" + boundary.encode() + b"--\r\n"
    return out, "multipart/form-data; boundary=" + boundary


def is_error_shape(body, status):
    """The Images API's error object, of the right type for the status."""
    if not isinstance(body, dict) or set(body) != {"error"}:
        return False
    e = body["error"]
    want = "rate_limit_error" if status == 429 else "server_error" if status >= 500 else "invalid_request_error"
    return (isinstance(e, dict) and set(e) == {"message", "type", "param", "code"} and
            isinstance(e["message"], str) and e["message"] and e["type"] == want)


def png_pixels(data):
    """The RGB(A) pixels of PNG bytes (PIL)."""
    from PIL import Image
    img = Image.open(io.BytesIO(data))
    return img.mode, img.size, img.tobytes()


def b64_pixels(body):
    return [png_pixels(base64.b64decode(d["b64_json"])) for d in body["data"]]
