#!/usr/bin/python3
"""Writes the seed corpus of the hub fuzz target (tests/fuzz/corpus/hub/):
what the Hub downloader reads from the network. The first byte picks the
parser: '0' the revision JSON, '1' the resolve response's headers (lines:
X-Repo-Commit, X-Linked-Etag, X-Linked-Size, ETag, Content-Range; an empty
line is an absent header), '2' a redirect (lines: base URL, Location), '3' a
model catalogue. Run by hand when the seeds change; the files are committed.

Usage: make-corpus-hub.py [CORPUS_DIR]"""
import json
import os
import sys

OUT = os.path.join(sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "corpus"), "hub")
SHA = "a" * 40
LFS = "0123456789abcdef" * 4


def put(name, text):
    os.makedirs(OUT, exist_ok=True)
    with open(os.path.join(OUT, name), "wb") as f:
        f.write(text.encode() if isinstance(text, str) else text)


def revision(sibs, sha=SHA):
    return "0" + json.dumps({"id": "o/r", "sha": sha, "siblings": sibs})


put("revision-blobs", revision([
    {"rfilename": "model_index.json", "size": 246, "blobId": "b" * 40},
    {"rfilename": "unet/config.json", "size": 1705, "blobId": "c" * 40},
    {"rfilename": "unet/diffusion_pytorch_model.safetensors", "size": 5,
     "blobId": "d" * 40, "lfs": {"sha256": LFS, "size": 5017, "pointerSize": 134}},
    {"rfilename": "unet/diffusion_pytorch_model.fp16.safetensors", "size": 9,
     "blobId": "e" * 40, "lfs": {"sha256": LFS[::-1], "size": 2508, "pointerSize": 134}},
    {"rfilename": "unet/diffusion_pytorch_model.bin", "size": 9000,
     "lfs": {"sha256": LFS, "size": 9000}},
    {"rfilename": "movq/diffusion_pytorch_model.safetensors.index.fp16.json", "size": 10, "blobId": "f" * 40},
    {"rfilename": "movq/diffusion_pytorch_model.fp16-00001-of-00002.safetensors", "size": 10,
     "lfs": {"sha256": LFS, "size": 10}},
    {"rfilename": "flax_model.msgpack", "size": 3}]))
put("revision-no-blobs", revision([{"rfilename": "model_index.json"}]))
put("revision-unsafe-name", revision([{"rfilename": "../../etc/passwd", "size": 1}]))
put("revision-duplicate", revision([{"rfilename": "a", "size": 1}, {"rfilename": "a", "size": 2}]))
put("revision-bad-sha", revision([], sha="not-hex"))
put("revision-negative-size", revision([{"rfilename": "a", "size": -1}]))
put("revision-big-size", revision([{"rfilename": "a", "size": 2 ** 62}]))
put("revision-bad-lfs", revision([{"rfilename": "a", "size": 1, "lfs": {"sha256": "xyz", "size": 1}}]))
put("revision-not-json", "0{\"sha\": ")
put("revision-deep", "0" + "[" * 200)
put("headers-lfs", "1%s\n\"%s\"\n5017\n\"%s\"\nbytes 1048576-5016/5017" % (SHA, LFS, "d" * 40))
put("headers-git", "1%s\n\n\nW/\"%s\"\nbytes 0-0/1" % (SHA, "b" * 40))
put("headers-bad", "1zz\n\"\"\n-5\n\"a b\"\nbytes 5-2/1")
put("headers-star", "1\n\n18446744073709551616\n\nbytes 0-9/*")
put("redirect-absolute", "2http://127.0.0.1:8080/o/r/resolve/main/a\nhttps://cdn-lfs.example.org/repos/ab/cd/%s?X-Amz=1" % LFS)
put("redirect-relative", "2https://huggingface.co/o/r/resolve/main/a\n/api/resolve-cache/models/o/r/%s/a" % SHA)
put("redirect-scheme", "2https://huggingface.co/a\nfile:///etc/passwd")
put("redirect-protocol-relative", "2https://huggingface.co/a\n//evil.example/x")
put("redirect-control", "2https://huggingface.co/a\n/x\ty")
with open(os.path.join(os.path.dirname(__file__), "..", "..", "data", "models", "catalogue.json"), "rb") as f:
    put("catalogue-shipped", b"3" + f.read())
put("catalogue-bad-local", "3" + json.dumps({"format": 1, "entries": [
    {"name": "x", "kind": "model-set", "title": "x", "licence": {"name": "a", "url": "https://a", "text": "t"},
     "variants": [{"name": "fp16", "download_bytes": 1}],
     "sources": [{"repo": "a/b", "local": "..", "include": ["/abs"]}]}]}))
