#!/usr/bin/python3
"""reverie-dev bench upscale on the in-tree SRVGG reference net (random
weights, ×4): the JSON parses and has the passes' numbers, and the tiled
result equals the untiled one (tiles overlapping by the net's reach are
exact for SRVGGNetCompact). A correctness check, not a timing one."""
import os
import sys

from tapjson import run_json

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
MODEL = os.path.join(ROOT, "tests", "reference", "real-esrgan-tiny", "models", "srvgg_prelu_x4")


def main():
    dev = sys.argv[1]
    print("1..3")
    out, rc = run_json([dev, "bench", "upscale", "--model", MODEL, "--size", "256x256", "--runs", "1", "--json"],
                       [(2, "passes"), (3, "tiled vs untiled")], 120)
    if out is None:
        return 1
    passes = out.get("passes", [])
    good = (rc == 0 and len(passes) == 1 and passes[0]["input"] == "64x64" and
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
