#!/usr/bin/env bash
# Everything `semiseg serve` and its browser tests (Testing/web) need beyond the engine:
#  - Debian's Chromium (driven headless over the DevTools protocol; no browser is ever downloaded)
#    and chromium-driver (for anyone who prefers Selenium);
#  - the Mesa libraries the VTK 9.6.0 wheel renders offscreen with: EGL (libEGL + Mesa's EGL vendor
#    library + the llvmpipe DRI driver), GLX for a desktop with an X server, OSMesa as a last resort;
#  - the Python side: trame-slicer[standalone]==2.0.0 (pins slicer-core 5.11 and VTK 9.6.0) and
#    websocket-client for the tests' DevTools connection.
# Idempotent: apt runs only when a package is missing; pip skips what is already satisfied.
# It prints what it is about to do first; with --dry-run it only prints it (and apt-get's simulation).
set -euo pipefail
cd "$(dirname "$0")/.."
dry_run=0
if [ "${1:-}" = "--dry-run" ]; then dry_run=1; fi

APT_PACKAGES=(chromium chromium-driver libegl1 libegl-mesa0 libgbm1 libgl1 libgl1-mesa-dri libglx-mesa0 libosmesa6)
PIP_PACKAGES=("trame-slicer[standalone]==2.0.0" "websocket-client>=1.6,<2")
missing=()
for package in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || missing+=("$package")
done
sudo=""
if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
echo "install-web.sh: Debian packages needed: ${APT_PACKAGES[*]}"
if ((${#missing[@]})); then
  echo "install-web.sh: missing: ${missing[*]}"
  echo "install-web.sh: about to run as root${sudo:+ (with sudo)}: apt-get update; apt-get install -y ${missing[*]}"
  echo "install-web.sh: apt-get adds their dependencies (117 new packages on a fresh Debian 12) and upgrades"
  echo "                installed packages they need (22 there), Chromium included"
  if ((dry_run)); then
    apt-get -s install "${missing[@]}" 2>/dev/null | grep -E "^[0-9]+ upgraded" || true
  fi
else
  echo "install-web.sh: all are installed: apt-get is not run"
fi
echo "install-web.sh: about to pip-install into $(python -c 'import sys; print(sys.prefix)'): ${PIP_PACKAGES[*]}"
if ((dry_run)); then
  exit 0
fi
if ((${#missing[@]})); then
  export DEBIAN_FRONTEND=noninteractive
  $sudo apt-get update -q
  $sudo apt-get install -y -q "${missing[@]}"
fi

export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_PROGRESS_BAR=off
python -m pip install -q "${PIP_PACKAGES[@]}"
