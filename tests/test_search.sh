#!/usr/bin/env bash
# postnas-search end to end on the CPU: a supernet trained briefly (postnas-train train.stage supernet) on a
# tiny teacher, then the placement search on synthetic tasks:
# - its files: placement.json (layer types within the budget, scores of the searched, uniform and all-linear
#   subnets, the beam's trace), placement.yaml (postnas-train reads it as the student's layer_types),
#   heatmap.csv (one row per layer), heatmap.svg, report.md;
# - the heat map is the single-full-layer subnets' scores, which the beam's first step reads;
# - the searched subnet exported (--export) and evaluated by postnas-eval as a standalone model scores
#   exactly what the search recorded for it;
# - MMLU scores minus the mean loss of the correct answer (with ../shared/data);
# - bad configs and inputs end with one error line, exit 1.
set -u
B=${1:?usage: test_search.sh BUILD_DIR [SHARED_DATA]}
SHARED=${2:-}
T=$(mktemp -d /tmp/pn_test_search.XXXXXX)
trap 'rm -rf "$T"' EXIT
. "$(dirname "$0")/test_lib.sh"
SEARCH=$B/postnas-search

tiny_model_and_shards "$B" "$T/teacher" "$T/d" 3 200
cat > "$T/sn.yaml" << EOF
out_dir: $T/sn
seed: 1
device: cpu
model:
  teacher: $T/teacher
  supernet:
    candidates: [swa=16, gdn]
