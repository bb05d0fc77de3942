"""For the tests of tools/ that run PyTorch: a TAP skip (exit 77) where python3-torch is not
installed, and tools/train on sys.path for its modules (stio, reverie_models). Import it
first: `from needs_torch import ROOT`."""
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

try:
    import torch  # noqa: F401
except ImportError:
    print("1..0 # SKIP python3-torch is not installed")
    sys.exit(77)

sys.path.insert(0, os.path.join(ROOT, "tools", "train"))
