#!/usr/bin/env bash
# postnas-sweep on the CPU: a config's sweep: section expands into trials (grid x zip), each its own run in
# out_dir/trial-NNN; --dry-run lists them and runs nothing; a second run skips finished trials; a trial
# interrupted after a checkpoint resumes; a failing trial is retried, then reported (sweep.md, exit 1);
# every trial's config is checked before any runs; the results table has every trial's values and metrics.
set -u
B=${1:?usage: test_sweep.sh BUILD_DIR}
T=$(mktemp -d /tmp/pn_test_sweep.XXXXXX)
trap 'rm -rf "$T"' EXIT
. "$(dirname "$0")/test_lib.sh"
SWEEP=$B/postnas-sweep

tiny_model_and_shards "$B" "$T/init" "$T/d" 1 100
cat > "$T/sw.yaml" << EOF
out_dir: $T/sw
seed: 1
device: cpu
threads: 1
model:
  init: $T/init
data:
  train: [$T/d/shards/*.h5]
train:
  stage: pretrain
  steps: 2
  seq_len: 64
  global_batch: 2
  micro_batch: 2
  lr: 1.0e-3
loss:
  ce: 1.0
checkpoint:
  every: 1
sweep:
  command: train
  grid:
    train.lr: [1.0e-3, 3.0e-3]
  zip:
    train.steps: [2, 3]
    seed: [1, 2]
  metrics: [loss, ce]
EOF
$SWEEP --config "$T/sw.yaml" --dry-run > "$T/dry" 2>&1 && ok || bad "--dry-run: $(tail -2 "$T/dry")"
[ "$(grep -c '^  trial-' "$T/dry")" -eq 4 ] && grep -q "trial-003: train.lr=3.0e-3 train.steps=3 seed=2" "$T/dry" && ok ||
  bad "--dry-run lists: $(cat "$T/dry")"
[ ! -e "$T/sw" ] && ok || bad "--dry-run created the out_dir"

$SWEEP --config "$T/sw.yaml" > "$T/run1" 2>&1 && ok || bad "sweep: $(tail -3 "$T/run1")"
python3 - "$T/sw" << 'EOF' && ok || bad "sweep table / trials"
import csv, json, sys
d = sys.argv[1]
rows = list(csv.DictReader(open(d + "/sweep.csv")))
assert [r["trial"] for r in rows] == ["0", "1", "2", "3"], rows
assert [(r["train.lr"], r["train.steps"], r["seed"]) for r in rows] == [
    ("1.0e-3", "2", "1"), ("1.0e-3", "3", "2"), ("3.0e-3", "2", "1"), ("3.0e-3", "3", "2")], rows
for r in rows:
    assert r["status"] == "done", r
    lines = [json.loads(l) for l in open("%s/trial-%03d/metrics.jsonl" % (d, int(r["trial"])))]
    assert len(lines) == int(r["train.steps"]), (r, len(lines))
    assert abs(float(r["loss"]) - lines[-1]["loss"]) <= 1e-5 * abs(lines[-1]["loss"]), (r, lines[-1])
    assert abs(float(r["ce"]) - lines[-1]["ce"]) <= 1e-5 * abs(lines[-1]["ce"]), (r, lines[-1])
assert "| 3 | 3.0e-3 | 3 | 2 | done |" in open(d + "/sweep.md").read()
EOF
# again: every trial finished before
$SWEEP --config "$T/sw.yaml" > "$T/run2" 2>&1 && [ "$(grep -c 'finished before, skipped' "$T/run2")" -eq 4 ] && ok ||
  bad "second run did not skip: $(cat "$T/run2")"
# a trial interrupted after its first checkpoint: resumed, and it ends as an uninterrupted one
cp "$T/sw/trial-001/metrics.jsonl" "$T/t1-full.jsonl"
rm "$T/sw/trial-001/.sweep-done"
rm -rf "$T/sw/trial-001/checkpoints/step-00000003" && ln -sfn checkpoints/step-00000002 "$T/sw/trial-001/latest"
$SWEEP --config "$T/sw.yaml" > "$T/run3" 2>&1 && grep -q "trial-001: running" "$T/run3" && ok || bad "resume: $(tail -3 "$T/run3")"
grep -q "resuming from" "$T/sw/trial-001.log" && ok || bad "trial 1 did not resume"
diff <(sed -E 's/"tok_s": [0-9.e+]+, //' "$T/t1-full.jsonl") <(sed -E 's/"tok_s": [0-9.e+]+, //' "$T/sw/trial-001/metrics.jsonl") \
  > /dev/null && ok || bad "the resumed trial's metrics differ"

# a trial that fails at run time (a missing model passes the config check): retried once, reported, exit 1
sed -e "s#^out_dir: .*#out_dir: $T/sf#" -e "s#^    seed: \[1, 2\]#    model.init: [$T/init, $T/nothing]#" "$T/sw.yaml" > "$T/sf.yaml"
$SWEEP --config "$T/sf.yaml" > "$T/runf" 2> "$T/errf"
[ $? -eq 1 ] && ok || bad "a failed trial must make the sweep exit 1"
grep -q "2 of 4 trials failed" "$T/errf" && ok || bad "failure summary: $(cat "$T/errf")"
[ "$(grep -c 'running again' "$T/runf")" -eq 2 ] && ok || bad "failed trials not retried: $(cat "$T/runf")"
grep -q "trial 1 failed: .*nothing" "$T/sf/sweep.md" && ok || bad "sweep.md does not report the failure: $(cat "$T/sf/sweep.md")"

# bad sweeps: one line, exit 1, nothing run
printf 'out_dir: %s/b1\nsweep:\n  grid:\n    train.lrr: [1, 2]\n' "$T" > "$T/b0.yaml"
cat "$T/sw.yaml" | sed -e "s#^out_dir: .*#out_dir: $T/b1#" -e 's#train.lr: \[#train.lrr: [#' > "$T/b1.yaml"
expect_error "trial 0's config: " $SWEEP --config "$T/b1.yaml"
[ ! -e "$T/b1" ] && ok || bad "a bad trial config ran something"
sed -e 's#    seed: \[1, 2\]#    seed: [1, 2, 3]#' "$T/sw.yaml" > "$T/b2.yaml"
expect_error "sweep.zip: seed has 3 values, train.steps has 2" $SWEEP --config "$T/b2.yaml"
sed -e '/^sweep:/,$d' "$T/sw.yaml" > "$T/b3.yaml"
expect_error "no sweep section" $SWEEP --config "$T/b3.yaml"
sed -e 's#^  command: train#  command: eval#' "$T/sw.yaml" > "$T/b4.yaml"
expect_error "b4.yaml:21:3: sweep.command: train or search" $SWEEP --config "$T/b4.yaml"
sed -e 's#^  metrics: \[loss, ce\]#  metric: [loss]#' "$T/sw.yaml" > "$T/b5.yaml"
expect_error "unknown key 'sweep.metric'" $SWEEP --config "$T/b5.yaml"
# the tools themselves read a config with a sweep section (and ignore it)
$B/postnas-train --config "$T/sw.yaml" --check && ok || bad "postnas-train refuses a config with a sweep section"

echo "sweep: $pass passed, $fail failed"
[ $fail -eq 0 ]
