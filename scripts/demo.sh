#!/usr/bin/env bash
# The quick start's main job: install the system packages, build postnas, create a tiny Qwen2-shaped model
# with random weights and the project's byte-level tokenizer, and generate from a text prompt with the KV
# cache; then a Jet-Nemotron-style hybrid of the same size (attention, sliding window, JetBlock and Gated
# DeltaNet layers) generates too and runs training steps (forward + backward, only the token mixers
# trainable). The embedded PostNAS demo replaces this as the pipeline lands. The weights are random, so the
# continuation is noise; the point is the path: tokenizer -> model -> cache -> sampling -> text.
# Each step says what it does; a failing one says which it was and shows the failing tool's own output.
set -uo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh

pn_show "install the system packages (scripts/install-deps.sh)" bash scripts/install-deps.sh
if [ -f build/build.ninja ]; then
  echo "[=] build/ is configured already (meson setup was done before)"
else
  pn_step "configure the build (meson setup build)" meson setup build
  grep -A6 '^  Features' "$PN_LOG_DIR"/*-configure-the-build*.log | sed 's/^/    /'
fi
pn_step "compile (ninja -C build)" ninja -C build
pn_step "write a tiny random Qwen2-shaped checkpoint (build/demo-model)" \
  ./build/postnas-mkckpt --preset tiny --seed 1 --init-std 0.3 --out build/demo-model
pn_show "generate 24 tokens after the prompt 'The pass key is' (greedy), as ids" \
  ./build/postnas-generate --model build/demo-model --prompt "The pass key is" --max-new-tokens 24 --print-ids
gen_text() { ./build/postnas-generate --model build/demo-model --prompt "The pass key is" --max-new-tokens 24 > build/demo-text.txt && od -c build/demo-text.txt | head -4; }
pn_show "the same as text (raw bytes, od -c)" gen_text
pn_step "write a hybrid: layers attn, swa, jet, gdn (config.json model_type jet_nemotron)" \
  ./build/postnas-mkckpt --preset tiny --seed 1 --init-std 0.3 --layers 4 --layer-types attn,swa,jet,gdn \
  --out build/demo-hybrid
pn_show "generate with the hybrid" \
  ./build/postnas-generate --model build/demo-hybrid --prompt "The pass key is" --max-new-tokens 24 --print-ids
pn_show "time training steps of the hybrid on the CPU (forward + backward)" \
  ./build/tests/bench_train build/demo-hybrid --device cpu --batch 2 --seq 256 --iters 3
