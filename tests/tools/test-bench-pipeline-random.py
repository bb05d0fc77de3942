#!/usr/bin/python3
"""reverie-dev bench pipeline --random-weights on the in-tree Kandinsky 2.2
reference configs (tiny, random weights): the JSON parses; each stage reports
its weights and its work apart; the whole-run figure is the stages' weights
together plus the largest stage's work. A correctness check, not a timing one."""
import os
import sys
import tempfile

from tapjson import run_json

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
MODELS = os.path.join(ROOT, "tests", "reference", "kandinsky-2-2-tiny", "models")


def main():
    dev = sys.argv[1]
    print("1..3")
    with tempfile.TemporaryDirectory() as d:
        # the layout the bench reads: DIR/prior/…, DIR/decoder/…
        os.symlink(os.path.join(MODELS, "kandinsky-2-2-prior-tiny"), os.path.join(d, "prior"))
        os.symlink(os.path.join(MODELS, "kandinsky-2-2-decoder-tiny"), os.path.join(d, "decoder"))
        out, rc = run_json([dev, "bench", "pipeline", "--random-weights", d, "--size", "64x64", "--runs", "1",
                            "--json"], [(2, "stages"), (3, "whole run")], 300)
    if out is None:
        return 1
    stages = {s["stage"]: s for s in out.get("stages", [])}
    names = ["text encoder", "prior step", "UNet step", "MoVQ decode"]
    good = rc == 0 and all(n in stages for n in names)
    for n in names[:3]:
        # each loads its own weights and needs some work memory on top
        good = good and stages[n]["weight_bytes"] > 0 and stages[n]["activation_bytes"] > 0 and \
            stages[n]["peak_bytes"] >= stages[n]["activation_bytes"]
    # the MoVQ's weights came with the UNet's; its decode is work only
    good = good and stages["MoVQ decode"]["weight_bytes"] == 0 and stages["MoVQ decode"]["activation_bytes"] > 0
    print("%s 2 - every stage reports its weights and its work" % ("ok" if good else "not ok"))
    whole = stages.get("whole run", {})
    weights = sum(stages[n]["weight_bytes"] for n in names) if good else -1
    work = max(stages[n]["activation_bytes"] for n in names) if good else -1
    ok3 = good and whole.get("weight_bytes") == weights and whole.get("activation_bytes") == work and \
        whole.get("peak_bytes") == weights + work
    print("%s 3 - the whole run is the weights together (%s) plus the largest work (%s): %s" %
          ("ok" if ok3 else "not ok", weights, work, whole.get("peak_bytes")))
    return 0 if good and ok3 else 1


if __name__ == "__main__":
    sys.exit(main())
