#!/usr/bin/env bash
# Data-parallel postnas-train under Open MPI (issue 17), CPU backend: `mpirun -np 2` with train.micro_batch b
# reproduces one process with micro-batch 2b (the same global batch) for 10 steps — pretraining,
# distillation; for the supernet in global and in local mode, which draws a subnet per micro-batch, one process
# running the same micro-batches: the same subnets, listed whole in metrics.jsonl — to 1e-5 relative in the
# losses and gradient norms, also with the optimizer state sharded (ZeRO-1, whose checkpoint is the unsharded
# format); a run resumed at -np 2 continues exactly as the uninterrupted one; a killed rank
# ends the job with a message naming it, well within 60 s, and so does one that hangs (train.step_timeout); SIGTERM to mpirun stops every rank with one
# checkpoint that --resume continues from; a global batch the ranks cannot split is refused.
# Skipped (exit 77) when mpirun is missing or postnas was built without MPI.
set -u
B=${1:?usage: test_mpi.sh BUILD_DIR}
T=$(mktemp -d /tmp/pn_test_mpi.XXXXXX)
trap 'rm -rf "$T"' EXIT
. "$(dirname "$0")/test_lib.sh"
command -v mpirun > /dev/null || { echo "mpirun not found: skipped"; exit 77; }
# Open MPI's own allocations are not ours to account for: no leak report under AddressSanitizer
export ASAN_OPTIONS=${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0
MPI="mpirun --allow-run-as-root --oversubscribe --bind-to none"
TRAIN="$B/postnas-train"

tiny_model_and_shards "$B" "$T/m" "$T/d" 1 300
cat > "$T/base.yaml" << EOF
seed: 1
device: cpu
threads: 1
data:
  train: [$T/d/shards/*.h5]
train:
  steps: 10
  seq_len: 64
  global_batch: 8
  micro_batch: 4
  lr: 3.0e-3
  warmup_steps: 2
log:
  every: 1
EOF
if ! $MPI -np 2 "$TRAIN" --config "$T/base.yaml" --set out_dir="$T/probe" --set model.init="$T/m" \
  --set train.stage=pretrain --set loss.ce=1 --set train.steps=1 --set train.warmup_steps=0 --no-progress > "$T/probe.log" 2>&1; then
  if grep -q "built without MPI" "$T/probe.log"; then echo "postnas built without MPI: skipped"; exit 77; fi
  bad "mpirun -np 2 probe: $(tail -3 "$T/probe.log")"
fi

# the metrics of two runs agree line by line (loss and gradient norm within 1e-5 relative). Under -np 2 the
# gradients are summed in buckets: each layer's starts (MPI_Iallreduce / MPI_Ireduce) as soon as the step's
# last backward is done with that layer, so an early start (before the last micro-batch of the accumulation)
# or a missed tensor would change the numbers.
same_metrics() { # A B WHAT
  python3 -c "
import json, sys
a = [json.loads(l) for l in open(sys.argv[1])]; b = [json.loads(l) for l in open(sys.argv[2])]
assert len(a) == len(b) == 10, (len(a), len(b))
for x, y in zip(a, b):
    for k in ('loss', 'grad_norm'):
        assert abs(x[k] - y[k]) <= 1e-5 * abs(x[k]), (x['step'], k, x[k], y[k])
    assert x.get('subnets') == y.get('subnets'), (x['step'], x.get('subnets'), y.get('subnets'))
    # the step's wait for the gradient sums the backward did not hide: only where there are ranks to sum
    assert 'comm_wait_ms' not in x and y['comm_wait_ms'] >= 0, (x, y)
" "$1" "$2" && ok || bad "$3: -np 2 differs from one process"
}
one_vs_two() { # NAME MICRO_BATCH_OF_ONE_PROCESS ARGS...
  local name=$1 mb=$2; shift 2
  "$TRAIN" --config "$T/base.yaml" --set out_dir="$T/$name-1" --set train.micro_batch=$mb "$@" --no-progress 2> "$T/$name-1.log" ||
    { bad "$name, one process: $(tail -2 "$T/$name-1.log")"; return; }
  $MPI -np 2 "$TRAIN" --config "$T/base.yaml" --set out_dir="$T/$name-2" --set train.micro_batch=2 "$@" \
    --no-progress > "$T/$name-2.log" 2>&1 || { bad "$name, -np 2: $(tail -3 "$T/$name-2.log")"; return; }
  grep -q "2 processes x 2 micro-batches of 2" "$T/$name-2.log" && ok || bad "$name: the run did not say its world"
  same_metrics "$T/$name-1/metrics.jsonl" "$T/$name-2/metrics.jsonl" "$name"
}
# pretraining and distillation: -np 2 x micro-batch 2 = one process x micro-batch 4. The supernet draws a subnet
# per micro-batch, so its one-process twin runs the same 4 micro-batches of 2 per step.
one_vs_two pretrain 4 --set model.init="$T/m" --set train.stage=pretrain --set loss.ce=1
# mpirun -np 1: MPI is initialized for a world of one too (on CUDA it bootstraps the NCCL communicator); the
# numbers are those of the run without a launcher, bit for bit
$MPI -np 1 "$TRAIN" --config "$T/base.yaml" --set out_dir="$T/np1" --set train.micro_batch=4 --set model.init="$T/m" \
  --set train.stage=pretrain --set loss.ce=1 --no-progress > "$T/np1.log" 2>&1 && python3 -c "
import json, sys
a = [json.loads(l) for l in open(sys.argv[1])]; b = [json.loads(l) for l in open(sys.argv[2])]
assert len(a) == len(b) == 10 and all(x['loss'] == y['loss'] and x['grad_norm'] == y['grad_norm'] for x, y in zip(a, b)), (a, b)
" "$T/pretrain-1/metrics.jsonl" "$T/np1/metrics.jsonl" && ok || bad "mpirun -np 1 differs from no launcher: $(tail -3 "$T/np1.log")"
# (PN_TEST_QUICK, the sanitized run: pretraining, stage 2 with ZeRO-1 and the fault cases only; the rest is
# the same code under other configs, covered by the release run)
[ -z "${PN_TEST_QUICK:-}" ] && one_vs_two distill 4 --set model.teacher="$T/m" --set train.stage=distill --set "model.student.layer_types=[attn,gdn,jet,swa=16]" \
  --set loss.kl=1 --set loss.mse=1
[ -z "${PN_TEST_QUICK:-}" ] && one_vs_two supernet 2 --set model.teacher="$T/m" --set train.stage=supernet --set "model.supernet.candidates=[swa=8,gdn]" \
  --set supernet.sample=k_full --set supernet.k_full=1 --set supernet.sandwich=true --set loss.kl=1 --set loss.mse=1
[ -z "${PN_TEST_QUICK:-}" ] && one_vs_two supernet-local 2 --set model.teacher="$T/m" --set train.stage=supernet --set "model.supernet.candidates=[gdn,jet]" \
  --set supernet.mode=local --set loss.mse=1

# ZeRO-1 (optimizer state sharded: gradients reduced to each tensor's owner, updated tensors broadcast): on by
# default for stage 2 (distill, trainable all), asked for with train.zero: on; the same losses
one_vs_two distill-all 4 --set model.teacher="$T/m" --set train.stage=distill --set train.trainable=all \
  --set "model.student.layer_types=[attn,gdn,jet,swa=16]" --set loss.kl=1 --set loss.mse=1
grep -q "ZeRO-1" "$T/distill-all-2.log" && ok || bad "stage 2 under mpirun did not shard the optimizer state"
one_vs_two pretrain-zero 4 --set model.init="$T/m" --set train.stage=pretrain --set loss.ce=1 --set train.zero=on
grep -q "ZeRO-1" "$T/pretrain-zero-2.log" && ! grep -q "ZeRO-1" "$T/pretrain-2.log" && ok ||
  bad "train.zero: on / auto (pretrain: off)"
# its checkpoint is the one-process format: the optimizer state equals the unsharded run's
python3 - "$T/pretrain-2" "$T/pretrain-zero-2" << 'PYEOF' && ok || bad "ZeRO-1 checkpoint differs from the unsharded one"
import glob, json, struct, sys
def tensors(run):
    p = sorted(glob.glob(run + "/checkpoints/step-*/optimizer.safetensors"))[-1]
    b = open(p, "rb").read()
    n = struct.unpack("<Q", b[:8])[0]
    h = json.loads(b[8:8 + n])
    meta = h.pop("__metadata__")
    out = {k: struct.unpack("<%df" % ((v["data_offsets"][1] - v["data_offsets"][0]) // 4),
                            b[8 + n + v["data_offsets"][0]:8 + n + v["data_offsets"][1]]) for k, v in h.items()}
    return meta, out
ma, a = tensors(sys.argv[1])
mb, b = tensors(sys.argv[2])
assert ma == mb and a.keys() == b.keys(), (ma, mb)
for k in a:
    err = max(abs(x - y) / max(1e-6, abs(x)) for x, y in zip(a[k], b[k])) if a[k] else 0
    assert err <= 1e-4, (k, err)
PYEOF

# resume at -np 2 with the optimizer state sharded (ZeRO-1): drop the last checkpoint (step 10), resume from step 5;
# the rest equals the uninterrupted sharded run exactly
cp "$T/pretrain-zero-2/metrics.jsonl" "$T/full.jsonl"
$MPI -np 2 "$TRAIN" --config "$T/base.yaml" --set out_dir="$T/res" --set train.micro_batch=2 --set model.init="$T/m" \
  --set train.stage=pretrain --set loss.ce=1 --set train.zero=on --set checkpoint.every=5 --set train.steps=10 --no-progress > "$T/res0.log" 2>&1 ||
  bad "resume: first run: $(tail -3 "$T/res0.log")"
rm -rf "$T/res/checkpoints/step-00000010" "$T/res/latest"
$MPI -np 2 "$TRAIN" --config "$T/base.yaml" --set out_dir="$T/res" --set train.micro_batch=2 --set model.init="$T/m" \
  --set train.stage=pretrain --set loss.ce=1 --set train.zero=on --set checkpoint.every=5 --set train.steps=10 --resume --no-progress \
  > "$T/res.log" 2>&1 && grep -q "resuming from .*step-00000005" "$T/res.log" && ok || bad "resume at -np 2: $(tail -3 "$T/res.log")"
python3 -c "
import json, sys
a = [json.loads(l) for l in open(sys.argv[1])]; b = [json.loads(l) for l in open(sys.argv[2])]
assert [x['loss'] for x in a] == [x['loss'] for x in b], (a, b)
" "$T/full.jsonl" "$T/res/metrics.jsonl" && ok || bad "resumed -np 2 run differs from the uninterrupted one"

# a killed rank ends the job, naming it
$MPI -np 2 "$TRAIN" --config "$T/base.yaml" --set out_dir="$T/kill" --set train.micro_batch=2 --set model.init="$T/m" \
  --set train.stage=pretrain --set loss.ce=1 --set train.steps=1000000 --set checkpoint.every=0 --no-progress \
  > "$T/kill.log" 2>&1 &
job=$!
victim=
for _ in $(seq 300); do # rank 1's pid, from its environment (through /proc: a minimal system has no pgrep)
  for d in /proc/[0-9]*; do
    [ "$(cat "$d/comm" 2> /dev/null)" = postnas-train ] || continue
    tr '\0' '\n' < "$d/cmdline" 2> /dev/null | grep -q "$T/kill" || continue
    tr '\0' '\n' < "$d/environ" 2> /dev/null | grep -qx "OMPI_COMM_WORLD_RANK=1" && victim=${d#/proc/}
  done
  [ -n "$victim" ] && grep -q "^step" "$T/kill.log" 2> /dev/null && break
  sleep 0.2
done
if [ -z "$victim" ]; then
  bad "kill: rank 1 not found"
  kill -9 $job 2> /dev/null
else
  t0=$(date +%s)
  kill -9 "$victim"
  for _ in $(seq 600); do kill -0 $job 2> /dev/null || break; sleep 0.1; done
  if kill -0 $job 2> /dev/null; then
    bad "kill: the job still runs 60 s after rank 1 died"
    kill -9 $job 2> /dev/null
  else
    wait $job
    rc=$?
    [ $rc -ne 0 ] && grep -qi "rank 1" "$T/kill.log" && ok || bad "kill: exit $rc, log: $(tail -5 "$T/kill.log")"
    echo "a killed rank ended the job in $(( $(date +%s) - t0 )) s"
  fi
fi

# a rank that hangs (PN_TEST_HANG_RANK: rank 1 sleeps in step 3) ends the job, naming itself, after
# train.step_timeout
t0=$(date +%s)
PN_TEST_HANG_RANK=1 PN_TEST_HANG_STEP=3 timeout 120 $MPI -np 2 "$TRAIN" --config "$T/base.yaml" --set out_dir="$T/hang" \
  --set train.micro_batch=2 --set model.init="$T/m" --set train.stage=pretrain --set loss.ce=1 --set train.step_timeout=5 \
  --no-progress > "$T/hang.log" 2>&1
rc=$?
dt=$(( $(date +%s) - t0 ))
[ $rc -ne 0 ] && [ $rc -ne 124 ] && [ $dt -le 60 ] && grep -q "rank 1 of 2: step 3 has run [0-9]* s without finishing" "$T/hang.log" &&
  ok || bad "hung rank: exit $rc after $dt s; $(grep -v '^step' "$T/hang.log" | tail -4)"
echo "a hung rank ended the job in $dt s"

# SIGTERM to mpirun (a launcher's stop, e.g. Slurm's time limit): every rank stops after the same step, rank 0
# writes the checkpoint, and --resume continues from it
$MPI -np 2 "$TRAIN" --config "$T/base.yaml" --set out_dir="$T/term" --set train.micro_batch=2 --set model.init="$T/m" \
  --set train.stage=pretrain --set loss.ce=1 --set train.steps=1000000 --set checkpoint.every=0 --no-progress \
  > "$T/term.log" 2>&1 &
job=$!
for _ in $(seq 300); do grep -q "^step 3/" "$T/term.log" 2> /dev/null && break; sleep 0.1; done
kill -TERM $job
for _ in $(seq 600); do kill -0 $job 2> /dev/null || break; sleep 0.1; done
if kill -0 $job 2> /dev/null; then
  bad "SIGTERM: the job still runs after 60 s"
  kill -9 $job 2> /dev/null
else
  n=$(ls "$T/term/checkpoints" 2> /dev/null | wc -l)
  grep -q "stopped by signal 15 at step" "$T/term.log" && [ "$n" -eq 1 ] && ok || bad "SIGTERM: $n checkpoints; $(tail -3 "$T/term.log")"
  # the same run resumed (the same config: a changed one is refused), stopped again once it has stepped on
  $MPI -np 2 "$TRAIN" --config "$T/base.yaml" --set out_dir="$T/term" --set train.micro_batch=2 --set model.init="$T/m" \
    --set train.stage=pretrain --set loss.ce=1 --set train.steps=1000000 --set checkpoint.every=0 --resume --no-progress \
    > "$T/term2.log" 2>&1 &
  job=$!
  for _ in $(seq 300); do grep -q "^step" "$T/term2.log" 2> /dev/null && break; sleep 0.1; done
  kill -TERM $job
  wait $job
  first=$(grep -m1 "^step" "$T/term2.log" | sed 's#^step \([0-9]*\)/.*#\1#')
  grep -q "resuming from .*step-$(printf '%08d' $((first - 1)))" "$T/term2.log" && ok ||
    bad "SIGTERM then --resume: $(head -3 "$T/term2.log")"
fi

# a global batch the ranks cannot split
$MPI -np 3 "$TRAIN" --config "$T/base.yaml" --set out_dir="$T/bad" --set model.init="$T/m" --set train.stage=pretrain \
  --set loss.ce=1 --set train.micro_batch=2 --no-progress > "$T/bad.log" 2>&1
# (an error every rank finds alike is printed once per job, by rank 0)
[ $? -ne 0 ] && [ "$(grep -c "train.global_batch 8 is not a multiple of the 3 processes x train.micro_batch 2" "$T/bad.log")" = 1 ] &&
  ok || bad "indivisible global batch, said once: $(tail -3 "$T/bad.log")"
$MPI -np 2 "$TRAIN" --config "$T/base.yaml" --set out_dir="$T/bad" --set train.no_such_key=1 --no-progress > "$T/bad2.log" 2>&1
[ $? -ne 0 ] && [ "$(grep -c "postnas-train: error: .*no_such_key" "$T/bad2.log")" = 1 ] &&
  ok || bad "a config error, said once: $(tail -3 "$T/bad2.log")"

echo "mpi: $pass passed, $fail failed"
[ $fail -eq 0 ]
