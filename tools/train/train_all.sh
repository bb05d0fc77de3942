#!/bin/sh
# Retrains reverie-tiny from scratch and exports it to data/models/reverie-tiny (+ reference cases).
#   tools/train/train_all.sh [RUN_DIR]        (default RUN_DIR: /tmp/reverie-tiny-run)
# Every stage resumes from RUN_DIR/<stage>/ckpt.pt, so rerunning after an interruption continues.
# Needs Debian's python3-torch, python3-numpy, python3-pil, and libopenblas0-pthread (with the
# reference BLAS that python3-torch otherwise uses, the linear layers are ~15x slower).
# Two jobs run at a time, one thread each, niced so that other work on the machine keeps going.
set -eu
HERE=$(cd "$(dirname "$0")" && pwd)
RUN=${1:-/tmp/reverie-tiny-run}
PY="nice -n 10 /usr/bin/python3"
export OPENBLAS_NUM_THREADS=1
mkdir -p "$RUN"
T="$PY $HERE/train.py"
$T tokenizer --run "$RUN"

# 1. MoVQ | the vision tower | the text tower, then the prior
$T movq --run "$RUN" --steps 520 --batch 24 --threads 1 > "$RUN/movq.log" 2>&1 &
MOVQ=$!
(
  $T clip --part vision --run "$RUN" --steps 1500 --batch 64 --lr 2e-3 --threads 1 > "$RUN/clip_vision.log" 2>&1
) &
CLIP=$!
$T clip --part text --run "$RUN" --steps 450 --batch 64 --lr 2e-3 --threads 1 > "$RUN/clip_text.log" 2>&1
$T prior --run "$RUN" --steps 1800 --batch 96 --lr 1e-3 --threads 1 > "$RUN/prior.log" 2>&1 &
PRIOR=$!
wait $MOVQ

# 2. the UNet (needs MoVQ only): one network learns text-to-image and inpainting; the
#    export writes the decoder and the inpaint decoder from it
wait $CLIP $PRIOR
$T unet --run "$RUN" --steps 7000 --batch 24 --lr 1e-3 --threads 2 > "$RUN/unet.log" 2>&1

# 3. export, reference cases, checks
$PY "$HERE/export.py" --run "$RUN"
$PY "$HERE/check_golden.py" "$HERE/../../data/models/reverie-tiny-reference"
$PY "$HERE/evaluate.py" --n 200
