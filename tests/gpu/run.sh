#!/usr/bin/env bash
# The GPU suite, for a CUDA machine (an H100 here): builds with the CUDA backend, runs the CPU suite, the
# CUDA-vs-CPU op tests, the model parity goldens on CUDA (bf16, tolerance 2e-2), compute-sanitizer on the
# op tests, and the forward benchmark at the Qwen2.5-1.5B shape (ANCHORS.md: 127,207 tok/s teacher
# forward, B 2 x T 4096). Logs go to OUTDIR.
#
# Missing -dev packages are carried as Debian .deb files in .debs/ (the H100 image lacks jansson's headers,
# OpenBLAS, utf8proc and PCRE2's headers): tests/gpu/env.sh unpacks them into /tmp/pn-deps, found through
# pkg-config; scripts/gpu-debs.sh downloads them on a Debian/Ubuntu machine with apt.
set -uo pipefail
# usage: tests/gpu/run.sh [OUTDIR [STAGE...]], stages: cpu ops cudnn parity train trainer supernet nccl sanitize bench (default: all);
# `demo` runs only the tiny-config part of `trainer` (with `eval`: postnas-eval of its model on CPU and CUDA),
# `sanitize-attn` only the attention op tests under memcheck
OUTDIR=${1:-/tmp/pn-gpu}
shift || true
STAGES=" ${*:-cpu ops cudnn parity train trainer supernet nccl sanitize bench} "
want() { [[ "$STAGES" == *" $1 "* ]]; }
mkdir -p "$OUTDIR"
cd "$(dirname "$0")/../.."
source tests/gpu/env.sh # the carried packages, cuDNN from the torch wheel
log() { echo "== $* ==" | tee -a "$OUTDIR/summary.txt"; }
log "build"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | tee -a "$OUTDIR/summary.txt"
if [ ! -f build-gpu/build.ninja ]; then
  meson setup build-gpu -Dcuda=enabled -Dsm="${PN_SM:-90}" $CUDNN_OPT > "$OUTDIR/setup.log" 2>&1 || { tail -30 "$OUTDIR/setup.log"; exit 1; }
fi
# PN_GPU_TARGETS="tests/test_gdn_cuda ...": build only those ninja targets (and what they need)
ninja -C build-gpu ${PN_GPU_TARGETS:-} > "$OUTDIR/build.log" 2>&1 || { tail -40 "$OUTDIR/build.log"; exit 1; }
[ -f "$OUTDIR/setup.log" ] && grep -A12 "^  Features" "$OUTDIR/setup.log" | tee -a "$OUTDIR/summary.txt"

if want cpu; then
log "CPU suite"
meson test -C build-gpu --print-errorlogs > "$OUTDIR/cpu-tests.log" 2>&1
grep -E '^(Ok|Fail):' "$OUTDIR/cpu-tests.log" | tee -a "$OUTDIR/summary.txt"

fi
if want ops; then
log "CUDA ops vs CPU"
build-gpu/tests/test_ops_cuda 2>&1 | tee "$OUTDIR/ops.log" | grep -E 'FAIL|passed|ms' | tee -a "$OUTDIR/summary.txt"
build-gpu/tests/test_attention_bwd_cuda 2>&1 | tee "$OUTDIR/attn-bwd.log" | tee -a "$OUTDIR/summary.txt"
build-gpu/tests/test_gdn_cuda 2>&1 | tee "$OUTDIR/gdn.log" | tee -a "$OUTDIR/summary.txt"
build-gpu/tests/test_gdn_bwd_cuda 2>&1 | tee "$OUTDIR/gdn-bwd.log" | tee -a "$OUTDIR/summary.txt"
build-gpu/tests/test_train_ops_cuda 2>&1 | tee "$OUTDIR/train-ops.log" | tee -a "$OUTDIR/summary.txt"
build-gpu/tests/test_conv_cuda 2>&1 | tee "$OUTDIR/conv.log" | tee -a "$OUTDIR/summary.txt"
build-gpu/tests/test_optim_cuda 2>&1 | tee "$OUTDIR/optim.log" | tee -a "$OUTDIR/summary.txt"

