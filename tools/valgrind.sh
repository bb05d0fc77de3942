#!/bin/sh
# One reverie-cli generation under Valgrind memcheck: no invalid accesses and
# no definite leaks (tools/valgrind.supp names the only errors ignored, all
# in the system's dynamic loader and the Vulkan driver stack).
#
#   tools/valgrind.sh [BUILD_DIR] [MODEL_DIR]
#
# BUILD_DIR defaults to build (made if missing), MODEL_DIR to the embedded
# model. Lavapipe under Valgrind is slow: this takes several minutes. Exits
# non-zero with the log's path when memcheck reports an error.
set -eu
cd "$(dirname "$0")/.."
BUILD=${1:-build}
MODEL=${2:-data/models/reverie-tiny}
if [ ! -f "$BUILD/build.ninja" ]; then
  meson setup "$BUILD"
fi
ninja -C "$BUILD" src/cli/reverie-cli
OUT=$(mktemp -d "${TMPDIR:-/tmp}/reverie-valgrind-XXXXXX")
LOG="$OUT/memcheck.log"
echo "valgrind: one 64×64 generation with $MODEL; log in $LOG"
status=0
valgrind --tool=memcheck --leak-check=full --show-leak-kinds=definite \
  --errors-for-leak-kinds=definite --track-origins=yes --num-callers=40 \
  --suppressions=tools/valgrind.supp --error-exitcode=99 --log-file="$LOG" \
  "$BUILD/src/cli/reverie-cli" generate "a red circle on a blue background" \
  -o "$OUT/out.png" --model "$MODEL" --size 64x64 --seed 1 --steps 2 --prior-steps 2 -q \
  || status=$?
grep -E "ERROR SUMMARY|definitely lost|indirectly lost|possibly lost" "$LOG" || true
if [ "$status" -ne 0 ]; then
  echo "valgrind: memcheck reported errors (status $status); see $LOG" >&2
  exit 1
fi
test -s "$OUT/out.png"
echo "valgrind: clean"
rm -rf "$OUT"
