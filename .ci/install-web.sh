#!/usr/bin/env bash
# Everything `semiseg serve` and its browser tests (Testing/web) need beyond the engine:
#  - Debian's Chromium (driven headless over the DevTools protocol; no browser is ever downloaded)
#    and chromium-driver (for anyone who prefers Selenium);
#  - the Mesa libraries the VTK 9.6.0 wheel renders offscreen with: EGL (libEGL + Mesa's EGL vendor
#    library + the llvmpipe DRI driver), GLX for a desktop with an X server, OSMesa as a last resort;
#  - the Python side: trame-slicer[standalone]==2.0.0 (pins slicer-core 5.11 and VTK 9.6.0) and
#    websocket-client for the tests' DevTools connection.
# Idempotent: apt runs only when a package is missing; pip skips what is already satisfied.
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES=(chromium chromium-driver libegl1 libegl-mesa0 libgbm1 libgl1 libgl1-mesa-dri libglx-mesa0 libosmesa6)
missing=()
for package in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || missing+=("$package")
done
if ((${#missing[@]})); then
  sudo=""
  if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
  export DEBIAN_FRONTEND=noninteractive
  $sudo apt-get update -q
  $sudo apt-get install -y -q "${missing[@]}"
fi

export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_PROGRESS_BAR=off
python -m pip install -q "trame-slicer[standalone]==2.0.0" "websocket-client>=1.6,<2"
