#!/usr/bin/env bash
# The hardware-aware search's measurement (Jet-Nemotron, Table 2): decode throughput over JetBlock
# (d_k, d_v, heads) configurations that keep the decode state fixed, one command writing a Markdown table
# (decode and prefill tok/s, decode state per sequence, parameters). Each configuration is a random-weight
# checkpoint of the base shape (postnas-mkckpt) measured by postnas-bench on the same device.
#
# usage: scripts/hw-grid.sh [--out table.md] [--grid "dk,dv,heads dk,dv,heads ..."] [--preset NAME]
#            [--layer-types T,T,...] [--sliding-window N] [--build DIR] [--work DIR] [postnas-bench options]
# Defaults: the paper's nine configurations, Jet-Nemotron-2B's shape (Qwen2.5-1.5B with attn at layers 14
# and 19, swa at 20 and 21 with window 1152, jet elsewhere), ./build, a temporary work folder; every other
# option (--context, --batch N|max, --new-tokens, --prefill-chunk, --device) goes to postnas-bench.
set -uo pipefail
OUT=/dev/stdout BUILD=build WORK= PRESET=qwen2.5-1.5b WINDOW=1152
GRID="256,288,4 192,384,4 128,576,4 256,144,8 192,192,8 128,288,8 128,192,12 96,256,12 64,384,12"
TYPES=$(for l in $(seq 0 27); do case $l in 14 | 19) printf attn ;; 20 | 21) printf swa ;; *) printf jet ;; esac
  [ "$l" -lt 27 ] && printf ,; done)
BENCH_ARGS=()
die() { echo "hw-grid.sh: error: $*" >&2; exit 1; }
while [ $# -gt 0 ]; do
  [ $# -ge 2 ] || die "$1 needs a value"
  case $1 in
    --out) OUT=$2 ;; --grid) GRID=$2 ;; --preset) PRESET=$2 ;; --layer-types) TYPES=$2 ;;
    --sliding-window) WINDOW=$2 ;; --build) BUILD=$2 ;; --work) WORK=$2 ;;
    --context | --batch | --new-tokens | --prefill-chunk | --device | --seed | --threads) BENCH_ARGS+=("$1" "$2") ;;
    *) die "unknown option $1 (see the comment at the top of scripts/hw-grid.sh)" ;;
  esac
  shift 2
done
[ -x "$BUILD/postnas-bench" ] && [ -x "$BUILD/postnas-mkckpt" ] || die "no postnas-bench/postnas-mkckpt in $BUILD (build first)"
if [ -z "$WORK" ]; then
  WORK=$(mktemp -d /tmp/pn-hw-grid.XXXXXX)
  trap 'rm -rf "$WORK"' EXIT
fi
rows=()
for g in $GRID; do
  IFS=, read -r dk dv h <<< "$g"
  [[ "$dk" =~ ^[0-9]+$ && "$dv" =~ ^[0-9]+$ && "$h" =~ ^[0-9]+$ ]] || die "--grid: '$g' is not dk,dv,heads"
  ck="$WORK/jet-$dk-$dv-$h"
  ev=$(awk -v a="$dv" -v b="$dk" 'BEGIN { printf "%.10g", a / b }')
  "$BUILD/postnas-mkckpt" --preset "$PRESET" --layer-types "$TYPES" --sliding-window "$WINDOW" --lin-heads "$h" \
    --lin-head-dim "$dk" --lin-expand-v "$ev" --tokenizer none --seed 1 --out "$ck" > "$WORK/mk.log" 2>&1 ||
    die "postnas-mkckpt for ($dk, $dv, $h): $(tail -1 "$WORK/mk.log")"
  echo "($dk, $dv, $h) ..." >&2
  "$BUILD/postnas-bench" --model "$ck" "${BENCH_ARGS[@]}" > "$WORK/bench.txt" 2> "$WORK/bench.err" ||
    die "postnas-bench for ($dk, $dv, $h): $(tail -1 "$WORK/bench.err")"
  r=$(awk -v cfg="($dk, $dv, $h)" '
    /^parameters:/ { p = $2 }
    /^prefill:/ { pre = $(NF - 1) }
    /^decode:/ { for (i = 1; i <= NF; i++) if ($i == "tok/s") dec = $(i - 1) }
    /^decode state per sequence at .*: total/ { st = $(NF - 1) " " $NF }
    /^bandwidth floor:/ { for (i = 1; i <= NF; i++) if ($i == "reached") fl = $(i + 1) }
    END { printf "| %s | %s | %s | %s | %.1f M | %s |", cfg, dec, pre, st, p / 1e6, fl }' "$WORK/bench.txt")
  rows+=("$r")
  echo "$r" >&2 # each row as it is measured: a run cut short still shows what it measured
  rm -rf "$ck"
done
{
  echo "| (d_k, d_v, heads) | decode tok/s | prefill tok/s | decode state per sequence | parameters | of the bandwidth floor |"
  echo "|---|---|---|---|---|---|"
  printf '%s\n' "${rows[@]}"
} > "$OUT"
