#!/bin/sh
# Sets up a Debian 12 machine (as root) and runs the whole test suite, headless:
# no GPU (Vulkan on lavapipe) and no display (Xvfb and a D-Bus session are
# started for the UI tests).
set -eu
cd "$(dirname "$0")/.."
if [ "${REVERIE_SKIP_DEPS:-0}" != 1 ]; then
  tools/install-deps.sh
fi
BUILD=${BUILD:-build}
if [ -d "$BUILD" ]; then
  meson setup --reconfigure "$BUILD"
else
  meson setup "$BUILD"
fi
ninja -C "$BUILD"
# the OpenAI Node SDK for the server suite, from its lock file, into the build
# folder (the only download of a test run)
if [ -f "$BUILD/tests/server/package-lock.json" ]; then
  npm ci --prefix "$BUILD/tests/server" --no-audit --no-fund --loglevel=error
fi
meson test -C "$BUILD" --print-errorlogs --num-processes 2

# every libFuzzer target (the parsers of outside data) for a short time, from
# a clang build in build-fuzz/, from a fixed seed so that a run's verdict does
# not depend on the draw (long runs with fresh seeds: tools/fuzz.sh);
# REVERIE_FUZZ_SECONDS=0 skips it
FUZZ_SECONDS=${REVERIE_FUZZ_SECONDS:-10}
if [ "$FUZZ_SECONDS" -gt 0 ]; then
  REVERIE_FUZZ_SEED=${REVERIE_FUZZ_SEED:-1} tools/fuzz.sh "$FUZZ_SECONDS"
fi

# REVERIE_SANITIZE=1: a second build with clang's AddressSanitizer and
# UndefinedBehaviorSanitizer (and the libFuzzer targets) runs the ops, golden,
# pipeline, server and fuzz suites; any report fails the run.
if [ "${REVERIE_SANITIZE:-0}" = 1 ]; then
  ASAN_BUILD=${ASAN_BUILD:-build-asan}
  if [ ! -f "$ASAN_BUILD/build.ninja" ]; then
    CC=clang meson setup "$ASAN_BUILD" -Db_sanitize=address,undefined -Db_lundef=false \
      -Dapp=disabled -Dfuzzing=true
  fi
  ninja -C "$ASAN_BUILD"
  if [ -f "$ASAN_BUILD/tests/server/package-lock.json" ]; then
    npm ci --prefix "$ASAN_BUILD/tests/server" --no-audit --no-fund --loglevel=error
  fi
  UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
  ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
    meson test -C "$ASAN_BUILD" --print-errorlogs --num-processes 2 \
      --suite ops --suite golden --suite pipeline --suite server --suite fuzz
fi
