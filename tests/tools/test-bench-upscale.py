#!/usr/bin/python3
"""reverie-dev bench upscale on the in-tree SRVGG reference net (random
weights, ×4): the JSON parses and has the passes' numbers, and the tiled
result equals the untiled one (tiles overlapping by the net's reach are
exact for SRVGGNetCompact). A correctness check, not a timing one."""
import json
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
MODEL = os.path.join(ROOT, "tests", "reference", "real-esrgan-tiny", "models", "srvgg_prelu_x4")


def main():
    dev = sys.argv[1]
    print("1..3")
    r = subprocess.run([dev, "bench", "upscale", "--model", MODEL, "--size", "256x256", "--runs", "1",
                        "--json"], capture_output=True, text=True, timeout=120)
    try:
        out = json.loads(r.stdout)
        print("ok 1 - the output parses as JSON")
    except ValueError:
        print("not ok 1 - the output parses as JSON (status %d)\n# %s" % (r.returncode, r.stderr.strip()))
        print("not ok 2 - passes # no output")
        print("not ok 3 - tiled vs untiled # no output")
        return 1
    passes = out.get("passes", [])
    good = (r.returncode == 0 and len(passes) == 1 and passes[0]["input"] == "64x64" and
            passes[0]["output"] == "256x256" and passes[0]["ms"] > 0 and passes[0]["gflop"] > 0 and
            passes[0]["tiles"] >= 1 and passes[0]["peak_bytes"] > 0)
    print("%s 2 - one pass 64x64 -> 256x256 with time, GFLOP, tiles and peak memory" % ("ok" if good else "not ok"))
    t = out.get("tiled_vs_untiled", {})
    exact = t.get("overlap_covers_reach") is True and t.get("tiles", 0) > 1 and t.get("max_abs_diff", 1) <= 1e-6
    print("%s 3 - %d tiles give the untiled result (max |difference| %s)" %
          ("ok" if exact else "not ok", t.get("tiles", 0), t.get("max_abs_diff")))
    return 0 if good and exact else 1


if __name__ == "__main__":
    sys.exit(main())