fi
if want cudnn && [ -x build-gpu/tests/test_attention_cudnn ]; then
  log "cuDNN SDPA vs CPU, and timed against the own kernel"
  build-gpu/tests/test_attention_cudnn 2>&1 | tee "$OUTDIR/cudnn.log" | grep -E 'FAIL|passed|ms|warn' | tee -a "$OUTDIR/summary.txt"
fi

if want parity; then
log "parity on CUDA (bf16 vs transformers fp32)"
build-gpu/tests/test_parity tests/goldens build-gpu/postnas-mkckpt --device cuda --tol 2e-2 2>&1 | tee -a "$OUTDIR/summary.txt"

fi
if want train; then
log "training forward/backward on CUDA: blocks vs the CPU reference, the model vs torch autograd goldens"
build-gpu/tests/test_block_train --device cuda 2>&1 | tee "$OUTDIR/block-train.log" | tee -a "$OUTDIR/summary.txt"
build-gpu/tests/test_train tests/goldens --device cuda 2>&1 | tee "$OUTDIR/train.log" | tee -a "$OUTDIR/summary.txt"
PN_GDN_PROFILE=1 build-gpu/tests/test_gdn_bwd_cuda 2>&1 | grep -E "B 8 T 4096|bench" | tail -2 | tee -a "$OUTDIR/summary.txt"
log "training step (student side), the ANCHORS.md distillation student: Qwen2.5-1.5B shape, 26 GDN layers"
types=$(python3 -c "print(','.join('attn' if l in (14, 19) else 'gdn' for l in range(28)))")
build-gpu/postnas-mkckpt --preset qwen2.5-1.5b --seed 1 --layer-types "$types" --lin-head-dim 96 --lin-expand-v 2.6667 \
  --tokenizer none --out /tmp/pn-student | tee -a "$OUTDIR/summary.txt"
build-gpu/tests/bench_train /tmp/pn-student --device cuda --batch 2 --seq 4096 --iters 5 2>&1 | tee -a "$OUTDIR/summary.txt"
build-gpu/tests/bench_train /tmp/pn-student --device cuda --batch 2 --seq 4096 --iters 5 --recompute 2>&1 | tee -a "$OUTDIR/summary.txt"
fi

if want trainer || want demo || want supernet || want nccl; then
log "postnas-train on CUDA: the tiny demo configs (documents masked), then the ANCHORS.md distillation step"
TR=/tmp/pn-trainer
rm -rf $TR && mkdir -p $TR/demo
build-gpu/postnas-data synth --task corpus --n 4000 --out $TR/demo/corpus.jsonl > /dev/null
build-gpu/postnas-mkckpt --preset tiny --seed 1 --out $TR/demo/init > /dev/null
build-gpu/postnas-data tokenize --tokenizer $TR/demo/init --jsonl $TR/demo/corpus.jsonl --field text --out $TR/demo/shards > /dev/null
# peak device memory of a command: nvidia-smi polled every 100 ms (the whole GPU, this process alone on it)
peak() {
  nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits -lms 100 > $TR/mem.log & local pid=$!
  "$@"; local rc=$?
  kill $pid; wait $pid 2> /dev/null
  echo "  peak device memory $(sort -n $TR/mem.log | tail -1) MiB (rc $rc)" | tee -a "$OUTDIR/summary.txt"
}
set_demo="--set data.train=[$TR/demo/shards/*.h5] --set device=cuda --no-progress"
build-gpu/postnas-train --config configs/tiny-pretrain.yaml $set_demo --set out_dir=$TR/pre --set model.init=$TR/demo/init --set train.steps=30 \
  --set train.warmup_steps=5 \
  2> $OUTDIR/trainer-pre.log; tail -2 $OUTDIR/trainer-pre.log | tee -a "$OUTDIR/summary.txt"
build-gpu/postnas-train --config configs/tiny-distill.yaml $set_demo --set out_dir=$TR/dist --set model.teacher=$TR/pre/latest --set train.steps=20 \
  --set train.warmup_steps=5 \
  2> $OUTDIR/trainer-dist.log; tail -2 $OUTDIR/trainer-dist.log | tee -a "$OUTDIR/summary.txt"
