#!/bin/sh
# Fine-tunes a trained run (train_all.sh) on a CUDA GPU, the way the shipped weights were made:
#   tools/train/finetune_cuda.sh RUN_DIR [NEW_RUN_DIR]     (default NEW_RUN_DIR: RUN_DIR-cuda)
# The new run folder shares the tokenizer, the text tower and the MoVQ encoder with RUN_DIR; the
# UNet, the prior, the MoVQ decoder and the vision tower start from RUN_DIR's final weights and
# train for a fixed time each (--minutes: the schedule spans the time, so the number of steps
# depends on the machine). About 11 minutes on one H100 beside 16 CPU cores, which build the
# scenes (--workers). Needs PyTorch with CUDA, numpy and Pillow; python3 must be that Python.
set -eu
HERE=$(cd "$(dirname "$0")" && pwd)
OLD=$(cd "$1" && pwd)
RUN=${2:-$OLD-cuda}
PY=${PY:-python3}
mkdir -p "$RUN"
for s in tokenizer clip_text movq; do
  [ -e "$RUN/$s" ] || ln -s "$OLD/$s" "$RUN/$s"
done
T="$PY -u $HERE/train.py"
C="--run $RUN --device cuda --steps 100000000"

# 1. the UNet (batch 256, each batch of encoded examples serving two steps) beside the prior
$T unet $C --workers 8 --batch 256 --reuse 2 --lr 5e-4 --minutes 6 --init "$OLD/unet/final.pt" > "$RUN/unet.log" 2>&1 &
UNET=$!
$T prior $C --workers 2 --batch 512 --lr 5e-4 --minutes 3 --init "$OLD/prior/final.pt" > "$RUN/prior.log" 2>&1
wait $UNET

# 2. the MoVQ decoder against the new UNet's x0 estimates
$T movq_decoder $C --workers 12 --batch 64 --lr 2e-4 --unet-mix 0.7 --minutes 1.5 \
  --init "$OLD/movq_decoder/final.pt" > "$RUN/movq_decoder.log" 2>&1

# 3. the vision tower (what variations read)
$T clip --part vision $C --workers 14 --batch 256 --lr 1e-3 --minutes 2.2 \
  --init "$OLD/clip_vision/final.pt" > "$RUN/clip_vision.log" 2>&1

echo "fine-tuned run: $RUN (export with: tools/train/export.py --run $RUN)"
