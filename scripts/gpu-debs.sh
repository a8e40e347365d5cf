#!/usr/bin/env bash
# Downloads (does not install) the Debian packages tests/gpu/run.sh unpacks on a GPU machine that cannot
# reach a package registry: carry the resulting .debs/ folder along with the working tree.
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p .debs
cd .debs
apt-get download libjansson-dev libopenblas0-pthread libopenblas-pthread-dev libopenblas-dev libgfortran5 \
  libutf8proc-dev libutf8proc2 libpcre2-dev libfyaml-dev libfyaml0 libcsv-dev libcsv3
ls -la