if want eval; then # needs the demo's pretrained model
  log "postnas-eval on CPU and CUDA: the demo model's synthetic tasks, request by request"
  for d in cpu cuda; do
    build-gpu/postnas-eval --model $TR/pre/latest --tasks synth_facts_mc,synth_passkey,synth_copy --limit 40 \
      --max-gen-toks 16 --device $d --log-samples $TR/ev-$d.jsonl --out $TR/ev-$d.json --no-progress \
      > $TR/ev-$d.table 2>&1 || tail -3 $TR/ev-$d.table | tee -a "$OUTDIR/summary.txt"
    grep "postnas-eval:" $TR/ev-$d.table | tee -a "$OUTDIR/summary.txt"
  done
  python3 tests/gpu/eval_agree.py $TR/ev-cpu.jsonl $TR/ev-cuda.jsonl $TR/ev-cpu.json $TR/ev-cuda.json 2>&1 | tee -a "$OUTDIR/summary.txt"
fi
fi
if want trainer; then
# the anchor: Qwen2.5-1.5B-shaped teacher, 26 gdn + 2 attn (layers 14, 19) student, batch 2 x 4096, MLPs frozen
build-gpu/postnas-mkckpt --preset qwen2.5-1.5b --seed 1 --tokenizer none --out $TR/q15 > /dev/null
types=$(python3 -c "print('[' + ','.join('attn' if l in (14, 19) else 'gdn' for l in range(28)) + ']')")
for loss in "--set loss.mse=1" "--set loss.kl=1"; do
  echo "distillation step, $loss:" | tee -a "$OUTDIR/summary.txt"
  peak build-gpu/postnas-train --config configs/tiny-distill.yaml $set_demo --set out_dir=$TR/anchor-${loss##*.} \
    --set model.teacher=$TR/q15 --set "model.student.layer_types=$types" --set train.seq_len=4096 \
    --set train.global_batch=2 --set train.micro_batch=2 --set train.steps=8 --set train.warmup_steps=0 \
    --set loss.kl=0 --set loss.mse=0 $loss --set loss.mse_layers=final --set log.every=1 --set checkpoint.every=0 --set data.mask_documents=false \
    2> $OUTDIR/trainer-anchor.log
  tail -3 $OUTDIR/trainer-anchor.log | tee -a "$OUTDIR/summary.txt"
  python3 -c "import json,statistics,sys; r=[json.loads(l) for l in open(sys.argv[1])][2:]; print('  median tok/s (steps 3-8): %.0f' % statistics.median(x['tok_s'] for x in r))" \
    $TR/anchor-${loss##*.}/metrics.jsonl | tee -a "$OUTDIR/summary.txt"
done
fi

if want supernet; then # needs the trainer stage's demo shards
# issue 15: the Qwen2.5-1.5B supernet of configs/qwen2.5-1.5b/supernet.yaml (every layer: full attention,
# SWA 1152, JetBlock), one k_full = 2 subnet + the all-linear one per micro-batch, batch 2 x 4096, next to the
# distillation step above; global (LM-head KL + MSE) and local (layer-wise MSE) modes
log "supernet step, Qwen2.5-1.5B shape"
[ -f $TR/q15/config.json ] || build-gpu/postnas-mkckpt --preset qwen2.5-1.5b --seed 1 --tokenizer none --out $TR/q15 > /dev/null
for mode in "global --set loss.kl=1" "local --set loss.kl=0"; do # local: layer-wise MSE alone
  echo "supernet step, mode $mode:" | tee -a "$OUTDIR/summary.txt"
  peak build-gpu/postnas-train --config configs/qwen2.5-1.5b/supernet.yaml $set_demo --set out_dir=$TR/sn-${mode%% *} \
    --set model.teacher=$TR/q15 --set supernet.mode=$mode --set train.global_batch=2 --set train.steps=8 \
    --set train.warmup_steps=0 --set log.every=1 --set checkpoint.every=0 --set data.mask_documents=false \
    2> $OUTDIR/trainer-sn.log
  tail -3 $OUTDIR/trainer-sn.log | tee -a "$OUTDIR/summary.txt"
  python3 -c "import json,statistics,sys; r=[json.loads(l) for l in open(sys.argv[1])][2:]; print('  median tok/s (steps 3-8): %.0f' % statistics.median(x['tok_s'] for x in r))" \
    $TR/sn-${mode%% *}/metrics.jsonl | tee -a "$OUTDIR/summary.txt"
done
fi

if want nccl; then # needs the trainer stage's demo shards and pretrained model
# issue 17: the NCCL gradient path. A world of one under mpirun runs it (communicator bootstrapped over MPI,
# each layer's gradients summed on the communication stream as its backward finishes): the losses must equal
# the run without a launcher (a sum over one rank), and the step reports its wait for communication. With
# two GPUs or more, -np 2 x micro-batch 2 against one process x micro-batch 4, as test_mpi does on the CPU.
log "NCCL: postnas-train under mpirun on CUDA"
MPIRUN="mpirun --allow-run-as-root --oversubscribe --bind-to none"
nccl_run() { # NAME NP ARGS...
  local name=$1 np=$2; shift 2
  if [ "$np" = 0 ]; then
    build-gpu/postnas-train --config configs/tiny-distill.yaml $set_demo --set out_dir=$TR/nccl-$name "$@" 2> $OUTDIR/nccl-$name.log
  else
    NCCL_DEBUG=WARN $MPIRUN -np $np build-gpu/postnas-train --config configs/tiny-distill.yaml $set_demo \
      --set out_dir=$TR/nccl-$name "$@" > $OUTDIR/nccl-$name.log 2>&1
  fi
  echo "  $name (np $np): rc $? $(grep -E '^done|error' $OUTDIR/nccl-$name.log | tail -1)" | tee -a "$OUTDIR/summary.txt"
}
nccl_same() { # A B: losses and gradient norms within 1e-5 relative; B reports its communication wait
  python3 - $TR/nccl-$1/metrics.jsonl $TR/nccl-$2/metrics.jsonl << 'PYEOF' 2>&1 | tee -a "$OUTDIR/summary.txt"
import json, sys
a = [json.loads(l) for l in open(sys.argv[1])]; b = [json.loads(l) for l in open(sys.argv[2])]
bad = [(x['step'], k, x[k], y[k]) for x, y in zip(a, b) for k in ('loss', 'grad_norm') if abs(x[k] - y[k]) > 1e-5 * abs(x[k])]
w = [y.get('comm_wait_ms') for y in b]
print(f"  {len(a)} vs {len(b)} steps, {'same' if not bad and len(a) == len(b) else 'DIFFER ' + str(bad[:3])}; comm_wait_ms {w[:4]}")
PYEOF
}
nl="--set model.teacher=$TR/pre/latest --set train.steps=10 --set train.warmup_steps=2 --set log.every=1 --set checkpoint.every=0"
nccl_run one 0 $nl
nccl_run np1 1 $nl
nccl_same one np1
G=$(nvidia-smi -L | wc -l)
if [ "$G" -ge 2 ]; then
  nccl_run mb4 0 $nl --set train.global_batch=8 --set train.micro_batch=4
  nccl_run np2 2 $nl --set train.global_batch=8 --set train.micro_batch=2
  nccl_same mb4 np2
  nccl_run np2-zero 2 $nl --set train.global_batch=8 --set train.micro_batch=2 --set train.trainable=all
  nccl_run mb4-all 0 $nl --set train.global_batch=8 --set train.micro_batch=4 --set train.trainable=all
  nccl_same mb4-all np2-zero
fi
# the anchor student's step (Qwen2.5-1.5B shape, 26 gdn + 2 attn, B 2 x 4096) with and without the NCCL path
[ -f $TR/q15/config.json ] || build-gpu/postnas-mkckpt --preset qwen2.5-1.5b --seed 1 --tokenizer none --out $TR/q15 > /dev/null
types=$(python3 -c "print('[' + ','.join('attn' if l in (14, 19) else 'gdn' for l in range(28)) + ']')")
for np in 0 1; do # (the GPU's own run-to-run spread, two runs without a launcher: anchor0 vs anchor0b)
  nccl_run anchor$np $np --set model.teacher=$TR/q15 --set "model.student.layer_types=$types" --set train.seq_len=4096 \
    --set train.global_batch=2 --set train.micro_batch=2 --set train.steps=8 --set train.warmup_steps=0 --set loss.kl=0 \
    --set loss.mse=1 --set loss.mse_layers=final --set log.every=1 --set checkpoint.every=0 --set data.mask_documents=false
  python3 -c "import json,statistics,sys; r=[json.loads(l) for l in open(sys.argv[1])][2:]; print('  median tok/s (steps 3-8): %.0f, comm wait %s ms' % (statistics.median(x['tok_s'] for x in r), statistics.median(x.get('comm_wait_ms', 0) for x in r)))" \
    $TR/nccl-anchor$np/metrics.jsonl 2>&1 | tee -a "$OUTDIR/summary.txt"
done
nccl_run anchor0b 0 --set model.teacher=$TR/q15 --set "model.student.layer_types=$types" --set train.seq_len=4096 \
  --set train.global_batch=2 --set train.micro_batch=2 --set train.steps=8 --set train.warmup_steps=0 --set loss.kl=0 \
  --set loss.mse=1 --set loss.mse_layers=final --set log.every=1 --set checkpoint.every=0 --set data.mask_documents=false
nccl_same anchor0 anchor0b
nccl_same anchor0 anchor1
fi

if want eval-speed; then
# issue 14: MMLU 5-shot on a Qwen2.5-1.5B-shaped model (random weights, the Qwen2 tokenizer), postnas-eval on
# CUDA next to lm-evaluation-harness's HF backend scoring the same requests. Needs PN_LMEVAL (default
# .lmeval, carried): whl/ (lm_eval, accelerate, psutil, dill, more_itertools), tasks/mmlu, tokenizers/qwen2.
L=${PN_LMEVAL:-.lmeval}
log "MMLU 5-shot speed: postnas-eval vs lm-eval HFLM (limit ${PN_MMLU_LIMIT:-20} per subject)"
python3 -m pip install -q --no-index --no-deps --target /tmp/pn-lmeval $L/whl/*.whl > /dev/null 2>&1
build-gpu/postnas-mkckpt --preset qwen2.5-1.5b --seed 1 --tokenizer $L/tokenizers/qwen2 --out /tmp/pn-q15tok > /dev/null
best=
for eb in ${PN_EVAL_BATCH:-4096}; do # tokens per packed forward
  t0=$(date +%s.%N)
  build-gpu/postnas-eval --model /tmp/pn-q15tok --tasks mmlu --num-fewshot 5 --limit ${PN_MMLU_LIMIT:-20} --data $L/tasks \
    --device cuda --batch $eb --log-samples /tmp/pn-mmlu.jsonl --out /tmp/pn-mmlu.json --no-progress > /tmp/pn-mmlu.table 2>&1
  rc=$?; t1=$(date +%s.%N)
  s=$(python3 -c "print('%.2f' % ($t1 - $t0))")
  echo "postnas-eval --batch $eb: $s s wall, loading included" | tee -a "$OUTDIR/summary.txt"
  grep "postnas-eval:" /tmp/pn-mmlu.table | tee -a "$OUTDIR/summary.txt"; [ $rc = 0 ] || tail -3 /tmp/pn-mmlu.table | tee -a "$OUTDIR/summary.txt"
  best=$(python3 -c "print(min(x for x in [$s, ${best:-1e9}]))")
done
for b in ${PN_LMEVAL_BATCH:-16}; do
  PYTHONPATH=/tmp/pn-lmeval python3 tests/gpu/lmeval_speed.py /tmp/pn-q15tok /tmp/pn-mmlu.jsonl --batch $b \
    --postnas-seconds "$best" 2>&1 | tail -4 | tee -a "$OUTDIR/summary.txt"
done
fi

if want sanitize-attn && command -v compute-sanitizer > /dev/null; then
  PN_TEST_NO_BENCH=1 compute-sanitizer --tool memcheck --error-exitcode 9 build-gpu/tests/test_attention_bwd_cuda > "$OUTDIR/sanitizer.log" 2>&1
  echo "compute-sanitizer test_attention_bwd_cuda exit $?" | tee -a "$OUTDIR/summary.txt"
fi
if want sanitize && command -v compute-sanitizer > /dev/null; then
  log "compute-sanitizer (memcheck) on the op tests and the CUDA parity run"
  PN_TEST_NO_BENCH=1 compute-sanitizer --tool memcheck --error-exitcode 9 build-gpu/tests/test_ops_cuda > "$OUTDIR/sanitizer.log" 2>&1
  echo "compute-sanitizer test_ops_cuda exit $?" | tee -a "$OUTDIR/summary.txt"
  PN_TEST_NO_BENCH=1 compute-sanitizer --tool memcheck --error-exitcode 9 build-gpu/tests/test_attention_bwd_cuda >> "$OUTDIR/sanitizer.log" 2>&1
  echo "compute-sanitizer test_attention_bwd_cuda exit $?" | tee -a "$OUTDIR/summary.txt"
  PN_TEST_NO_BENCH=1 compute-sanitizer --tool memcheck --error-exitcode 9 build-gpu/tests/test_gdn_cuda >> "$OUTDIR/sanitizer.log" 2>&1
  echo "compute-sanitizer test_gdn_cuda exit $?" | tee -a "$OUTDIR/summary.txt"
  PN_TEST_NO_BENCH=1 compute-sanitizer --tool memcheck --error-exitcode 9 build-gpu/tests/test_gdn_bwd_cuda >> "$OUTDIR/sanitizer.log" 2>&1
  echo "compute-sanitizer test_gdn_bwd_cuda exit $?" | tee -a "$OUTDIR/summary.txt"
  compute-sanitizer --tool memcheck --error-exitcode 9 build-gpu/tests/test_train_ops_cuda >> "$OUTDIR/sanitizer.log" 2>&1
  echo "compute-sanitizer test_train_ops_cuda exit $?" | tee -a "$OUTDIR/summary.txt"
  PN_TEST_NO_BENCH=1 compute-sanitizer --tool memcheck --error-exitcode 9 build-gpu/tests/test_conv_cuda >> "$OUTDIR/sanitizer.log" 2>&1
  echo "compute-sanitizer test_conv_cuda exit $?" | tee -a "$OUTDIR/summary.txt"
  PN_TEST_NO_BENCH=1 compute-sanitizer --tool memcheck --error-exitcode 9 build-gpu/tests/test_optim_cuda >> "$OUTDIR/sanitizer.log" 2>&1
  echo "compute-sanitizer test_optim_cuda exit $?" | tee -a "$OUTDIR/summary.txt"
  PN_TEST_NO_BENCH=1 compute-sanitizer --tool memcheck --error-exitcode 9 build-gpu/tests/test_block_train --device cuda >> "$OUTDIR/sanitizer.log" 2>&1
  echo "compute-sanitizer test_block_train exit $?" | tee -a "$OUTDIR/summary.txt"
  tail -3 "$OUTDIR/sanitizer.log" | tee -a "$OUTDIR/summary.txt"
fi

if want bench; then
log "forward benchmark, Qwen2.5-1.5B shape, bf16"
build-gpu/postnas-mkckpt --preset qwen2.5-1.5b --seed 1 --out /tmp/pn-q15 | tee -a "$OUTDIR/summary.txt"
build-gpu/tests/bench_forward /tmp/pn-q15 --device cuda --batch 2 --seq 4096 --iters 10 2>&1 | tee -a "$OUTDIR/summary.txt"
build-gpu/tests/bench_forward /tmp/pn-q15 --device cuda --batch 8 --seq 1024 --iters 10 2>&1 | tee -a "$OUTDIR/summary.txt"
echo "without cuDNN attention:" | tee -a "$OUTDIR/summary.txt"
PN_NO_CUDNN=1 build-gpu/tests/bench_forward /tmp/pn-q15 --device cuda --batch 2 --seq 4096 --iters 10 2>&1 | tee -a "$OUTDIR/summary.txt"
fi
if want bench || want decode; then
log "decode (batch 1, 512-token prompt, 128 new tokens): the step as a CUDA graph vs PN_NO_GRAPH=1, PN_NO_FUSED=1 (every decode fusion as the ops it fuses), PN_NORM_MLP=1 (the MLP with its norms, two launches) and PN_NO_PDL=1 (no programmatic dependent launch), same tokens"
[ -f /tmp/pn-q15/config.json ] || build-gpu/postnas-mkckpt --preset qwen2.5-1.5b --seed 1 --out /tmp/pn-q15 > /dev/null
# Jet-Nemotron-2B's shape: Qwen2.5-1.5B with JetBlock (12 heads, d_k 96, d_v 256) but attn at 14 and 19 and
# swa (window 1152) at 20 and 21.
jt=$(python3 -c "t=['jet']*28; t[14]=t[19]='attn'; t[20]=t[21]='swa'; print(','.join(t))")
build-gpu/postnas-mkckpt --preset qwen2.5-1.5b --layer-types "$jt" --sliding-window 1152 --lin-heads 12 \
  --lin-head-dim 96 --lin-expand-v 2.6667 --seed 1 --out /tmp/pn-jet2b | tee -a "$OUTDIR/summary.txt"
ids=$(seq -s, 1 512)
for ck in /tmp/pn-q15 /tmp/pn-jet2b; do
  g=$(build-gpu/postnas-generate --model $ck --ids "$ids" --max-new-tokens 128 --device cuda --print-ids 2> /tmp/gen-g.err)
  n=$(PN_NO_GRAPH=1 build-gpu/postnas-generate --model $ck --ids "$ids" --max-new-tokens 128 --device cuda --print-ids 2> /tmp/gen-n.err)
  u=$(PN_NO_FUSED=1 build-gpu/postnas-generate --model $ck --ids "$ids" --max-new-tokens 128 --device cuda --print-ids 2> /tmp/gen-u.err)
  r=$(PN_NORM_MLP=1 build-gpu/postnas-generate --model $ck --ids "$ids" --max-new-tokens 128 --device cuda --print-ids 2> /tmp/gen-r.err)
  p=$(PN_NO_PDL=1 build-gpu/postnas-generate --model $ck --ids "$ids" --max-new-tokens 128 --device cuda --print-ids 2> /tmp/gen-p.err)
  { echo "graph:    $(tail -1 /tmp/gen-g.err)"; echo "no graph: $(tail -1 /tmp/gen-n.err)"; echo "unfused, graph: $(tail -1 /tmp/gen-u.err)"
    echo "PN_NORM_MLP=1, graph: $(tail -1 /tmp/gen-r.err)"; echo "no PDL, graph: $(tail -1 /tmp/gen-p.err)"; } | tee -a "$OUTDIR/summary.txt"
  if [ -n "$g" ] && [ "$g" = "$n" ] && [ "$g" = "$u" ] && [ "$g" = "$r" ] && [ "$g" = "$p" ]; then
    echo "decode graph = no graph = unfused = PN_NORM_MLP = no PDL: $(echo "$g" | tr ',' '\n' | wc -l) tokens ($ck)"
  else echo "FAIL: decode tokens differ between graph / no graph / unfused / PN_NORM_MLP / no PDL ($ck): $g vs $n vs $u vs $r vs $p"; fi | tee -a "$OUTDIR/summary.txt"
done
fi
if [ -n "${PN_GPU_EXTRA:-}" ]; then # a one-off command in this environment (built tree, carried libraries)
  log "extra: $PN_GPU_EXTRA"
  bash -c "$PN_GPU_EXTRA" 2>&1 | tee -a "$OUTDIR/summary.txt"
fi
log "done"
