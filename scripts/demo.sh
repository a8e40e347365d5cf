#!/usr/bin/env bash
# The quick start's main job: PostNAS end to end on a 2-core CPU. Install the system packages, build postnas,
# make a synthetic corpus and its token shards, pretrain a tiny Qwen2-shaped teacher on it, train the
# once-for-all supernet (every layer: the teacher's attention, sliding-window attention, Gated DeltaNet,
# JetBlock), search where full attention must stay (heat map + beam search on copying), train the
# searched hybrid, the uniform placement and the all-linear model with the same budget, evaluate them and the
# teacher, and write runs/demo/report.md. Everything lands in runs/; a second run reuses the finished stages.
# Each step says what it does; a failing one says which it was and shows the failing tool's own output.
set -uo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh

# For the test suite (tests/test_demo.sh): PN_DEMO_SKIP_BUILD=1 takes ./build as it is (no install, no
# build); PN_DEMO_QUICK=1 runs a few steps per training run and evaluates 10 documents per task, which checks
# the pipeline and its determinism, not the demo's result.
Q="" QL=100
[ -n "${PN_DEMO_QUICK:-}" ] && Q="--set train.steps=12 --set train.warmup_steps=2 --set checkpoint.every=0" QL=10
if [ -z "${PN_DEMO_SKIP_BUILD:-}" ]; then
  pn_show "install the system packages (scripts/install-deps.sh)" bash scripts/install-deps.sh
  if [ -f build/build.ninja ]; then
    echo "[=] build/ is configured already (meson setup was done before)"
  else
    pn_step "configure the build (meson setup build)" meson setup build
    grep -A6 '^  Features' "$PN_LOG_DIR"/*-configure-the-build*.log | sed 's/^/    /'
  fi
  pn_step "compile (ninja -C build)" ninja -C build
fi
# The data: a synthetic corpus (the facts of a made-up world, key-value lists, pass keys, copying) and 8000
# copying exercises (a random string, "|", the string again: the retrieval a tiny model learns in a minute of
# CPU, where associative recall and pass keys take far longer), tokenized with the project's byte-level
# tokenizer into HDF5 shards; the starting model: a tiny random Qwen2 (hidden 64, 4 layers). The copying
# exercises start at item 100000, so the evaluation's items (0 .. 99) are never trained on.
mkdir -p runs/demo
export PN_TIMES=runs/demo/stage-times.tsv
: > "$PN_TIMES"
pn_stage "the data: a synthetic corpus (4000 documents) + 8000 copying exercises, a tiny random Qwen2-shaped model, token shards (runs/demo)" \
  runs/demo/.stage-data bash -c "./build/postnas-data synth --task corpus --n 4000 --out runs/demo/corpus.jsonl &&
    ./build/postnas-data synth --task copy --n 8000 --first 100000 --format text --out runs/demo/copy.jsonl &&
    rm -rf runs/demo/init runs/demo/shards && ./build/postnas-mkckpt --preset tiny --seed 1 --out runs/demo/init &&
    ./build/postnas-data tokenize --tokenizer runs/demo/init --jsonl runs/demo/corpus.jsonl runs/demo/copy.jsonl \
      --field text --out runs/demo/shards"
pn_stage "pretrain the tiny teacher (configs/tiny-pretrain.yaml: next-token CE, AdamW, checkpoints)" \
  runs/tiny-pretrain/.stage ./build/postnas-train --config configs/tiny-pretrain.yaml --overwrite $Q
pn_show "the teacher copies 'postnaskeepsattn|' (greedy)" \
  ./build/postnas-generate --model runs/tiny-pretrain/latest --prompt "postnaskeepsattn|" --max-new-tokens 24
echo
pn_stage "train the supernet (configs/tiny-supernet.yaml: every layer attn, swa=8, gdn or jet; one full layer per subnet + the all-linear one)" \
  runs/tiny-supernet/.stage ./build/postnas-train --config configs/tiny-supernet.yaml --overwrite $Q
pn_stage "search where full attention must stay (configs/tiny-search.yaml: heat map, beam search on copying)" \
  runs/tiny-search/.stage ./build/postnas-search --config configs/tiny-search.yaml --task retrieval --set search.limit=$QL
# The three hybrids, each distilled from the teacher with the same budget (configs/tiny-distill.yaml).
specs() { python3 -c "import json,sys; print('[' + ','.join(json.load(open(sys.argv[1]))[sys.argv[2]]) + ']')" runs/tiny-search/placement.json "$1"; }
for h in searched:layer_specs uniform:uniform_layer_specs all-linear:all_linear_layer_specs; do
  name=${h%%:*} types=$(specs "${h#*:}")
  pn_stage "distill the $name hybrid $types (configs/tiny-distill.yaml: KL + MSE, only the new mixers train)" \
    "runs/demo-$name/.stage" ./build/postnas-train --config configs/tiny-distill.yaml --set out_dir="runs/demo-$name" \
    --set "model.student.layer_types=$types" --overwrite $Q
done
pn_show "the searched hybrid copies the same string (runs/demo-searched/latest, Jet-Nemotron format)" \
  ./build/postnas-generate --model runs/demo-searched/latest --prompt "postnaskeepsattn|" --max-new-tokens 24
pn_show "the all-linear model tries (runs/demo-all-linear/latest)" \
  ./build/postnas-generate --model runs/demo-all-linear/latest --prompt "postnaskeepsattn|" --max-new-tokens 24
echo
for m in teacher:runs/tiny-pretrain searched:runs/demo-searched uniform:runs/demo-uniform all-linear:runs/demo-all-linear; do
  name=${m%%:*} dir=${m#*:}
  pn_stage "evaluate the $name on the synthetic tasks (postnas-eval; postnas-info at a 64K context)" \
    "runs/demo/.stage-eval-$name" bash -c "./build/postnas-eval --model $dir/latest --tasks synth_copy,synth_mqar,synth_passkey,synth_facts_mc \
      --limit $QL --max-gen-toks 16 --no-progress --out runs/demo/eval-$name.json &&
      ./build/postnas-info --model $dir/latest --context 65536 --json > runs/demo/info-$name.json"
done
pn_show "write the report (runs/demo/report.md)" python3 scripts/demo_report.py runs/demo
