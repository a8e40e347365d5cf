#!/usr/bin/env bash
# The distillation step of ../shared/bench/ANCHORS.md, timed with postnas-train: what PyTorch + fla does at
# 29,818 tok/s (MSE) and 25,259 tok/s (KL) on the H200, and the bar of issue 18 (1.5 times that). A random
# Qwen2.5-1.5B-shaped teacher (postnas-mkckpt); the student is the teacher's own model with Gated DeltaNet
# candidates in every layer but the kept full-attention ones (14 and 19: Jet-Nemotron-2B's), trained as
# PostNAS stage 1 (MLPs, norms and embeddings frozen and shared, AdamW on the new mixers); 2 x 4096 tokens a
# step from a synthetic corpus, documents not masked (the anchor's batch). Prints, per loss, the median tok/s
# of steps 3 and later and the peak GPU memory (nvidia-smi sampled every 100 ms, when there is one), with the
# power drawn and the SM clock while the GPU works hardest (the samples within 80% of the highest power: the
# steps, not the loading): a step's GEMMs run well below their rate timed alone when the clock drops.
#
# usage: scripts/bench-distill.sh [--device cuda|cpu] [--preset NAME] [--attn L,L,...] [--seq N] [--batch N]
#            [--steps N] [--loss "mse kl"] [--repeat N] [--build DIR] [--work DIR]
# Defaults: cuda, qwen2.5-1.5b, 14,19, 4096, 2, 8 steps, both losses, 1 run each, ./build, a temporary work
# folder. --repeat N runs each loss N times (one GPU's run-to-run spread is a percent or two: compare
# medians of runs, or alternate two builds' runs). A --work folder keeps the teacher and the corpus, and a
# later call with the same preset and sizes reuses them (making the teacher takes most of a run's minute).
# PN_OP_PROFILE=1 in the environment adds the op profile (postnas-train's stderr, in the work folder's logs).
set -uo pipefail
DEVICE=cuda PRESET=qwen2.5-1.5b ATTN=14,19 SEQ=4096 BATCH=2 STEPS=8 LOSSES="mse kl" REPEAT=1 BUILD=build WORK=
die() { echo "bench-distill.sh: error: $*" >&2; exit 1; }
while [ $# -gt 0 ]; do
  [ $# -ge 2 ] || die "$1 needs a value"
  case $1 in
    --device) DEVICE=$2 ;; --preset) PRESET=$2 ;; --attn) ATTN=$2 ;; --seq) SEQ=$2 ;; --batch) BATCH=$2 ;;
    --steps) STEPS=$2 ;; --loss) LOSSES=$2 ;; --repeat) REPEAT=$2 ;; --build) BUILD=$2 ;; --work) WORK=$2 ;;
    *) die "unknown option $1 (see the comment at the top of scripts/bench-distill.sh)" ;;
  esac
  shift 2
done
for n in "$SEQ" "$BATCH" "$STEPS" "$REPEAT"; do [[ "$n" =~ ^[1-9][0-9]*$ ]] || die "'$n' is not a positive integer"; done
[ "$STEPS" -ge 3 ] || die "--steps $STEPS: the median is over steps 3 and later"
[[ "$ATTN" =~ ^[0-9]+(,[0-9]+)*$|^$ ]] || die "--attn '$ATTN' is not a list of layer numbers"
for l in $LOSSES; do [ "$l" = mse ] || [ "$l" = kl ] || die "--loss: '$l' is neither mse nor kl"; done
for t in postnas-train postnas-mkckpt postnas-data; do [ -x "$BUILD/$t" ] || die "no $t in $BUILD (build first)"; done
CONFIG=$(dirname "$0")/../configs/tiny-distill.yaml
[ -f "$CONFIG" ] || die "no $CONFIG"
if [ -z "$WORK" ]; then
  WORK=$(mktemp -d /tmp/pn-bench-distill.XXXXXX)
  trap 'rm -rf "$WORK"' EXIT
fi
mkdir -p "$WORK" || die "cannot make $WORK"

