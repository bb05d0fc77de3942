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
