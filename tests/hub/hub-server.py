#!/usr/bin/python3
"""A local stand-in for the Hugging Face Hub, for the hub suite: the parts of
its HTTP interface that Reverie's downloader speaks, on 127.0.0.1 only.

  GET /api/models/{owner}/{name}/revision/{rev}[?blobs=true]
      {"id", "sha", "siblings": [{"rfilename", "size", "blobId", "lfs": {"sha256", "size",
      "pointerSize"}}]}; 404 for an unknown repo or revision, 401 for a gated
      repo without the right "Authorization: Bearer" token.
  GET|HEAD /{owner}/{name}/resolve/{rev}/{path}
      LFS files (*.safetensors): 302 to /storage/{owner}/{name}/{sha256} (per
      repository, so that bytes served are counted per file) with X-Repo-Commit,
      X-Linked-Etag ("sha256"), X-Linked-Size and ETag; files kept in git are
      served directly (ETag = git blob id). 404 for unknown files.
  GET|HEAD /storage/{owner}/{name}/{sha256}
      the bytes, with Range: bytes=N- / N-M (206 + Content-Range).

Repositories are folders (every file under them), or generated: a file of
any size whose bytes are made on the fly from a 1 MiB pattern (never held
whole in memory), its SHA-256 computed once and cached in a folder.

Knobs for tests (attributes of HubState, keyed "repo:path"): corrupt one
byte (for the next N responses), stall after N bytes, drop the connection
after N bytes (the next K times), throttle to B bytes/s, hide a listed file
(404); counters of body bytes served per file and of requests per path.

Run alone: hub-server.py CONFIG.json (prints "port N"); the tests import it.
"""
import hashlib
import http.server
import json
import os
import socket
import struct
import sys
import threading
import time
import urllib.parse

PATTERN_LEN = (1 << 20) + 4093      # not a power of two: no period at MiB boundaries


def _pattern(seed):
    out = bytearray()
    block = hashlib.sha256(seed.encode()).digest()
    while len(out) < PATTERN_LEN:
        block = hashlib.sha256(block).digest()
        out += block * 8           # 256 bytes a step: fast enough, never periodic in 1 MiB
    return bytes(out[:PATTERN_LEN])


class GeneratedFile:
    """size bytes: pattern[(offset) % PATTERN_LEN]."""

    def __init__(self, size, seed, cache_dir=None):
        self.size = size
        self.pattern = _pattern(seed)
        self.double = self.pattern + self.pattern
        self.sha256 = self._hash(seed, cache_dir)

    def _hash(self, seed, cache_dir):
        cache = None
        if cache_dir:
            os.makedirs(cache_dir, exist_ok=True)
            cache = os.path.join(cache_dir, "hub-generated-%s-%d.sha256" % (
                hashlib.sha1(seed.encode()).hexdigest()[:12], self.size))
            if os.path.exists(cache):
                with open(cache) as f:
                    v = f.read().strip()
                if len(v) == 64:
                    return v
        h = hashlib.sha256()
        off = 0
        while off < self.size:
            n = min(PATTERN_LEN, self.size - off)
            h.update(self.chunk(off, n))
            off += n
        v = h.hexdigest()
        if cache:
            with open(cache, "w") as f:
                f.write(v + "\n")
        return v

    def chunk(self, off, n):
        """Bytes [off, off + n) with n ≤ PATTERN_LEN, as a view (no copy)."""
        p = off % PATTERN_LEN
        return memoryview(self.double)[p:p + n]


class RepoFile:
    def __init__(self, rfilename, path=None, data=None, generated=None, lfs=None):
        self.rfilename = rfilename
        self.path = path
        self.data = data
        self.generated = generated
        if generated is not None:
            self.size = generated.size
            self.sha256 = generated.sha256
            self.blob_id = None
        else:
            if data is None:
                with open(path, "rb") as f:
                    data = f.read()
                self.data = data
            self.size = len(data)
            self.sha256 = hashlib.sha256(data).hexdigest()
            self.blob_id = hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()
        self.lfs = lfs if lfs is not None else (
            rfilename.endswith(".safetensors") or rfilename.endswith(".bin") or self.size > 10 << 20)
        if self.lfs:
            pointer = ("version https://git-lfs.github.com/spec/v1\noid sha256:%s\nsize %d\n"
                       % (self.sha256, self.size)).encode()
            self.pointer_size = len(pointer)
            self.blob_id = hashlib.sha1(b"blob %d\0" % len(pointer) + pointer).hexdigest()

    def read(self, off, n):
        if self.generated is not None:
            return self.generated.chunk(off, n)
        return memoryview(self.data)[off:off + n]


class Repo:
    def __init__(self, name, token=None):
        self.name = name
        self.token = token
        self.sha = hashlib.sha1(("commit:" + name).encode()).hexdigest()
        self.files = {}

    def add(self, f):
        self.files[f.rfilename] = f

    def add_folder(self, folder):
        for root, _, names in os.walk(folder):
            for n in sorted(names):
                p = os.path.join(root, n)
                rel = os.path.relpath(p, folder).replace(os.sep, "/")
                self.add(RepoFile(rel, path=p))


