#!/usr/bin/env bash
# postnas-train end to end on the CPU (data made by the project's own tools):
# - the supernet stage: the subnets it draws, its checkpoint, kill -9 + resume, untouched undrawn paths;
# - the three modes run (pretrain; distill with the student's mixers in the teacher's model; distill with a
#   separate student), their checkpoints are Hugging Face folders postnas-generate runs;
# - frozen tensors are bit-identical after training and only trainable tensors have optimizer state;
# - kill -9 at a random step, then --resume: every remaining metrics line equals the uninterrupted run's
#   (losses, lr, grad norm printed to 9 digits), for a pretrain and a stage-1 distill run;
# - SIGTERM writes a checkpoint and stops; K non-finite steps stop the run;
# - the torch goldens (tests/goldens/trainer, tests/make_trainer_goldens.py): 10 steps of each case within
#   1e-4 relative in every loss term;
# - bad configs and inputs end with one error line naming the file or key, exit 1.
set -u
B=${1:?usage: test_trainer.sh BUILD_DIR [GOLDENS_DIR]}
G=${2:-}
TRAIN=$B/postnas-train
T=$(mktemp -d /tmp/pn_test_trainer.XXXXXX)
trap 'kill -9 $(jobs -p) 2> /dev/null; umount "$T/full" 2> /dev/null; rm -rf "$T"' EXIT
. "$(dirname "$0")/test_lib.sh"
export PYTHONPATH=$(cd "$(dirname "$0")" && pwd) # st_values.py

# metrics without the timing fields (what must be equal between runs)
strip() { sed -E 's/"tok_s": [0-9.e+]+, //' "$1"; }

# ---- data and a starting model
tiny_model_and_shards "$B" "$T/init" "$T/d" 1 300

cat > "$T/pre.yaml" << EOF
out_dir: $T/pre
seed: 2
device: cpu
threads: 1
model:
  init: $T/init
