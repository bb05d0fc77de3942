#!/bin/sh
# Builds the libFuzzer targets of tests/fuzz/ (safetensors files, config JSON,
# the tokenizer, image files, inpainting masks, PNG recipe chunks, the
# server's JSON and multipart bodies) with clang in build-fuzz/ and runs each
# for N seconds:
#
#   tools/fuzz.sh [N] [TARGET…]     (N defaults to 60; all targets by default)
#
# New inputs go to build-fuzz/tests/fuzz/corpus-<target>/; the seed corpus in
# tests/fuzz/corpus/<target>/ is read, never written. A crash leaves its input
# as build-fuzz/tests/fuzz/<target>-crash-… and stops the script with status
# 1: once fixed, add that file to tests/fuzz/corpus/<target>/ so every build
# replays it (meson test --suite fuzz).
set -eu
cd "$(dirname "$0")/.."
N=${1:-60}
[ $# -gt 0 ] && shift
BUILD=build-fuzz
TARGETS=${*:-"safetensors config tokenizer image mask recipe extend hub server-json server-multipart"}
# REVERIE_FUZZ_SEED fixes libFuzzer's random seed (the test run sets it, so a
# run explores the same inputs each time); unset, every run draws its own
SEED_ARG=""
if [ -n "${REVERIE_FUZZ_SEED:-}" ]; then
  SEED_ARG="-seed=$REVERIE_FUZZ_SEED"
fi
if [ ! -f "$BUILD/build.ninja" ]; then
  CC=clang meson setup "$BUILD" -Dfuzzing=true
fi
# the server targets exist where libsoup 3 is found
BUILT=""
for t in $TARGETS; do
  if ninja -C "$BUILD" -t targets all 2>/dev/null | grep -q "^tests/fuzz/fuzz-$t:"; then
    BUILT="$BUILT $t"
  else
    echo "fuzz: no target fuzz-$t in $BUILD, skipped" >&2
  fi
done
ninja -C "$BUILD" $(for t in $BUILT; do printf 'tests/fuzz/fuzz-%s ' "$t"; done)
for t in $BUILT; do
  echo "== fuzz-$t, $N s"
  "$BUILD/tests/fuzz/fuzz-$t" $SEED_ARG -max_total_time="$N" -timeout=10 -rss_limit_mb=4096 -error_exitcode=1 \
    -create_missing_dirs=1 -artifact_prefix="$BUILD/tests/fuzz/$t-" -print_final_stats=1 \
    "$BUILD/tests/fuzz/corpus-$t" "tests/fuzz/corpus/$t"
done
