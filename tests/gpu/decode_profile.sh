#!/usr/bin/env bash
# Where a decode step's time goes: Nsight Compute's isolated duration of every kernel of 8 decode steps (a
# run of 9 new tokens minus a run of 1, so the prefill cancels), summed by name. Isolated means one kernel
# at a time with cold caches (no graph, no PDL overlap): next to a step's measured time it shows where the
# rest goes. usage: tests/gpu/decode_profile.sh CHECKPOINT OUTDIR [BATCH CONTEXT] (after tests/gpu/run.sh
# built build-gpu; the H100 image has ncu but no nsys). Without BATCH: postnas-generate, batch 1 after a
# 512-token prompt; with it: postnas-bench, BATCH random prompts of CONTEXT tokens.
set -uo pipefail
ck=$1; out=$2; batch=${3:-}; context=${4:-2048}; mkdir -p "$out"
ids=$(seq -s, 1 512)
NCU=$(command -v ncu || ls /usr/local/cuda/bin/ncu 2> /dev/null)
for n in 1 9; do
  if [ -z "$batch" ]; then
    cmd=(build-gpu/postnas-generate --model "$ck" --ids "$ids" --max-new-tokens $n --device cuda)
  else
    cmd=(build-gpu/postnas-bench --model "$ck" --context "$context" --batch "$batch" --new-tokens $n --device cuda)
  fi
  PN_NO_GRAPH=1 $NCU --csv --metrics gpu__time_duration.sum "${cmd[@]}" > "$out/ncu$n.csv" 2> "$out/ncu$n.err"
done
python3 "$(dirname "$0")/ncu_summary.py" "$out/ncu9.csv" 8 --minus "$out/ncu1.csv"
