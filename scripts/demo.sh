#!/usr/bin/env bash
# The quick start's main job: install the system packages, build postnas, create a tiny Qwen2-shaped model
# with random weights and the project's byte-level tokenizer, and generate from a text prompt with the KV
# cache; then a Jet-Nemotron-style hybrid of the same size (attention, sliding window, JetBlock and Gated
# DeltaNet layers) generates too and runs training steps (forward + backward, only the token mixers
# trainable). The embedded PostNAS demo replaces this as the pipeline lands. The weights are random, so the
# continuation is noise; the point is the path: tokenizer -> model -> cache -> sampling -> text.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
[ -f build/build.ninja ] || meson setup build > /dev/null
ninja -C build
./build/postnas-mkckpt --preset tiny --seed 1 --init-std 0.3 --out build/demo-model
echo "generating 24 tokens after the prompt 'The pass key is' (greedy), as ids and as text:"
./build/postnas-generate --model build/demo-model --prompt "The pass key is" --max-new-tokens 24 --print-ids
./build/postnas-generate --model build/demo-model --prompt "The pass key is" --max-new-tokens 24 | od -c | head -4
echo "a hybrid: layers attn, swa, jet, gdn (config.json model_type jet_nemotron):"
./build/postnas-mkckpt --preset tiny --seed 1 --init-std 0.3 --layers 4 --layer-types attn,swa,jet,gdn \
  --out build/demo-hybrid
./build/postnas-generate --model build/demo-hybrid --prompt "The pass key is" --max-new-tokens 24 --print-ids
./build/tests/bench_train build/demo-hybrid --device cpu --batch 2 --seq 256 --iters 3
