#!/bin/sh
# Installs everything Reverie needs to build, run and test on Debian 12, as root.
set -eu
export DEBIAN_FRONTEND=noninteractive
apt-get update
apt-get install -y --no-install-recommends \
  ca-certificates git meson ninja-build pkg-config gcc clang glslc spirv-tools \
  libglib2.0-dev libglib2.0-bin libjson-glib-dev libsoup-3.0-dev libgnutls28-dev \
  libgtk-4-dev libadwaita-1-dev libgdk-pixbuf-2.0-dev librsvg2-common webp-pixbuf-loader \
  libvulkan-dev libvulkan1 mesa-vulkan-drivers vulkan-validationlayers vulkan-tools \
  libclang-rt-14-dev valgrind gettext desktop-file-utils appstream-util itstool \
  xvfb xauth dbus-x11 at-spi2-core python3-dogtail python3-pyatspi python3-pil xdotool imagemagick \
  python3-torch libopenblas0-pthread
# Node.js and npm for the API tests (the OpenAI SDK); Debian's packages unless
# a Node.js is already installed.
if ! command -v npm >/dev/null 2>&1; then
  apt-get install -y --no-install-recommends nodejs npm
fi
