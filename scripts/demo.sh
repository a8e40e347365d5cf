#!/usr/bin/env bash
# The quick start's main job: install the system packages, build postnas, create a tiny Qwen2-shaped model
# with random weights and generate from it with the KV cache (the embedded PostNAS demo replaces this as
# the pipeline lands).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
[ -f build/build.ninja ] || meson setup build > /dev/null
ninja -C build
./build/postnas-mkckpt --preset tiny --seed 1 --init-std 0.3 --out build/demo-model
echo "generating 24 tokens after the prompt ids 1,2,3,4 (greedy):"
./build/postnas-generate --model build/demo-model --ids 1,2,3,4 --max-new-tokens 24
