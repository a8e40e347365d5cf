#!/usr/bin/env bash
# The quick start's main job: install the system packages, build postnas, make a synthetic corpus and its
# token shards, pretrain a tiny Qwen2-shaped teacher on it, distill that teacher into a Jet-Nemotron-style
# hybrid student (attention, Gated DeltaNet, JetBlock and sliding-window layers; only the new mixers train),
# and let both continue a prompt. About a minute and a half of training on a 2-core CPU; everything lands in
# runs/. The PostNAS search joins this demo as it lands.
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
# The data: a synthetic corpus (the facts of a made-up world, key-value lists, pass keys) tokenized with the
# project's byte-level tokenizer into HDF5 shards; the starting model: a tiny random Qwen2 (hidden 64, 4 layers).
mkdir -p runs/demo
pn_step "write a synthetic corpus (runs/demo/corpus.jsonl, 4000 documents)" \
  ./build/postnas-data synth --task corpus --n 4000 --out runs/demo/corpus.jsonl
pn_step "write a tiny random Qwen2-shaped model with the byte-level tokenizer (runs/demo/init)" \
  ./build/postnas-mkckpt --preset tiny --seed 1 --out runs/demo/init
pn_step "tokenize the corpus into HDF5 shards (runs/demo/shards)" \
  ./build/postnas-data tokenize --tokenizer runs/demo/init --jsonl runs/demo/corpus.jsonl --field text --out runs/demo/shards
pn_show "pretrain the tiny teacher (configs/tiny-pretrain.yaml: next-token CE, AdamW, checkpoints)" \
  ./build/postnas-train --config configs/tiny-pretrain.yaml --overwrite
pn_show "the teacher continues 'Kepe is from' (greedy)" \
  ./build/postnas-generate --model runs/tiny-pretrain/latest --prompt "Kepe is from" --max-new-tokens 48
echo
pn_show "distill it into a hybrid: attn, Gated DeltaNet, JetBlock, sliding window (configs/tiny-distill.yaml: KL + MSE, only the new mixers train)" \
  ./build/postnas-train --config configs/tiny-distill.yaml --overwrite
pn_show "the hybrid student continues the same prompt (runs/tiny-distill/latest, Jet-Nemotron format)" \
  ./build/postnas-generate --model runs/tiny-distill/latest --prompt "Kepe is from" --max-new-tokens 48
echo
