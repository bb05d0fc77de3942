#!/usr/bin/python3
"""Runs the example front end twice with the embedded model and checks that it
wrote a real picture: a valid PPM of the model's size, not one flat colour,
the same bytes for the same seed."""
import os
import subprocess
import sys
import tempfile


def read_ppm(path):
    with open(path, "rb") as f:
        data = f.read()
    magic, dims, maxval, pixels = data.split(b"\n", 3)
    w, h = (int(v) for v in dims.split())
    assert magic == b"P6" and maxval == b"255", f"{path}: not a binary PPM"
    assert len(pixels) == w * h * 3, f"{path}: {len(pixels)} bytes of pixels for {w}x{h}"
    return w, h, pixels


def main():
    exe = sys.argv[1]
    with tempfile.TemporaryDirectory() as tmp:
        outs = []
        for k in range(2):
            out = os.path.join(tmp, f"out{k}.ppm")
            r = subprocess.run([exe, "a small red circle at the left on a blue background", out, "4"],
                               capture_output=True, text=True, timeout=300)
            sys.stderr.write(r.stderr)
            assert r.returncode == 0, f"the example failed with status {r.returncode}"
            assert "64x64, seed 42" in r.stdout, r.stdout
            outs.append(read_ppm(out))
        w, h, pixels = outs[0]
        assert (w, h) == (64, 64), (w, h)
        assert len(set(pixels[i:i + 3] for i in range(0, len(pixels), 3))) > 8, "a flat picture"
        assert outs[0] == outs[1], "the same seed gave different pictures"
        # the prompt asks for a blue background: the corners are mostly blue
        corner = pixels[0:3]
        assert corner[2] > corner[0] and corner[2] > corner[1], f"corner {tuple(corner)} is not blue"
    print("example-generate: ok")


if __name__ == "__main__":
    main()
