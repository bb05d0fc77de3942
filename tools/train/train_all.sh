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

# 2. the UNet (needs the MoVQ encoder only): one network learns text-to-image and inpainting;
#    the export writes the decoder and the inpaint decoder from it. Beside it, the MoVQ decoder
#    is sharpened with the encoder (the latent space) frozen.
wait $CLIP $PRIOR
$T movq_decoder --run "$RUN" --steps 2000 --batch 16 --lr 5e-4 --threads 1 > "$RUN/movq_decoder.log" 2>&1 &
DEC=$!
$T unet --run "$RUN" --steps 22000 --batch 24 --lr 1e-3 --threads 1 > "$RUN/unet.log" 2>&1
wait $DEC

# 3. the MoVQ decoder also learns the trained UNet's x0 estimates at low noise (what a
#    sampler's last steps hand it)
$T movq_decoder --run "$RUN" --steps 10000 --batch 16 --lr 5e-4 --threads 2 --unet-mix 0.7 > "$RUN/movq_decoder2.log" 2>&1

# 4. export, reference cases, checks
$PY "$HERE/export.py" --run "$RUN"
$PY "$HERE/check_golden.py" "$HERE/../../data/models/reverie-tiny-reference"
$PY "$HERE/evaluate.py" --n 200