# the teacher, and the data: a synthetic corpus in the byte-level vocabulary (ids fit any teacher's); kept
# from an earlier call on this folder when it made them for the same preset and sizes
need=$((SEQ * BATCH * (STEPS + 1)))
made="$PRESET $need"
if [ "$(cat "$WORK/made" 2> /dev/null)" != "$made" ] || [ ! -f "$WORK/teacher/config.json" ] ||
   ! ls "$WORK"/shards/*.h5 > /dev/null 2>&1; then
  rm -rf "$WORK/made" "$WORK/teacher" "$WORK/corpus.jsonl" "$WORK/bytes" "$WORK/shards"
  "$BUILD/postnas-mkckpt" --preset "$PRESET" --seed 1 --tokenizer none --out "$WORK/teacher" > "$WORK/mk.log" 2>&1 ||
    die "postnas-mkckpt: $(tail -1 "$WORK/mk.log")"
  "$BUILD/postnas-data" synth --task corpus --n $((need / 60 + 200)) --out "$WORK/corpus.jsonl" > "$WORK/data.log" 2>&1 &&
    "$BUILD/postnas-mkckpt" --preset tiny --seed 1 --out "$WORK/bytes" >> "$WORK/data.log" 2>&1 &&
    "$BUILD/postnas-data" tokenize --tokenizer "$WORK/bytes" --jsonl "$WORK/corpus.jsonl" --field text \
      --out "$WORK/shards" >> "$WORK/data.log" 2>&1 || die "the corpus: $(tail -1 "$WORK/data.log")"
  echo "$made" > "$WORK/made"
fi
layers=$(sed -n 's/.*"num_hidden_layers": *\([0-9]*\).*/\1/p' "$WORK/teacher/config.json")
[[ "$layers" =~ ^[0-9]+$ ]] || die "no num_hidden_layers in $WORK/teacher/config.json"
types=
for ((l = 0; l < layers; l++)); do
  t=gdn
  [[ ",$ATTN," == *",$l,"* ]] && t=attn
  types+=${types:+,}$t
done

echo "teacher $PRESET ($layers layers), student [$types], $BATCH x $SEQ tokens a step, $STEPS steps, $DEVICE"
median() { sort -g | awk '{ v[NR] = $1 } END { if (NR) printf "%.0f", NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
for loss in $LOSSES; do
  meds=
  for ((r = 1; r <= REPEAT; r++)); do
    smi=
    if [ "$DEVICE" = cuda ] && command -v nvidia-smi > /dev/null; then
      nvidia-smi --query-gpu=memory.used,power.draw,clocks.sm --format=csv,noheader,nounits -lms 100 \
        > "$WORK/mem-$loss.log" 2> /dev/null &
      smi=$!
    fi
    rm -rf "$WORK/run-$loss"
    "$BUILD/postnas-train" --config "$CONFIG" --no-progress --set device="$DEVICE" --set out_dir="$WORK/run-$loss" \
      --set "data.train=[$WORK/shards/*.h5]" --set model.teacher="$WORK/teacher" --set "model.student.layer_types=[$types]" \
      --set train.seq_len="$SEQ" --set train.global_batch="$BATCH" --set train.micro_batch="$BATCH" \
      --set train.steps="$STEPS" --set train.warmup_steps=0 --set loss.kl=0 --set loss.mse=0 --set loss."$loss"=1 \
      --set loss.mse_layers=final --set log.every=1 --set checkpoint.every=0 --set data.mask_documents=false \
      > "$WORK/train-$loss.log" 2>&1
    rc=$?
    [ -n "$smi" ] && { kill "$smi" 2> /dev/null; wait "$smi" 2> /dev/null; }
    [ $rc -eq 0 ] || die "postnas-train ($loss): $(grep -v '^step ' "$WORK/train-$loss.log" | tail -1)"
    med=$(sed -n 's/.*"step": *\([0-9]*\),.*"tok_s": *\([0-9.eE+-]*\).*/\1 \2/p' "$WORK/run-$loss/metrics.jsonl" |
      awk '$1 >= 3 { print $2 }' | median)
    [ -n "$med" ] || die "no tok/s of steps 3 and later in $WORK/run-$loss/metrics.jsonl"
    peak=
    if [ -n "$smi" ]; then # lines "MiB, W, MHz"
      peak=$(awk -F', *' '$1 + 0 > m { m = $1 + 0 } END { if (NR) printf "%d MiB", m }' "$WORK/mem-$loss.log")
      peak+=$(awk -F', *' '{ w[NR] = $2 + 0; c[NR] = $3 + 0; if (w[NR] > top) top = w[NR] }
        END { if (top <= 0) exit; for (i = 1; i <= NR; i++) if (w[i] >= 0.8 * top) { n++; sw += w[i]; sc += c[i] }
              printf ", %.0f W and %.0f MHz (SM) at work", sw / n, sc / n }' "$WORK/mem-$loss.log")
    fi
    run=
    if [ "$REPEAT" -gt 1 ]; then run=" (run $r of $REPEAT)"; fi
    echo "$loss: median $med tok/s (steps 3-$STEPS)${peak:+, peak $peak (nvidia-smi)}$run"
    meds+="$med "
  done
  if [ "$REPEAT" -gt 1 ]; then
    echo "$loss: median of the $REPEAT runs $(echo $meds | tr ' ' '\n' | median) tok/s (runs: ${meds% })"
  fi
done
