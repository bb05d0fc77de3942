#!/bin/sh
# Sets up a Debian 12 machine (as root), builds Reverie and runs it with the
# embedded model: given a prompt, a headless generation to reverie.png (or
# the file named by -o); without one, the studio (which needs a display).
#
#   tools/run.sh "a red circle on a blue background" [-o out.png] [generate options…]
#   tools/run.sh
set -eu
cd "$(dirname "$0")/.."
if [ "${REVERIE_SKIP_DEPS:-0}" != 1 ]; then
  tools/install-deps.sh
fi
[ -d build ] || meson setup build
ninja -C build
if [ $# -eq 0 ]; then
  exec ./build/src/app/reverie
fi
prompt=$1
shift
case " $* " in
  *" -o "*|*" --output"*) exec ./build/src/cli/reverie-cli generate "$prompt" "$@" ;;
  *) exec ./build/src/cli/reverie-cli generate "$prompt" -o reverie.png "$@" ;;
esac
