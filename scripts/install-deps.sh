#!/usr/bin/env bash
# Installs the distribution packages postnas builds against (Debian/Ubuntu). Skips what is present.
# The CUDA toolkit is not installed here: when nvcc is on PATH or in /usr/local/cuda the GPU backend
# builds too, otherwise the CPU backend alone.
set -euo pipefail
pkgs=(build-essential pkg-config meson ninja-build python3
      libjansson-dev libfyaml-dev libhdf5-dev libopenmpi-dev openmpi-bin libopenblas-dev libutf8proc-dev)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2> /dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing: ${missing[*]}"
  SUDO=""
  [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" > /dev/null
fi
