#!/bin/sh
# Sets up a Debian 12 machine (as root), builds Reverie and runs it: with a
# prompt, a headless generation to reverie.png with the embedded model;
# without one, the studio.
set -eu
cd "$(dirname "$0")/.."
if [ "${REVERIE_SKIP_DEPS:-0}" != 1 ]; then
  tools/install-deps.sh
fi
[ -d build ] || meson setup build
ninja -C build
./build/src/cli/reverie-cli devices