def to_fp16_safetensors(data):
    """A safetensors file with every F32 tensor stored as F16 (a *.fp16
    variant, as diffusers publishes them)."""
    (hlen,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + hlen])
    body = data[8 + hlen:]
    out_header, chunks, off = {}, [], 0
    for name, t in sorted(header.items(), key=lambda kv: kv[1]["data_offsets"][0] if kv[0] != "__metadata__" else -1):
        if name == "__metadata__":
            out_header[name] = t
            continue
        a, b = t["data_offsets"]
        raw = body[a:b]
        if t["dtype"] == "F32":
            n = len(raw) // 4
            raw = struct.pack("<%de" % n, *struct.unpack("<%df" % n, raw))
            dtype = "F16"
        else:
            dtype = t["dtype"]
        out_header[name] = {"dtype": dtype, "shape": t["shape"], "data_offsets": [off, off + len(raw)]}
        chunks.append(raw)
        off += len(raw)
    h = json.dumps(out_header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    return struct.pack("<Q", len(h)) + h + b"".join(chunks)


class HubState:
    def __init__(self):
        self.repos = {}
        self.by_sha = {}         # (repo, sha256) -> file
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.reset_knobs()

    def reset_knobs(self):
        self.corrupt = {}        # key -> responses left to corrupt
        self.stall_after = {}    # key -> offset
        self.drop_after = {}     # key -> [offset, times]
        self.throttle = {}       # key -> bytes per second
        self.hidden = set()      # keys answered 404
        self.served = {}         # key -> body bytes sent
        self.requests = []       # (method, path, headers dict)

    def add_repo(self, repo):
        self.repos[repo.name] = repo
        for f in repo.files.values():
            if f.lfs:
                self.by_sha[(repo.name, f.sha256)] = (repo, f)

    def count(self, key, n):
        with self.lock:
            self.served[key] = self.served.get(key, 0) + n


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True   # headers and body go out as separate writes
    server_version = "HubStandIn/1"

    def log_message(self, fmt, *args):
        pass

    @property
    def state(self):
        return self.server.state

    def do_GET(self):
        self.route(body=True)

    def do_HEAD(self):
        self.route(body=False)

    def error(self, code, msg, code_name=None):
        data = json.dumps({"error": msg}).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        if code_name:
            self.send_header("X-Error-Code", code_name)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def authorized(self, repo):
        if repo.token is None:
            return True
        return self.headers.get("Authorization") == "Bearer " + repo.token

    def route(self, body):
        url = urllib.parse.urlsplit(self.path)
        path = urllib.parse.unquote(url.path)
        with self.state.lock:
            self.state.requests.append((self.command, path, dict(self.headers)))
        parts = path.strip("/").split("/")
        try:
            if len(parts) >= 5 and parts[0] == "api" and parts[1] == "models" and parts[4] == "revision":
                return self.revision("/".join(parts[2:4]), "/".join(parts[5:]), url.query)
            if len(parts) >= 5 and parts[2] == "resolve":
                return self.resolve("/".join(parts[0:2]), parts[3], "/".join(parts[4:]), body)
            if len(parts) == 4 and parts[0] == "storage":
                hit = self.state.by_sha.get(("/".join(parts[1:3]), parts[3]))
                if hit is None:
                    return self.error(404, "no such object")
                repo, f = hit
                return self.send_file(repo, f, body, extra={})
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True
            return
        self.error(404, "Not found")

    def repo_or_error(self, name):
        repo = self.state.repos.get(name)
        if repo is None:
            self.error(404, "Repository not found", "RepoNotFound")
            return None
        if not self.authorized(repo):
            self.error(401, "Access to model %s is restricted. You must have access to it and be "
                       "authenticated to access it. Please log in." % name, "GatedRepo")
            return None
        return repo

    def revision(self, name, rev, query):
        repo = self.repo_or_error(name)
        if repo is None:
            return
        if rev not in ("main", repo.sha):
            return self.error(404, "Invalid rev id: " + rev, "RevisionNotFound")
        blobs = "blobs=true" in query
        sibs = []
        for f in repo.files.values():
            s = {"rfilename": f.rfilename}
            if blobs:
                s["blobId"] = f.blob_id
                s["size"] = f.size
                if f.lfs:
                    s["lfs"] = {"sha256": f.sha256, "size": f.size, "pointerSize": f.pointer_size}
            sibs.append(s)
        data = json.dumps({"_id": "x", "id": name, "modelId": name, "sha": repo.sha,
                           "private": False, "gated": repo.token is not None and "manual",
                           "tags": ["diffusers"], "siblings": sibs}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def resolve(self, name, rev, rfilename, body):
        repo = self.repo_or_error(name)
        if repo is None:
            return
        if rev not in ("main", repo.sha):
            return self.error(404, "Invalid rev id: " + rev, "RevisionNotFound")
        f = repo.files.get(rfilename)
        if f is None or (name + ":" + rfilename) in self.state.hidden:
            return self.error(404, "Entry not found", "EntryNotFound")
        if f.lfs:
            host = "127.0.0.1:%d" % self.server.server_address[1]
            self.send_response(302)
            self.send_header("Location", "http://%s/storage/%s/%s" % (host, name, f.sha256))
            self.send_header("X-Repo-Commit", repo.sha)
            self.send_header("X-Linked-Etag", '"%s"' % f.sha256)
            self.send_header("X-Linked-Size", str(f.size))
            self.send_header("ETag", '"%s"' % f.blob_id)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        self.send_file(repo, f, body, extra={"X-Repo-Commit": repo.sha, "ETag": '"%s"' % f.blob_id})

    def send_file(self, repo, f, body, extra):
        key = repo.name + ":" + f.rfilename
        start, end = 0, f.size - 1
        rng = self.headers.get("Range")
        partial = False
        if rng and rng.startswith("bytes="):
            a, _, b = rng[6:].partition("-")
            try:
                start = int(a)
                end = int(b) if b else f.size - 1
            except ValueError:
                return self.error(400, "bad range")
            if start >= f.size or end < start:
                self.send_response(416)
                self.send_header("Content-Range", "bytes */%d" % f.size)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            end = min(end, f.size - 1)
            partial = True
        length = end - start + 1
        self.send_response(206 if partial else 200)
        for k, v in extra.items():
            self.send_header(k, v)
        self.send_header("Accept-Ranges", "bytes")
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(length))
        if partial:
            self.send_header("Content-Range", "bytes %d-%d/%d" % (start, end, f.size))
        self.end_headers()
        if not body:
            return
        st = self.state
        with st.lock:
            corrupt = st.corrupt.get(key, 0) > 0
            if corrupt:
                st.corrupt[key] -= 1
            stall = st.stall_after.get(key)
            drop = st.drop_after.get(key)
            if drop is not None and drop[1] > 0 and start <= drop[0] <= end:
                drop[1] -= 1
                drop_at = drop[0]
            else:
                drop_at = None
            rate = st.throttle.get(key)
        flip = f.size // 2
        off = start
        t0 = time.monotonic()
        sent = 0
        while off <= end:
            limit = end + 1
            if stall is not None and off <= stall:
                limit = min(limit, stall)
            if drop_at is not None:
                limit = min(limit, drop_at)
            if off == stall:
                # a stalled server: the connection stays open, no byte comes
                st.stop.wait(120)
                self.close_connection = True
                return
            if off == drop_at:
                self.close_connection = True
                self.connection.shutdown(socket.SHUT_RDWR)
                return
            n = min(limit - off, 256 * 1024 if rate is None else 64 * 1024)
            chunk = f.read(off, n)
            if corrupt and off <= flip < off + n:
                chunk = bytearray(chunk)
                chunk[flip - off] ^= 0x5A
            self.wfile.write(chunk)
            st.count(key, n)
            off += n
            sent += n
            if rate:
                ahead = sent / rate - (time.monotonic() - t0)
                if ahead > 0:
                    time.sleep(ahead)
            if st.stop.is_set():
                self.close_connection = True
                return


class HubServer(http.server.ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, state):
        super().__init__(("127.0.0.1", 0), Handler)
        self.state = state

    @property
    def port(self):
        return self.server_address[1]

    def start(self):
        self.thread = threading.Thread(target=self.serve_forever, daemon=True)
        self.thread.start()
        return self

    def close(self):
        self.state.stop.set()
        self.shutdown()
        self.server_close()


def state_from_config(cfg):
    """cfg: {"repos": [{"name", "folder"?, "token"?, "files"?: [{"rfilename",
    "generated_size", "seed"} | {"rfilename", "text"}], "fp16_of"?: [paths]}],
    "cache_dir"?}."""
    st = HubState()
    for r in cfg["repos"]:
        repo = Repo(r["name"], r.get("token"))
        if r.get("folder"):
            repo.add_folder(r["folder"])
        for path in r.get("fp16_of", []):
            src = repo.files[path]
            name = path[:-len(".safetensors")] + ".fp16.safetensors"
            repo.add(RepoFile(name, data=to_fp16_safetensors(bytes(src.data))))
        for f in r.get("files", []):
            if "generated_size" in f:
                repo.add(RepoFile(f["rfilename"], generated=GeneratedFile(
                    f["generated_size"], f.get("seed", f["rfilename"]), cfg.get("cache_dir"))))
            else:
                repo.add(RepoFile(f["rfilename"], data=f["text"].encode()))
        st.add_repo(repo)
    return st


def main():
    with open(sys.argv[1]) as f:
        cfg = json.load(f)
    srv = HubServer(state_from_config(cfg)).start()
    print("port %d" % srv.port, flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        srv.close()


if __name__ == "__main__":
    main()
