#!/bin/sh
# Retrains reverie-tiny from scratch (with its x4 upscaler) and exports it to data/models/reverie-tiny
# (+ reference cases).
#   tools/train/train_all.sh [RUN_DIR]        (default RUN_DIR: /tmp/reverie-tiny-run)
# Needs Debian's python3-torch, python3-numpy, python3-pil, and libopenblas0-pthread (with the
# reference BLAS that python3-torch otherwise uses, the linear layers are ~15x slower).
#
# Two jobs run at a time, one thread each, niced so that other work on the machine keeps going.
# The first group of stages has fixed step counts (about 12 min on the 2-core machine); the rest
# have time budgets that add up to TRAIN_MINUTES (default 140), and the upscaler, last, has 8% of
# TRAIN_MINUTES on top, so the whole recipe takes about 1.08 x TRAIN_MINUTES + 22 minutes on any
# machine, and a faster machine simply trains more steps.
# TRAIN_STEP_SCALE (default 1) scales the fixed step counts (a quick trial of the recipe:
# TRAIN_MINUTES=3 TRAIN_STEP_SCALE=0.01).
#
# Every stage resumes from its checkpoint (a time budget goes on where it stopped), so rerunning
# the same command after an interruption continues.
set -eu
HERE=$(cd "$(dirname "$0")" && pwd)
RUN=${1:-/tmp/reverie-tiny-run}
MINUTES=${TRAIN_MINUTES:-140}
SCALE=${TRAIN_STEP_SCALE:-1}
for v in "TRAIN_MINUTES=$MINUTES" "TRAIN_STEP_SCALE=$SCALE"; do
  if ! awk -v x="${v#*=}" 'BEGIN { exit !(x ~ /^[0-9]*\.?[0-9]+$/ && x + 0 > 0) }'; then
    echo "train_all.sh: $v: a positive number is needed" >&2
    exit 2
  fi
done
PY="nice -n 10 /usr/bin/python3"
export OPENBLAS_NUM_THREADS=1
mkdir -p "$RUN"
T="$PY $HERE/train.py"
BIG=100000000   # with a time budget, the budget ends a stage, not the step count

# minutes: a share of the time budget; steps: a fixed step count, scaled
minutes() { awk -v t="$MINUTES" -v f="$1" 'BEGIN { printf "%.2f", t * f }'; }
steps() { awk -v s="$SCALE" -v n="$1" 'BEGIN { n = int(n * s); print (n < 1 ? 1 : n) }'; }

# phase NAME STAGE ARGS...: trains STAGE (in RUN/STAGE), then keeps its folder as RUN/NAME, so a
# later phase of the same stage starts afresh, from RUN/NAME/final.pt with --init. Done once:
# skipped when RUN/NAME/final.pt is there.
phase() {
  name=$1
  stage=$2
  shift 2
  if [ ! -f "$RUN/$name/final.pt" ]; then
    $T "$stage" --run "$RUN" "$@" >> "$RUN/$name.log" 2>&1
    rm -rf "$RUN/$name"
    mv "$RUN/$stage" "$RUN/$name"
  fi
}

$T tokenizer --run "$RUN"

# 1. MoVQ | the vision tower | the text tower, then the prior
$T movq --run "$RUN" --steps "$(steps 520)" --batch 24 --threads 1 >> "$RUN/movq.log" 2>&1 &
MOVQ=$!
$T clip --part vision --run "$RUN" --steps "$(steps 1500)" --batch 64 --lr 2e-3 --threads 1 \
  >> "$RUN/clip_vision.log" 2>&1 &
CLIP=$!
$T clip --part text --run "$RUN" --steps "$(steps 450)" --batch 64 --lr 2e-3 --threads 1 >> "$RUN/clip_text.log" 2>&1
phase prior-base prior --steps "$(steps 1800)" --batch 96 --lr 1e-3 --threads 1 &
PRIOR=$!
wait $MOVQ
wait $CLIP
wait $PRIOR

# 2. the UNet (needs the MoVQ encoder only), 70% of the budget: one network learns text-to-image
#    and inpainting; the export writes the decoder and the inpaint decoder from it. Beside it:
#    the MoVQ decoder sharpened with the encoder (the latent space) frozen; the prior trained on
#    with a fresh schedule on scenes it has not seen (--seed 1), which places shapes better; the
#    MoVQ decoder learning the UNet's x0 estimates at low noise (what a sampler's last steps hand
#    it) from the UNet as it is then.
(
  phase movq_decoder-sharp movq_decoder --steps "$(steps 2000)" --batch 16 --lr 5e-4 --threads 1
  $T prior --run "$RUN" --init "$RUN/prior-base/final.pt" --seed 1 --batch 96 --lr 2e-4 \
    --minutes "$(minutes 0.35)" --steps $BIG --threads 1 >> "$RUN/prior.log" 2>&1
  U=$RUN/unet/ckpt.pt
  [ -f "$U" ] || U=$RUN/unet-plain/final.pt
  phase movq_decoder-mix movq_decoder --init "$RUN/movq_decoder-sharp/final.pt" --unet "$U" --unet-mix 0.5 \
    --batch 16 --lr 5e-4 --minutes "$(minutes 0.25)" --steps $BIG --threads 1
) &
SIDE=$!
phase unet-plain unet --batch 24 --lr 1e-3 --minutes "$(minutes 0.70)" --steps $BIG --threads 1
wait $SIDE

# 3. the last 30%: the UNet goes on with a share of its embeddings given the deviations of the
#    trained prior's samples (--prior-dev), so it reads what the prior hands it at run time;
#    beside it, the MoVQ decoder learns the x0 estimates of the UNet of step 2
$T movq_decoder --run "$RUN" --init "$RUN/movq_decoder-mix/final.pt" --unet "$RUN/unet-plain/final.pt" \
  --unet-mix 0.7 --batch 16 --lr 5e-4 --minutes "$(minutes 0.30)" --steps $BIG --threads 1 \
  >> "$RUN/movq_decoder.log" 2>&1 &
DEC=$!
$T unet --run "$RUN" --init "$RUN/unet-plain/final.pt" --prior-dev 0.6 --batch 32 --reuse 3 --lr 2e-4 \
  --minutes "$(minutes 0.30)" --steps $BIG --threads 1 >> "$RUN/unet.log" 2>&1
wait $DEC

# 4. the x4 upscaler (8% of the budget, on top of it) learns to enlarge what the final MoVQ decoder
#    and UNet hand over (a pool of their outputs is computed first, about 1 min); beside it the
#    other components are exported and checked. Then the upscaler's export and its held-out PSNR.
$T upscaler --run "$RUN" --pool "$(steps 1024)" --minutes "$(minutes 0.08)" --steps $BIG --threads 1 \
  >> "$RUN/upscaler.log" 2>&1 &
UPSCALER=$!
$PY "$HERE/export.py" --run "$RUN"
$PY "$HERE/check_golden.py" "$HERE/../../data/models/reverie-tiny-reference"
$PY "$HERE/evaluate.py" --n 200
wait $UPSCALER
$PY "$HERE/export.py" --run "$RUN" --only upscaler
$PY "$HERE/upscale_eval.py" --n 100 --n1024 10 --threads 1