data:
  train: [$T/d/shards/*.h5]
train:
  stage: supernet
  steps: 4
  seq_len: 128
  global_batch: 2
  micro_batch: 2
  lr: 3.0e-3
loss:
  kl: 1.0
EOF
$B/postnas-train --config "$T/sn.yaml" --no-progress 2> "$T/sn.log" && ok || bad "supernet: $(tail -2 "$T/sn.log")"
cat > "$T/s.yaml" << EOF
out_dir: $T/so
supernet: $T/sn/latest
device: cpu
search:
  n_attn: 1
  n_swa: 1
  beam: 2
  limit: 12
  max_gen_toks: 8
EOF
$SEARCH --config "$T/s.yaml" --task synth_facts_mc --task synth_mqar --export "$T/hybrid" --no-progress > "$T/stdout" \
  2> "$T/stderr" && ok || bad "postnas-search: $(tail -2 "$T/stderr")"
grep -q "^placement: " "$T/stdout" && ok || bad "no placement line"
for f in placement.json placement.yaml heatmap.csv heatmap.svg report.md; do
  [ -s "$T/so/$f" ] && ok || bad "no $f"
done
python3 - "$T/so" << 'EOF' && ok || bad "search outputs"
import csv, json, sys
d = sys.argv[1]
p = json.load(open(d + "/placement.json"))
t = p["layer_types"]
assert len(t) == 4 and t.count("attn") == 1 and t.count("swa") == 1 and t.count("gdn") == 2, t
assert p["layer_specs"][t.index("swa")] == "swa=16", p["layer_specs"]
for k in ("searched", "uniform", "all_linear"):
    assert set(p["scores"][k]) == {"synth_facts_mc", "synth_mqar"}, p["scores"][k]
u = p["uniform_layer_types"]
assert u == ["gdn", "swa", "attn", "gdn"], u  # 1 attn at layer 2 = (0 + 1/2) 4 / 1, swa in the middle of 0, 1, 3
tr = p["trace"]["attn"]
assert len(tr) == 1 and tr[0]["scored"] == 4 and len(tr[0]["kept"]) == 2, tr
assert len(p["trace"]["swa"]) == 1 and p["trace"]["swa"][0]["scored"] == 3, p["trace"]["swa"]
rows = list(csv.DictReader(open(d + "/heatmap.csv")))
assert [r["layer"] for r in rows] == ["0", "1", "2", "3"], rows
# the beam's first step scored the heat map's subnets: its best kept layer has the best mean there
mean = {int(r["layer"]): (float(r["synth_facts_mc"]) + float(r["synth_mqar"])) / 2 for r in rows}
assert abs(tr[0]["kept"][0]["score"] - max(mean.values())) < 1e-6, (tr[0]["kept"], mean)
assert mean[tr[0]["kept"][0]["layers"][0]] == max(mean.values())
assert p["layer_types"][tr[0]["kept"][0]["layers"][0]] == "attn"
svg = open(d + "/heatmap.svg").read()
assert svg.count("<rect") == 1 + 2 * 4 and svg.count("<title>") == 8 and "synth_mqar" in svg
assert "| searched |" in open(d + "/report.md").read()
y = open(d + "/placement.yaml").read()
assert "layer_types: [" + ", ".join(p["layer_specs"]) + "]" in y, y
EOF
# the exported subnet, evaluated on its own, scores what the search recorded
$B/postnas-eval --model "$T/hybrid" --tasks synth_facts_mc,synth_mqar --limit 12 --max-gen-toks 8 --device cpu \
  --out "$T/ev.json" --no-progress > /dev/null 2>&1 || bad "postnas-eval on the exported subnet"
python3 - "$T/so/placement.json" "$T/ev.json" "$T/hybrid/config.json" << 'EOF' && ok || bad "exported subnet scores differ"
import json, sys
p, r, c = (json.load(open(f)) for f in sys.argv[1:4])
s = p["scores"]["searched"]
assert abs(s["synth_facts_mc"] - r["results"]["synth_facts_mc"]["acc,none"]) < 1e-12, (s, r["results"])
assert abs(s["synth_mqar"] - r["results"]["synth_mqar"]["contains,none"]) < 1e-12, (s, r["results"])
print("exported subnet: searched scores %s reproduced by postnas-eval" % s)
EOF
# the placement as the next stage's student: postnas-train reads placement.yaml's layer_types
$B/postnas-train --config "$T/sn.yaml" --set train.stage=distill --set "model.supernet.candidates=[]" \
  --set "model.student.layer_types=[$(python3 -c "import json;print(','.join(json.load(open('$T/so/placement.json'))['layer_specs']))")]" \
  --set out_dir="$T/st" --set train.steps=1 --no-progress 2> "$T/st.log" && ok || bad "stage 1 from the placement: $(tail -2 "$T/st.log")"

# search.weights: the objective is the weighted mean (the beam's first step = the heat map's best weighted row)
$SEARCH --config "$T/s.yaml" --task synth_facts_mc --task synth_mqar --set search.n_swa=0 --set out_dir="$T/w" \
  --set "search.weights=[synth_mqar=3]" --no-progress > /dev/null 2>&1 || bad "weighted search"
python3 - "$T/w" << 'EOF' && ok || bad "weighted objective"
import csv, json, sys
p = json.load(open(sys.argv[1] + "/placement.json"))
assert p["objective"]["weights"] == {"synth_facts_mc": 1.0, "synth_mqar": 3.0}, p["objective"]
rows = list(csv.DictReader(open(sys.argv[1] + "/heatmap.csv")))
best = max((float(r["synth_facts_mc"]) + 3 * float(r["synth_mqar"])) / 4 for r in rows)
assert abs(p["trace"]["attn"][0]["kept"][0]["score"] - best) < 1e-6, (p["trace"]["attn"][0], best)
EOF
expect_error "search.weights: nope is not one of the search's tasks" $SEARCH --config "$T/s.yaml" --task synth_mqar \
  --set "search.weights=[nope=3]"
# MMLU's score is minus the mean loss of the correct answer (search.mmlu_score: loss), as postnas-eval's samples
# of the exported subnet give it (needs ../shared/data's MMLU files)
if [ -n "$SHARED" ] && [ -d "$SHARED/tasks/mmlu" ]; then
  $SEARCH --config "$T/s.yaml" --task mmlu_abstract_algebra --set data="$SHARED/tasks" --set search.limit=4 \
    --set search.n_swa=0 --set out_dir="$T/mm" --export "$T/mm-hybrid" --no-progress > /dev/null 2>&1 || bad "mmlu search"
  $B/postnas-eval --model "$T/mm-hybrid" --tasks mmlu_abstract_algebra --limit 4 --data "$SHARED/tasks" \
    --log-samples "$T/mm.jsonl" --no-progress > /dev/null 2>&1 || bad "postnas-eval mmlu"
  python3 - "$T/mm/placement.json" "$T/mm.jsonl" << 'EOF' && ok || bad "MMLU's score is not minus the gold loss"
import json, sys
p = json.load(open(sys.argv[1]))["scores"]["searched"]["mmlu_abstract_algebra"]
r = [json.loads(l) for l in open(sys.argv[2])]
want = sum(x["resps"][x["target"]][0] for x in r) / len(r)  # minus the loss: the mean log-likelihood
assert abs(p - want) < 1e-9, (p, want)
EOF
else
  echo "mmlu score check skipped: no $SHARED/tasks/mmlu"
fi

# bad configs and inputs
expect_error "search.n_attn 3 + search.n_swa 2 is more than the supernet's 4 layers" \
  $SEARCH --config "$T/s.yaml" --set search.n_attn=3 --set search.n_swa=2
expect_error "unknown task \"nope\"" $SEARCH --config "$T/s.yaml" --task nope
expect_error "not a supernet checkpoint" $SEARCH --config "$T/s.yaml" --set supernet="$T/teacher"
cp -rL "$T/sn/latest" "$T/sn-other" && sed -i 's/candidates: \["swa=16", "gdn"\]/candidates: ["swa=16", "jet"]/' "$T/sn-other/config.yaml"
grep -q 'candidates: \["swa=16", "jet"\]' "$T/sn-other/config.yaml" || bad "could not edit the copy's candidates: $(grep -n candidates "$T/sn-other/config.yaml")"
expect_error "supernet.safetensors: tensor 'model.layers.0.candidates.jet." $SEARCH --config "$T/s.yaml" --set supernet="$T/sn-other"
expect_error "search.linear swa is not a linear candidate" $SEARCH --config "$T/s.yaml" --set search.linear=swa
expect_error "unknown key 'search.beams'" $SEARCH --config "$T/s.yaml" --set search.beams=3
expect_error "--config X.yaml is required" $SEARCH --task retrieval

echo "search: $pass passed, $fail failed"
[ $fail -eq 0 ]