data:
  train: [$T/d/shards/*.h5]
train:
  stage: pretrain
  steps: 40
  seq_len: 128
  global_batch: 8
  micro_batch: 4
  lr: 3.0e-3
  warmup_steps: 4
loss:
  ce: 1.0
checkpoint:
  every: 3
  keep: 2
EOF
cat > "$T/dist.yaml" << EOF
out_dir: $T/dist
seed: 2
device: cpu
threads: 1
model:
  teacher: $T/init
  student:
    layer_types: [attn, gdn, jet, swa=32]
data:
  train: [$T/d/shards/*.h5]
train:
  stage: distill
  steps: 30
  seq_len: 128
  global_batch: 4
  micro_batch: 2
  lr: 3.0e-3
loss:
  kl: 1.0
  ce: 0.25
  mse: 0.5
  mse_layers: "1,2"
  temperature: 1.5
checkpoint:
  every: 4
EOF

# ---- the uninterrupted runs
$TRAIN --config "$T/pre.yaml" --no-progress 2> "$T/pre.log" && ok || bad "pretrain run: $(tail -3 "$T/pre.log")"
cp "$T/pre/metrics.jsonl" "$T/pre-full.jsonl"
[ "$(wc -l < "$T/pre-full.jsonl")" -eq 40 ] && ok || bad "pretrain metrics: $(wc -l < "$T/pre-full.jsonl") lines, wanted 40"
python3 - "$T/pre-full.jsonl" << 'EOF' && ok || bad "pretrain loss did not fall"
import json, sys
r = [json.loads(l) for l in open(sys.argv[1])]
assert r[-1]["loss"] < r[0]["loss"] - 1.0, (r[0]["loss"], r[-1]["loss"])
assert all(k in r[0] for k in ("step", "loss", "kl", "ce", "mse", "lr", "grad_norm", "tokens", "tok_s"))
EOF
[ "$(ls "$T/pre/checkpoints" | wc -l)" -eq 2 ] && ok || bad "checkpoint.keep 2: $(ls "$T/pre/checkpoints")"
[ "$(readlink "$T/pre/latest")" = "checkpoints/step-00000040" ] && ok || bad "latest -> $(readlink "$T/pre/latest")"
$B/postnas-generate --model "$T/pre/latest" --prompt "Kepe is" --max-new-tokens 8 > /dev/null 2>&1 && ok ||
  bad "postnas-generate on the pretrained checkpoint"

$TRAIN --config "$T/dist.yaml" --no-progress 2> "$T/dist.log" && ok || bad "distill run: $(tail -3 "$T/dist.log")"
cp "$T/dist/metrics.jsonl" "$T/dist-full.jsonl"
$B/postnas-generate --model "$T/dist/latest" --prompt "Kepe is" --max-new-tokens 8 > /dev/null 2>&1 && ok ||
  bad "postnas-generate on the distilled student"
# frozen tensors bit-identical, optimizer state only for the student's new mixers (layers 1 gdn, 2 jet)
python3 - "$T/init/model.safetensors" "$T/dist/latest" << 'EOF' && ok || bad "frozen tensors / optimizer state"
import json, struct, sys
from st_values import values as read
init, dst = read(sys.argv[1]), sys.argv[2]
student = read(dst + "/model.safetensors")
frozen = [k for k in init if not (k.startswith("model.layers.1.self_attn.") or k.startswith("model.layers.2.self_attn."))]
assert len(frozen) > 20
for k in frozen:
    assert init[k] == student[k], "frozen tensor changed: " + k
opt = json.loads(open(dst + "/optimizer.safetensors", "rb").read()[8:8 + struct.unpack("<Q", open(dst + "/optimizer.safetensors", "rb").read(8))[0]])
opt.pop("__metadata__", None)
names = {k.rsplit(".", 1)[0] for k in opt}
assert names and all(n.startswith("model.layers.1.candidates.gdn.") or n.startswith("model.layers.2.candidates.jet.") for n in names), sorted(names)[:5]
assert any(n.startswith("model.layers.2.") for n in names) and any(n.startswith("model.layers.1.") for n in names)
EOF

# ---- kill -9 at a random step, then --resume: the rest equals the uninterrupted run
kill_and_resume() { # NAME YAML FULL_METRICS STEPS
  local name=$1 yaml=$2 full=$3 steps=$4 out=$T/$1-k
  local at=$((RANDOM % (steps - 6) + 4))
  $TRAIN --config "$yaml" --set out_dir="$out" --no-progress 2> "$T/$name-k.log" &
  local pid=$!
  # kill at a random step after the first checkpoint is complete (before it, there is nothing to resume: a
  # run killed then starts over)
  for _ in $(seq 1 6000); do
    [ -f "$out/metrics.jsonl" ] && [ "$(wc -l < "$out/metrics.jsonl")" -ge $at ] &&
      ls -d "$out/checkpoints"/step-* > /dev/null 2>&1 && break
    sleep 0.01
  done
  kill -9 $pid 2> /dev/null; wait $pid 2> /dev/null
  local got; got=$(wc -l < "$out/metrics.jsonl")
  if [ "$got" -ge "$steps" ]; then bad "$name: the run ended before the kill (at $at)"; return; fi
  $TRAIN --config "$yaml" --set out_dir="$out" --resume --no-progress 2> "$T/$name-r.log" ||
    { bad "$name: resume after kill -9 at line $got: $(tail -2 "$T/$name-r.log")"; return; }
  grep -q "resuming from" "$T/$name-r.log" && ok || bad "$name: resume did not say where from"
  if diff <(strip "$full") <(strip "$out/metrics.jsonl") > "$T/$name.diff"; then ok
  else bad "$name: killed after $got steps, the resumed run differs: $(head -4 "$T/$name.diff")"; fi
}
kill_and_resume pre "$T/pre.yaml" "$T/pre-full.jsonl" 40
kill_and_resume dist "$T/dist.yaml" "$T/dist-full.jsonl" 30

# ---- stage 2 (a separate student, every tensor trains): runs, resumes exactly
$TRAIN --config "$T/dist.yaml" --set out_dir="$T/d2" --set train.trainable=all --set train.steps=6 --set checkpoint.every=3 \
  --no-progress 2> "$T/d2.log" && ok || bad "stage-2 run: $(tail -2 "$T/d2.log")"
[ -f "$T/d2/student-init/config.json" ] && ok || bad "stage 2 wrote no student-init"
cp "$T/d2/metrics.jsonl" "$T/d2-full.jsonl"
rm -rf "$T/d2/checkpoints/step-00000006"
$TRAIN --config "$T/dist.yaml" --set out_dir="$T/d2" --set train.trainable=all --set train.steps=6 --set checkpoint.every=3 \
  --resume --no-progress 2> "$T/d2r.log" && ok || bad "stage-2 resume: $(tail -2 "$T/d2r.log")"
diff <(strip "$T/d2-full.jsonl") <(strip "$T/d2/metrics.jsonl") > /dev/null && ok || bad "stage-2 resumed metrics differ"

# ---- supernet: every layer holds attn (the teacher's) + swa, gdn, jet; each micro-batch a k_full = 1 subnet
# and (sandwich) the all-linear one. The subnets drawn, the checkpoint (the teacher's folder + every path),
# kill -9 + resume equal, and a step whose subnets run no candidate leaves every candidate as it was.
cat > "$T/sn.yaml" << EOF
out_dir: $T/sn
seed: 2
device: cpu
threads: 1
model:
  teacher: $T/init
  supernet:
    candidates: [swa=32, gdn, jet]
supernet:
  sample: k_full
  k_full: 1
data:
  train: [$T/d/shards/*.h5]
train:
  stage: supernet
  steps: 16
  seq_len: 128
  global_batch: 4
  micro_batch: 2
  lr: 3.0e-3
loss:
  kl: 1.0
  mse: 0.5
checkpoint:
  every: 4
EOF
$TRAIN --config "$T/sn.yaml" --no-progress 2> "$T/sn.log" && ok || bad "supernet run: $(tail -3 "$T/sn.log")"
cp "$T/sn/metrics.jsonl" "$T/sn-full.jsonl"
python3 - "$T/sn-full.jsonl" "$T/init/model.safetensors" "$T/sn/latest" << 'EOF' && ok || bad "supernet subnets / checkpoint"
import json, struct, sys
r = [json.loads(l) for l in open(sys.argv[1])]
assert len(r) == 16 and r[-1]["loss"] < r[0]["loss"], (len(r), r[0]["loss"], r[-1]["loss"])
seen = set()
for line in r:
    subs = [s.split(",") for s in line["subnets"]]
    assert len(subs) == 4 and all(len(s) == 4 for s in subs), line["subnets"]
    for i, s in enumerate(subs):
        if i % 2:  # the sandwich rule's all-linear subnet
            assert all(t in ("gdn", "jet") for t in s), s
        else:
            assert s.count("attn") == 1 and all(t in ("attn", "swa=32", "gdn", "jet") for t in s), s
            seen |= {(l, t) for l, t in enumerate(s)}
assert seen == {(l, t) for l in range(4) for t in ("attn", "swa=32", "gdn", "jet")}, sorted(seen)
from st_values import header, values as read
assert read(sys.argv[2]) == read(sys.argv[3] + "/model.safetensors"), "the checkpoint's folder is not the teacher"
names = set(header(sys.argv[3] + "/supernet.safetensors")[2])
prefixes = {n.split(".candidates.")[0] + "." + n.split(".candidates.")[1].split(".")[0] for n in names}
assert prefixes == {"model.layers.%d.%s" % (l, t) for l in range(4) for t in ("gdn", "jet")}, sorted(prefixes)
opt = {k.rsplit(".", 1)[0] for k in header(sys.argv[3] + "/optimizer.safetensors")[2]}
assert opt == names, sorted(opt ^ names)[:4]
EOF
kill_and_resume sn "$T/sn.yaml" "$T/sn-full.jsonl" 16
# every subnet the teacher (k_full = 4 attn layers, no sandwich): no candidate has a gradient, none moves
$TRAIN --config "$T/sn.yaml" --set out_dir="$T/sn0" --set supernet.k_full=4 --set supernet.sandwich=false \
  --set train.steps=4 --set checkpoint.every=2 --no-progress 2> "$T/sn0.log" || bad "supernet k_full 4: $(tail -2 "$T/sn0.log")"
cmp -s "$T/sn0/checkpoints/step-00000002/supernet.safetensors" "$T/sn0/checkpoints/step-00000004/supernet.safetensors" &&
  ok || bad "candidates no subnet ran changed (AdamW must skip them)"
# supernet.mode local = training each layer alone against the teacher's recorded input and output: layer 1's
# gdn gradient (AdamW's exp_avg after one step: (1 - beta1) g) equals stage-1 distillation of
# [attn, gdn, attn, attn] with the MSE on layer 1's output only (its input is the teacher's there too)
$TRAIN --config "$T/sn.yaml" --set out_dir="$T/snl" --set supernet.mode=local --set "model.supernet.candidates=[gdn]" \
  --set loss.kl=0 --set train.steps=1 --set train.clip=0 --no-progress 2> "$T/snl.log" ||
  bad "local supernet: $(tail -2 "$T/snl.log")"
# (sn.yaml's supernet.sample k_full does not apply in local mode: the run says so)
grep -q "supernet.sample, supernet.k_full and supernet.sandwich (set here) do not apply" "$T/snl.log" && ok ||
  bad "local mode with sample k_full: no warning ($(grep -c . "$T/snl.log") lines of log)"
$TRAIN --config "$T/dist.yaml" --set out_dir="$T/dl1" --set "model.student.layer_types=[attn,gdn,attn,attn]" \
  --set loss.kl=0 --set loss.ce=0 --set loss.mse=0.5 --set loss.mse_layers=1 --set train.steps=1 --set train.clip=0 \
  --no-progress 2> "$T/dl1.log" || bad "distill, MSE on layer 1: $(tail -2 "$T/dl1.log")"
python3 - "$T/snl/latest/optimizer.safetensors" "$T/dl1/latest/optimizer.safetensors" << 'EOF' && ok || bad "local-mode gradient differs"
import sys
from st_values import values
a, b = values(sys.argv[1]), values(sys.argv[2])
keys = [k for k in b if k.startswith("model.layers.1.candidates.gdn.") and k.endswith(".exp_avg")]
assert len(keys) >= 8, keys
worst = 0.0
for k in keys:
    num = sum((x - y) ** 2 for x, y in zip(a[k], b[k])) ** 0.5
    den = sum(y * y for y in b[k]) ** 0.5
    worst = max(worst, num / den if den else num)
assert worst < 1e-5, worst
print("local mode: layer 1 gdn gradient = layer-1 MSE distillation's (worst relative difference %.1e over %d tensors)" % (worst, len(keys)))
EOF
expect_error "supernet.mode local trains every layer on the teacher's layer outputs" \
  $TRAIN --config "$T/sn.yaml" --set supernet.mode=local --set out_dir="$T/e16"
expect_error "attn is every layer's own" $TRAIN --config "$T/sn.yaml" --set "model.supernet.candidates=[attn, gdn]" \
  --set out_dir="$T/e10"
expect_error "supernet.k_full 5 is more than the teacher's 4 layers" $TRAIN --config "$T/sn.yaml" --set supernet.k_full=5 \
  --set out_dir="$T/e11"
expect_error "needs model.supernet.candidates" $TRAIN --config "$T/sn.yaml" --set "model.supernet.candidates=[]" \
  --set out_dir="$T/e12"
expect_error "supernet.sandwich needs a linear candidate" $TRAIN --config "$T/sn.yaml" \
  --set "model.supernet.candidates=[swa=32]" --set out_dir="$T/e13"
expect_error "is for train.stage supernet" $TRAIN --config "$T/dist.yaml" --set "model.supernet.candidates=[gdn]" \
  --set out_dir="$T/e14"
expect_error "names gdn twice" $TRAIN --config "$T/sn.yaml" --set "model.supernet.candidates=[gdn, swa=8, gdn]" \
  --set out_dir="$T/e15"

# stage 2 from stage 1's result (model.student.init): with lr 0 the student's tensors are stage 1's exactly
$TRAIN --config "$T/dist.yaml" --set out_dir="$T/d3" --set train.trainable=all --set train.steps=1 --set train.lr=0 \
  --set model.student.init="$T/dist/latest" --no-progress 2> "$T/d3.log" && ok || bad "stage 2 from stage 1: $(tail -2 "$T/d3.log")"
python3 - "$T/dist/latest/model.safetensors" "$T/d3/latest/model.safetensors" << 'EOF' && ok || bad "stage 2 did not start from stage 1's tensors"
import sys
from st_values import values
a, b = values(sys.argv[1]), values(sys.argv[2])
mixers = [k for k in a if ".self_attn." in k and (k.startswith("model.layers.1.") or k.startswith("model.layers.2."))]
assert len(mixers) > 10 and all(a[k] == b[k] for k in mixers), [k for k in mixers if a[k] != b[k]][:3]
EOF
expect_error "layer 1 is attn, model.student.layer_types says gdn" $TRAIN --config "$T/dist.yaml" --set out_dir="$T/e17" \
  --set train.trainable=all --set train.steps=1 --set model.student.init="$T/init"
expect_error "model.student.init is for train.stage distill with train.trainable all" $TRAIN --config "$T/dist.yaml" \
  --set out_dir="$T/e18" --set model.student.init="$T/init"
# ---- SIGTERM: a checkpoint, then a clean stop; --resume finishes the run identically
$TRAIN --config "$T/pre.yaml" --set out_dir="$T/sig" --set checkpoint.every=0 --no-progress 2> "$T/sig.log" &
pid=$!
for _ in $(seq 1 3000); do
  [ -f "$T/sig/metrics.jsonl" ] && [ "$(wc -l < "$T/sig/metrics.jsonl")" -ge 5 ] && break
  sleep 0.01
done
kill -TERM $pid; wait $pid; rc=$?
n=$(ls "$T/sig/checkpoints" 2> /dev/null | grep -c step-)
if [ $rc -eq 130 ] && [ "$n" -eq 1 ] && grep -q "stopped by signal 15" "$T/sig.log"; then ok
else bad "SIGTERM: rc $rc, $n checkpoints, log: $(tail -2 "$T/sig.log")"; fi
$TRAIN --config "$T/pre.yaml" --set out_dir="$T/sig" --set checkpoint.every=0 --resume --no-progress 2> /dev/null && ok ||
  bad "resume after SIGTERM"
diff <(strip "$T/pre-full.jsonl") <(strip "$T/sig/metrics.jsonl") > /dev/null && ok || bad "metrics after SIGTERM + resume differ"

# ---- data.mask_documents false: one sequence per window (attention crosses documents, every target counts)
$TRAIN --config "$T/pre.yaml" --set out_dir="$T/nomask" --set data.mask_documents=false --set train.steps=5 --no-progress \
  2> /dev/null && ok || bad "data.mask_documents=false run"
python3 - "$T/pre-full.jsonl" "$T/nomask/metrics.jsonl" << 'EOF' && ok || bad "data.mask_documents=false changes nothing"
import json, sys
a, b = ([json.loads(l) for l in open(p)] for p in sys.argv[1:3])
assert a[0]["loss"] != b[0]["loss"], (a[0]["loss"], b[0]["loss"])
EOF

# ---- a full disk: the failing checkpoint is removed, the previous one stays complete, exit 1 with the reason
mkdir -p "$T/full"
if mount -t tmpfs -o size=4m tmpfs "$T/full" 2> /dev/null; then
  $TRAIN --config "$T/pre.yaml" --set out_dir="$T/full/run" --set train.steps=12 --no-progress 2> "$T/full.log"
  rc=$?
  left=$(ls -A "$T/full/run/checkpoints" | tr '\n' ' ')
  if [ $rc -eq 1 ] && tail -1 "$T/full.log" | grep -q "checkpoint at step 6 (the previous one is kept)" &&
     [ "$left" = "step-00000003 " ] &&
     $B/postnas-generate --model "$T/full/run/checkpoints/step-00000003" --ids 1,2 --max-new-tokens 2 > /dev/null 2>&1; then ok
  else bad "full disk: rc $rc, left '$left', $(tail -1 "$T/full.log")"; fi
  umount "$T/full"
else
  echo "full-disk check skipped: cannot mount a small tmpfs here (needs root)"
fi

# ---- non-finite steps are skipped; K in a row stop the run
PN_TEST_NAN_FROM_STEP=3 $TRAIN --config "$T/pre.yaml" --set out_dir="$T/nan" --set train.max_skips=2 --no-progress \
  2> "$T/nan.log"
rc=$?
if [ $rc -eq 1 ] && tail -1 "$T/nan.log" | grep -q "2 consecutive steps had a non-finite loss" &&
   grep -q '"skipped": true' "$T/nan/metrics.jsonl"; then ok
else bad "non-finite stop: rc $rc, $(tail -1 "$T/nan.log")"; fi

# ---- the torch goldens
if [ -n "$G" ] && [ -f "$G/golden.json" ]; then
  python3 - "$G" "$B" "$T" "$TRAIN" << 'EOF' && ok || bad "torch goldens (see above)"
import json, os, subprocess, sys
G, B, T, TRAIN = sys.argv[1:5]
g = json.load(open(os.path.join(G, "golden.json")))
d = os.path.join(T, "golden-data")
os.makedirs(d, exist_ok=True)
run = lambda *a: subprocess.run(list(a), check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
run(B + "/postnas-mkckpt", "--preset", "tiny", "--out", d + "/tok", "--seed", "1")
run(B + "/postnas-data", "synth", "--task", "corpus", "--n", str(g["data"]["synth_n"]), "--seed",
    str(g["data"]["synth_seed"]), "--out", d + "/c.jsonl")
run(B + "/postnas-data", "tokenize", "--tokenizer", d + "/tok", "--jsonl", d + "/c.jsonl", "--field", "text",
    "--out", d + "/shards", "--threads", "1")
worst_all = 0.0
for case, want in g["cases"].items():
    text = open(os.path.join(G, case + ".yaml")).read()
    out = os.path.join(T, "golden-" + case)
    text = text.replace("@MODEL@", os.path.join(G, "model")).replace("@DATA@", d + "/shards/*.h5").replace("@OUT@", out)
    cfg = os.path.join(T, case + ".yaml")
    open(cfg, "w").write(text)
    r = subprocess.run([TRAIN, "--config", cfg, "--set", "device=cpu", "--no-progress"], capture_output=True, text=True)
    if r.returncode:
        print("FAIL: golden case", case, r.stderr[-500:])
        sys.exit(1)
    got = [json.loads(l) for l in open(os.path.join(out, "metrics.jsonl"))]
    worst = {}
    for key in ("loss", "kl", "ce", "mse"):
        for s, w in enumerate(want[key]):
            e = abs(got[s][key] - w) / max(abs(w), 1e-6) if w or got[s][key] else 0.0
            worst[key] = max(worst.get(key, 0.0), e)
    print("golden %-15s" % case, " ".join("%s %.1e" % kv for kv in worst.items()))
    worst_all = max(worst_all, max(worst.values()))
sys.exit(0 if worst_all <= 1e-4 else 1)
EOF
else
  echo "golden check skipped: no $G/golden.json"
fi

# ---- bad configs and inputs: one line, exit 1
printf 'out_dir: %s/x\ntrain:\n  stage: pretrain\n  step: 3\n' "$T" > "$T/bad1.yaml"
expect_error "bad1.yaml:4:3: unknown key 'train.step' (did you mean 'train.steps'?)" $TRAIN --config "$T/bad1.yaml"
expect_error "unknown key" $TRAIN --config "$T/pre.yaml" --set train.lrr=1
expect_error "train.lr" $TRAIN --config "$T/pre.yaml" --set train.lr=fast
expect_error "needs model.teacher" $TRAIN --config "$T/pre.yaml" --set train.stage=distill --set model.init=
expect_error "train.stage pretrain has no teacher" $TRAIN --config "$T/pre.yaml" --set model.teacher="$T/init"
expect_error "not a multiple of train.micro_batch" $TRAIN --config "$T/pre.yaml" --set train.micro_batch=3
expect_error "matches no file" $TRAIN --config "$T/pre.yaml" --set "data.train=[$T/nothing/*.h5]" --set out_dir="$T/e1"
expect_error "has 3 entries, the teacher" $TRAIN --config "$T/dist.yaml" --set "model.student.layer_types=[attn,gdn,jet]" \
  --set out_dir="$T/e2"
expect_error "layer_types" $TRAIN --config "$T/dist.yaml" --set "model.student.layer_types=[attn,gdn,mamba,attn]" \
  --set out_dir="$T/e3"
expect_error "loss.mse_layers" $TRAIN --config "$T/dist.yaml" --set loss.mse_layers=7 --set out_dir="$T/e4"
expect_error "no complete checkpoint" $TRAIN --config "$T/pre.yaml" --set out_dir="$T/e5" --resume
expect_error "was written with train.lr = 0.003, this config has train.lr = 0.001" \
  $TRAIN --config "$T/pre.yaml" --set train.lr=1e-3 --resume
expect_error "already holds a run" $TRAIN --config "$T/pre.yaml"
$TRAIN --config "$T/pre.yaml" --set train.steps=5 --overwrite --no-progress 2> /dev/null &&
  [ "$(wc -l < "$T/pre/metrics.jsonl")" -eq 5 ] && [ "$(ls "$T/pre/checkpoints" | tr "\n" " ")" = "step-00000003 step-00000005 " ] && ok ||
  bad "--overwrite did not start over: $(ls "$T/pre/checkpoints")"
# a file where out_dir's folder should be: refused before anything is loaded
touch "$T/afile"
expect_error "cannot create the folder" $TRAIN --config "$T/pre.yaml" --set out_dir="$T/afile/run"
# data from another vocabulary than the model's
$B/postnas-mkckpt --preset tiny --vocab 100 --tokenizer none --seed 1 --out "$T/v100" > /dev/null 2>&1
expect_error "tokens from a vocabulary of 257, the model $T/v100 embeds 100" \
  $TRAIN --config "$T/pre.yaml" --set model.init="$T/v100" --set out_dir="$T/e6"
# a model folder whose tokenizer does not load: named, not skipped
cp -r "$T/init" "$T/badtok" && echo '{"broken' > "$T/badtok/tokenizer.json"
expect_error "the tokenizer of $T/badtok: $T/badtok/tokenizer.json" $TRAIN --config "$T/pre.yaml" \
  --set model.init="$T/badtok" --set out_dir="$T/e9"
# the teacher replaced by a model of another shape under a stage-2 run: the pair is refused naming a tensor
cp -r "$T/init" "$T/t2"
$TRAIN --config "$T/dist.yaml" --set out_dir="$T/e7" --set model.teacher="$T/t2" --set train.trainable=all \
  --set train.steps=2 --no-progress 2> /dev/null || bad "stage-2 short run"
rm -rf "$T/t2" && $B/postnas-mkckpt --preset tiny --intermediate 96 --seed 1 --out "$T/t2" > /dev/null 2>&1
expect_error "is [96, 64] in the teacher" $TRAIN --config "$T/dist.yaml" --set out_dir="$T/e7" --set model.teacher="$T/t2" \
  --set train.trainable=all --set train.steps=2 --resume
# more memory than the machine has: named, with the remedy
expect_error "a smaller train.micro_batch" $TRAIN --config "$T/pre.yaml" --set train.seq_len=1048576 \
  --set train.micro_batch=256 --set train.global_batch=256 --set out_dir="$T/e8"
# every shipped config is valid for its tool (postnas-search's have a top-level search: section)
for f in "$(dirname "$0")"/../configs/*.yaml "$(dirname "$0")"/../configs/*/*.yaml; do
  if grep -q '^search:' "$f"; then tool=$B/postnas-search; else tool=$TRAIN; fi
  "$tool" --config "$f" --check 2> "$T/cfgcheck.err" && ok || bad "$f: $(cat "$T/cfgcheck.err")"
done
# the schema reference is generated from the table the parser uses
$TRAIN --print-schema markdown > "$T/schema.md" && grep -q '`train.micro_batch`' "$T/schema.md" && ok || bad "--print-schema"

echo "trainer: $pass passed, $fail failed"
[ $fail -eq 0 ]
