#!/bin/sh
# Builds the libFuzzer targets of tests/fuzz/ (safetensors files, config JSON,
# the tokenizer) with clang in build-fuzz/ and runs each for N seconds:
#
#   tools/fuzz.sh [N]            (N defaults to 60)
#
# New inputs go to build-fuzz/tests/fuzz/corpus-<target>/; the seed corpus in
# tests/fuzz/corpus/<target>/ is read, never written. A crash leaves its input
# as build-fuzz/tests/fuzz/<target>-crash-… and stops the script with status
# 1: once fixed, add that file to tests/fuzz/corpus/<target>/ so every build
# replays it (meson test --suite fuzz).
set -eu
cd "$(dirname "$0")/.."
N=${1:-60}
BUILD=build-fuzz
TARGETS="safetensors config tokenizer"
if [ ! -f "$BUILD/build.ninja" ]; then
  CC=clang meson setup "$BUILD" -Dfuzzing=true
fi
ninja -C "$BUILD" $(for t in $TARGETS; do printf 'tests/fuzz/fuzz-%s ' "$t"; done)
for t in $TARGETS; do
  echo "== fuzz-$t, $N s"
  "$BUILD/tests/fuzz/fuzz-$t" -max_total_time="$N" -timeout=10 -rss_limit_mb=4096 \
    -create_missing_dirs=1 -artifact_prefix="$BUILD/tests/fuzz/$t-" -print_final_stats=1 \
    "$BUILD/tests/fuzz/corpus-$t" "tests/fuzz/corpus/$t"
done
