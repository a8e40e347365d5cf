#!/usr/bin/env bash
# PostNAS's placement search finds the layer retrieval depends on (issue 15's correctness test), on the CPU:
# a tiny byte-level teacher learns the synthetic copy task (postnas-data synth --task copy: a random string,
# "|", the string again), which needs an induction head; a supernet (attn | swa | gdn per layer) is trained
# from it in local mode; the heat map must single out one layer (copy accuracy >= 0.9 with only that layer
# full, <= 0.1 for the worst single layer and for the all-linear subnet), and beam search with k = 1 must
# pick that layer.
set -u
B=${1:?usage: test_placement.sh BUILD_DIR}
T=$(mktemp -d /tmp/pn_test_placement.XXXXXX)
trap 'rm -rf "$T"' EXIT
. "$(dirname "$0")/test_lib.sh"

$B/postnas-data synth --task copy --n 12000 --first 1000 --out "$T/copy.jsonl" > /dev/null 2>&1 || bad "synth copy"
python3 -c "
import json, sys
with open(sys.argv[2], 'w') as f:
    for l in open(sys.argv[1]):
        d = json.loads(l)
        f.write(json.dumps({'text': d['context'] + d['answer']}) + '\n')
" "$T/copy.jsonl" "$T/text.jsonl" || bad "copy text"
$B/postnas-mkckpt --preset tiny --seed 1 --out "$T/init" > /dev/null || bad "mkckpt"
$B/postnas-data tokenize --tokenizer "$T/init" --jsonl "$T/text.jsonl" --field text --out "$T/shards" --threads 1 \
  > /dev/null 2>&1 || bad "tokenize"
cat > "$T/pre.yaml" << EOF
out_dir: $T/pre
seed: 1
device: cpu
model:
  init: $T/init
data:
  train: [$T/shards/*.h5]
train:
  stage: pretrain
  steps: 400
  seq_len: 1024
  global_batch: 2
  micro_batch: 2
  lr: 1.0e-3
  warmup_steps: 100
loss:
  ce: 1.0
log:
  every: 100
EOF
$B/postnas-train --config "$T/pre.yaml" --no-progress 2> "$T/pre.log" && ok || bad "pretrain: $(tail -2 "$T/pre.log")"
cat > "$T/sn.yaml" << EOF
out_dir: $T/sn
seed: 1
device: cpu
model:
  teacher: $T/pre/latest
  supernet:
    candidates: [swa=8, gdn]
supernet:
  mode: local
data:
  train: [$T/shards/*.h5]
train:
  stage: supernet
  steps: 100
  seq_len: 1024
  global_batch: 2
  micro_batch: 2
  lr: 3.0e-3
  warmup_steps: 10
loss:
  mse: 1.0
log:
  every: 50
EOF
$B/postnas-train --config "$T/sn.yaml" --no-progress 2> "$T/sn.log" && ok || bad "supernet: $(tail -2 "$T/sn.log")"
cat > "$T/search.yaml" << EOF
out_dir: $T/search
supernet: $T/sn/latest
device: cpu
search:
  linear: gdn
  n_attn: 1
  beam: 2
  limit: 40
  max_gen_toks: 20
EOF
$B/postnas-search --config "$T/search.yaml" --task synth_copy --no-progress > "$T/out" 2> "$T/err" && ok ||
  bad "search: $(tail -2 "$T/err")"
python3 - "$T/search" "$T/pre/latest" "$B" << 'EOF' && ok || bad "the search did not find the copying layer"
import csv, json, subprocess, sys
d = sys.argv[1]
rows = {int(r["layer"]): float(r["synth_copy"]) for r in csv.DictReader(open(d + "/heatmap.csv"))}
p = json.load(open(d + "/placement.json"))
best = max(rows, key=rows.get)
print("heat map (copy accuracy with only layer l full):", rows, "searched:", p["layer_types"],
      "all-linear:", p["scores"]["all_linear"]["synth_copy"])
assert rows[best] >= 0.9 and min(rows.values()) <= 0.1, rows
assert p["scores"]["all_linear"]["synth_copy"] <= 0.1, p["scores"]
assert p["layer_types"].index("attn") == best and p["scores"]["searched"]["synth_copy"] == rows[best], p
EOF
echo "placement: $pass passed, $fail failed"
[ $fail -eq 0 ]
