#!/usr/bin/env bash
# CPU threading benchmark (issue 10, item 5): prefill and decode speed of a SmolLM2-135M-shaped model with
# random weights (Llama, 30 layers, hidden 576, 9/3 heads, intermediate 1536, vocab 49152, tied), with
# OMP_NUM_THREADS unset / 1 / 2, on an idle machine and with one extra busy process, for this build, an
# optional baseline build, and Hugging Face transformers (torch.set_num_threads 1 and 2) on the same weights.
# Prints the median of --reps runs per cell (each repetition runs every cell once, so a shared machine's
# changing load spreads over all cells alike), and the load average before each run.
#
#   tests/bench_cpu_threads.sh [--build DIR] [--before DIR] [--reps N] [--new N] [--model DIR]
#                              [--python PY] [--threads "unset 1 2"] [--loads "idle loaded"] [--no-hf]
#
# --build: the build to measure (default build); --before: a second build (the baseline) measured the same
# way; --python: a Python with torch and transformers (default /work/venv-smol/bin/python; skipped if absent).
# The machine may be shared: the load average printed before each run says how busy it was.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
build=$root/build before="" reps=5 new=64 model=/tmp/smolshape python=/work/venv-smol/bin/python hf=1
threads="unset 1 2" loads="idle loaded"
while [ $# -gt 0 ]; do
  case $1 in
    --build) build=$2; shift 2 ;;
    --before) before=$2; shift 2 ;;
    --reps) reps=$2; shift 2 ;;
    --new) new=$2; shift 2 ;;
    --model) model=$2; shift 2 ;;
    --python) python=$2; shift 2 ;;
    --threads) threads=$2; shift 2 ;;
    --loads) loads=$2; shift 2 ;;
    --no-hf) hf=0; shift ;;
    -h | --help) sed -n '2,14p' "$0"; exit 0 ;;
    *) echo "bench_cpu_threads: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done
[ -x "$python" ] || hf=0

work=$(mktemp -d /tmp/bench_cpu_threads.XXXXXX)
busy_pid=""
cleanup() {
  [ -n "$busy_pid" ] && kill -KILL "$busy_pid" 2> /dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

# The model: SmolLM2-135M's shape, random weights. No eos_token_id, so every run decodes all --new tokens.
if [ ! -f "$model/config.json" ]; then
  "$build/postnas-mkckpt" --arch llama --hidden 576 --intermediate 1536 --layers 30 --heads 9 --kv-heads 3 \
    --vocab 49152 --tie 1 --rope-theta 100000 --out "$model" > /dev/null
  sed -i '/"eos_token_id"/d' "$model/config.json"
fi
ids=$(awk 'BEGIN { s = 1; for (i = 0; i < 200; i++) { s = (s * 1103515245 + 12345) % 2147483648;
                   printf "%s%d", (i ? "," : ""), s % 49152 } }')

cat > "$work/hf.py" << 'EOF'
import sys, time, warnings
warnings.filterwarnings("ignore")
import torch
from transformers import LlamaForCausalLM
from transformers.utils import logging
logging.set_verbosity_error()
model_dir, nthreads, ids_s, n_new = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
torch.set_num_threads(nthreads)
m = LlamaForCausalLM.from_pretrained(model_dir, torch_dtype=torch.float32).eval()
ids = torch.tensor([[int(x) for x in ids_s.split(",")]])
with torch.inference_mode():
    t0 = time.perf_counter()
    out = m(ids, use_cache=True)
    nxt = out.logits[:, -1].argmax(-1, keepdim=True)
    t1 = time.perf_counter()
    past = out.past_key_values
    for _ in range(n_new - 1):
        out = m(nxt, past_key_values=past, use_cache=True)
        past = out.past_key_values
        nxt = out.logits[:, -1].argmax(-1, keepdim=True)
    t2 = time.perf_counter()
print(f"prefill {ids.shape[1]} tokens {ids.shape[1] / (t1 - t0):.1f} tok/s, "
      f"decode {n_new} tokens {(n_new - 1) / (t2 - t1):.1f} tok/s", file=sys.stderr)
EOF

loadavg() { cut -d' ' -f1 /proc/loadavg; }
median() { sort -g | awk '{ v[NR] = $1 } END { if (NR == 0) print "-"; else if (NR % 2) print v[(NR + 1) / 2];
                                               else printf "%.1f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

# The cells: "what threads" pairs. Each repetition runs every cell once, so that all cells see the same mix of
# whatever else the machine is doing; the table gives each cell's medians.
cells=()
for t in $threads; do
  cells+=("postnas $t")
  [ -n "$before" ] && cells+=("before $t")
done
if [ "$hf" = 1 ]; then cells+=("transformers 1" "transformers 2"); fi

# one WHAT THREADS: one run; prints "PREFILL DECODE" (tok/s).
one() {
  local cmd
  case $1 in
    postnas) cmd=("$build/postnas-generate" --model "$model" --ids "$ids" --max-new-tokens "$new" --print-ids) ;;
    before) cmd=("$before/postnas-generate" --model "$model" --ids "$ids" --max-new-tokens "$new" --print-ids) ;;
    transformers) cmd=("$python" "$work/hf.py" "$model" "$2" "$ids" "$new") ;;
  esac
  local line
  if [ "$2" = unset ]; then line=$(env -u OMP_NUM_THREADS "${cmd[@]}" 2>&1 > /dev/null | grep -o 'prefill.*tok/s' | tail -1)
  else line=$(OMP_NUM_THREADS=$2 "${cmd[@]}" 2>&1 > /dev/null | grep -o 'prefill.*tok/s' | tail -1); fi
  sed -E 's/^prefill [0-9]+ tokens ([0-9.]+) tok\/s, decode [0-9]+ tokens ([0-9.]+) tok\/s$/\1 \2/' <<< "$line"
}

echo "# $(nproc) CPUs, $reps runs per cell (cells interleaved); $(uptime)"
echo "| what         | OMP   | load   | prefill tok/s | decode tok/s | load avg before the runs     | runs: prefill / decode |"
echo "|--------------|-------|--------|---------------|--------------|------------------------------|------------------------|"
for load in $loads; do
  if [ "$load" = loaded ]; then
    sh -c 'while :; do :; done' &
    busy_pid=$!
    sleep 1
  fi
  declare -A pre=() dec=() la=()
  for ((r = 0; r < reps; r++)); do
    for c in "${cells[@]}"; do
      la[$c]+="$(loadavg) "
      read -r p d <<< "$(one $c)"
      pre[$c]+="${p:-0} " dec[$c]+="${d:-0} "
    done
  done
  for c in "${cells[@]}"; do
    read -r what t <<< "$c"
    printf '| %-12s | %-5s | %-6s | %13s | %12s | %-28s | %s/ %s|\n' "$what" "$t" "$load" \
      "$(tr ' ' '\n' <<< "${pre[$c]}" | grep . | median)" "$(tr ' ' '\n' <<< "${dec[$c]}" | grep . | median)" \
      "${la[$c]}" "${pre[$c]}" "${dec[$c]}"
  done
  unset pre dec la
  if [ -n "$busy_pid" ]; then
    kill -KILL "$busy_pid" # (a plain SIGTERM did not stop it when run from some shells)
    wait "$busy_pid" 2> /dev/null || true
    busy_pid=""
  fi
done
