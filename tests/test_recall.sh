#!/usr/bin/env bash
# The embedded demo's result, on its shortened schedule (scripts/demo.sh with PN_DEMO_SHORT=1: the teacher's
# 1,200 steps, 100 steps of the supernet and of each hybrid; five and a half minutes on 2 cores): the bars of the
# demo's issue, on 100 held-out associative-recall exercises (postnas-eval synth_recall).
# - the teacher answers at least 90% of them;
# - the all-linear student falls well below it (at most 30%);
# - the heat map singles out one layer (recall with only that layer full, the others gdn, at least 0.3 and
#   at least 0.2 above every other layer's) and beam search puts the full-attention layer there;
# - the searched hybrid recovers most of the teacher's lead over the all-linear one (more than half) and
#   beats the uniform placement of the same budget by at least 0.1.
# (This also covers the placement search's correctness test: heat map and beam search find the layer the
# task needs.) The run is the release build's: in the sanitized run (PN_TEST_QUICK) it is skipped, as five
# minutes there become twenty-five; test_demo runs the same stages under the sanitizers.
set -u
B=${1:?usage: test_recall.sh BUILD_DIR}
if [ -n "${PN_TEST_QUICK:-}" ]; then
  echo "skipped under PN_TEST_QUICK (the sanitized run): tests/test_demo.sh runs the same stages there"
  exit 77
fi
B=$(cd "$B" && pwd)
SRC=$(cd "$(dirname "$0")/.." && pwd)
T=$(mktemp -d /tmp/pn_test_recall.XXXXXX)
trap 'rm -rf "$T"' EXIT
. "$(dirname "$0")/test_lib.sh"

cp -r "$SRC/scripts" "$SRC/configs" "$SRC/src" "$SRC/data" "$SRC/kernels" "$T/" # (the sources: the demo's text)
ln -s "$B" "$T/build"
PN_DEMO_SKIP_BUILD=1 PN_DEMO_SHORT=1 PN_LOG_DIR="$T/logs" bash "$T/scripts/demo.sh" > "$T/demo.log" 2>&1 &&
  ok || bad "demo (PN_DEMO_SHORT): $(tail -5 "$T/demo.log")"
python3 - "$T/runs" << 'EOF' && ok || bad "the demo's result on the short schedule (above)"
import csv, json, sys
r = sys.argv[1]
def score(name):
    return json.load(open("%s/demo/eval-%s.json" % (r, name)))["results"]["synth_recall"]["exact_match,none"]
s = {m: score(m) for m in ("teacher", "searched", "uniform", "all-linear")}
heat = {int(x["layer"]): float(x["synth_recall"]) for x in csv.DictReader(open(r + "/tiny-search/heatmap.csv"))}
p = json.load(open(r + "/tiny-search/placement.json"))
best = max(heat, key=heat.get)
print("synth_recall:", s, "heat map:", heat, "searched:", p["layer_specs"], "uniform:", p["uniform_layer_specs"])
assert s["teacher"] >= 0.9, "teacher %.2f < 0.9" % s["teacher"]
assert s["all-linear"] <= 0.3, "all-linear %.2f > 0.3" % s["all-linear"]
assert heat[best] >= 0.3 and all(v <= heat[best] - 0.2 for l, v in heat.items() if l != best), heat
assert p["layer_specs"].index("attn") == best, (p["layer_specs"], best)
gap = s["teacher"] - s["all-linear"]
assert s["searched"] - s["all-linear"] > 0.5 * gap, "searched %.2f recovers less than half the gap" % s["searched"]
assert s["searched"] >= s["uniform"] + 0.1, "searched %.2f vs uniform %.2f" % (s["searched"], s["uniform"])
EOF
grep -q "^| searched |" "$T/runs/demo/report.md" && ok || bad "report.md has no searched row"
echo "recall: $pass passed, $fail failed"
[ $fail -eq 0 ]
