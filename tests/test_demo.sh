#!/usr/bin/env bash
# The embedded demo's pipeline (scripts/demo.sh) on a short schedule (PN_DEMO_QUICK: 12 steps per training
# run, 10 documents per task), twice, each in a directory of its own with build/ linking to the tested build:
# every stage runs, the report names the four models, the placement is a valid one, and the two runs agree
# number for number (heat map, placement, every score: the demo is deterministic for its seeds on a backend).
# A third invocation in the first directory reuses every stage. (The demo's result — the heat map picking
# the retrieval layer, the searched hybrid beating the uniform one — is test_recall's, on a shortened schedule.)
set -u
B=${1:?usage: test_demo.sh BUILD_DIR}
B=$(cd "$B" && pwd)
SRC=$(cd "$(dirname "$0")/.." && pwd)
T=$(mktemp -d /tmp/pn_test_demo.XXXXXX)
trap 'rm -rf "$T"' EXIT
. "$(dirname "$0")/test_lib.sh"

for run in a b; do
  mkdir -p "$T/$run"
  cp -r "$SRC/scripts" "$SRC/configs" "$SRC/src" "$SRC/data" "$SRC/kernels" "$T/$run/" # (the sources: the demo's text)
  ln -s "$B" "$T/$run/build"
  PN_DEMO_SKIP_BUILD=1 PN_DEMO_QUICK=1 PN_LOG_DIR="$T/$run/logs" bash "$T/$run/scripts/demo.sh" > "$T/$run.log" 2>&1 &&
    ok || bad "demo run $run: $(tail -5 "$T/$run.log")"
done
R=$T/a/runs
[ -f "$R/demo/report.md" ] && grep -q "^| teacher |" "$R/demo/report.md" && grep -q "^| searched |" "$R/demo/report.md" &&
  grep -q "^| uniform |" "$R/demo/report.md" && grep -q "^| all-linear |" "$R/demo/report.md" &&
  grep -q "heatmap.svg" "$R/demo/report.md" && ok || bad "report.md: $(head -c 400 "$R/demo/report.md" 2>&1)"
python3 -c "
import json, sys
p = json.load(open(sys.argv[1]))
t = p['layer_specs']
assert len(t) == 4 and t.count('attn') == 1 and t.count('swa=8') == 1, t
assert p['all_linear_layer_specs'] == ['gdn'] * 4, p['all_linear_layer_specs']
" "$R/tiny-search/placement.json" && ok || bad "placement.json"
# the same numbers in both runs: heat map, placement, scores of every model, postnas-info
for f in tiny-search/heatmap.csv tiny-search/placement.json demo/eval-teacher.json demo/eval-searched.json \
  demo/eval-uniform.json demo/eval-all-linear.json demo/info-searched.json; do
  python3 -c "
import json, sys
def load(p):
    if not p.endswith('.json'):
        return open(p).read()
    d = json.load(open(p))
    if 'results' in d:  # postnas-eval: the scores (the rest names paths and times)
        return d['results']
    return {k: v for k, v in d.items() if k != 'seconds' and not (isinstance(v, str) and '/' in v)}
a, b = load(sys.argv[1]), load(sys.argv[2])
assert a == b, (sys.argv[1], a, b)
" "$R/$f" "$T/b/runs/$f" && ok || bad "runs differ in $f"
done
# a second invocation reuses every stage
PN_DEMO_SKIP_BUILD=1 PN_DEMO_QUICK=1 PN_LOG_DIR="$T/a/logs" bash "$T/a/scripts/demo.sh" > "$T/again.log" 2>&1 &&
  [ "$(grep -c "finished in an earlier run, reused" "$T/again.log")" -eq 11 ] && ! grep -q "\bran$" "$T/a/runs/demo/stage-times.tsv" &&
  ok || bad "second run: $(grep -c reused "$T/again.log") reused; $(tail -3 "$T/again.log")"
echo "demo: $pass passed, $fail failed"
[ $fail -eq 0 ]
