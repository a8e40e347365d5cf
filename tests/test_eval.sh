#!/usr/bin/env bash
# postnas-eval against lm-evaluation-harness (tests/make_eval_goldens.py: lm-eval's Hugging Face backend on the
# same random Qwen2-vocabulary model and the same task files): every request's log-likelihood within 1e-4
# (relative to max(1, |ll|))
# and its greedy flag equal, every task metric equal; batched and unbatched runs give the same scores; bad
# task files and arguments end with one error line naming the file and line, and no results.json.
# Needs ../shared/data (the task files and the Qwen2 tokenizer): skips (77) without it.
set -u
B=${1:?usage: test_eval.sh BUILD_DIR GOLDENS_DIR SHARED_DATA}
G=${2:?}
SHARED=${3:?}
EVAL=$B/postnas-eval
T=$(mktemp -d /tmp/pn_test_eval.XXXXXX)
trap 'rm -rf "$T"' EXIT
pass=0 fail=0
ok() { pass=$((pass + 1)); }
bad() { fail=$((fail + 1)); echo "FAIL: $*" >&2; }
expect_error() {
  local needle=$1; shift
  "$@" > "$T/out" 2> "$T/err"
  local rc=$?
  local lines; lines=$(grep -c . "$T/err")
  if [ $rc -eq 1 ] && [ "$lines" -eq 1 ] && grep -qF -- "$needle" "$T/err"; then ok
  else bad "$* -> rc=$rc, stderr: $(cat "$T/err")  (wanted one line containing '$needle')"; fi
}
if [ ! -d "$SHARED/tasks/commonsense" ] || [ ! -f "$SHARED/tokenizers/qwen2/vocab.json" ]; then
  echo "skipped: $SHARED/tasks and $SHARED/tokenizers/qwen2 are needed (the shared data beside the repository)"
  exit 77
fi

# the model of the goldens (deterministic)
$B/postnas-mkckpt --preset tiny --vocab 151936 --tokenizer "$SHARED/tokenizers/qwen2" --seed 5 --init-std 0.5 \
  --dtype f32 --out "$T/model" > /dev/null || bad "mkckpt"
TASKS=arc_easy,arc_challenge,piqa,copa,boolq,lambada_openai
$EVAL --model "$T/model" --tasks $TASKS --limit 20 --data "$SHARED/tasks" --out "$T/res.json" \
  --log-samples "$T/samples.jsonl" --no-progress > "$T/table" 2> "$T/log" && ok || bad "postnas-eval: $(tail -2 "$T/log")"
grep -q "| arc_easy" "$T/table" && ok || bad "no summary table"

if [ -f "$G/requests.jsonl" ]; then
  python3 - "$G" "$T/samples.jsonl" "$T/res.json" << 'EOF' && ok || bad "lm-eval goldens (see above)"
import json, math, sys
G, samples, res = sys.argv[1:4]
want = [json.loads(l) for l in open(G + "/requests.jsonl")]
got = {}
for l in open(samples):
    s = json.loads(l)
    for c, (ll, greedy) in enumerate(s["resps"]):
        got[(s["task"], s["doc_id"], c)] = (ll, greedy)
worst, flips = 0.0, 0  # relative: lm-eval's fp32 log_softmax vs ours in double, over sums of ~10 tokens
for w in want:
    key = (w["task"], w["doc_id"], w.get("choice_index", 0))
    ll, greedy = got[key]
    worst = max(worst, abs(ll - w["ll"]) / max(1.0, abs(w["ll"])))
    flips += bool(greedy) != bool(w["is_greedy"])
print("requests: %d, worst |ll - lm-eval| / max(1, |ll|) %.2e, greedy flags differing %d" % (len(want), worst, flips))
gres = json.load(open(G + "/results.json"))["results"]
ours = json.load(open(res))["results"]
bad = 0
for task, m in gres.items():
    for k, v in m.items():
        if "," not in k or not isinstance(v, (int, float)) or k.startswith("perplexity_stderr"):
            continue
        o = ours[task].get(k)
        if o is None or abs(o - v) > 1e-4 * max(1.0, abs(v)):
            print("metric %s %s: postnas %s, lm-eval %s" % (task, k, o, v)); bad += 1
print("metrics compared: %d tasks, %d differ" % (len(gres), bad))
sys.exit(0 if worst <= 1e-4 and flips == 0 and bad == 0 else 1)
EOF
else
  echo "golden check skipped: no $G/requests.jsonl"
fi

# batched (many requests per forward) and unbatched (one window per forward) give the same scores
$EVAL --model "$T/model" --tasks arc_easy,lambada_openai --limit 10 --data "$SHARED/tasks" --batch 64 \
  --out "$T/res1.json" --no-progress > /dev/null 2>&1 || bad "unbatched run"
$EVAL --model "$T/model" --tasks arc_easy,lambada_openai --limit 10 --data "$SHARED/tasks" --batch 65536 \
  --out "$T/res2.json" --no-progress > /dev/null 2>&1 || bad "batched run"
python3 - "$T/res1.json" "$T/res2.json" << 'EOF' && ok || bad "batched and unbatched scores differ"
import json, sys
a, b = (json.load(open(p))["results"] for p in sys.argv[1:3])
for t in a:
    for k in a[t]:
        if k.startswith("acc") or k.startswith("perplexity,"):
            assert abs(a[t][k] - b[t][k]) <= 1e-6 * max(1, abs(a[t][k])), (t, k, a[t][k], b[t][k])
EOF

# the synthetic tasks are postnas-data synth's items (same prompts and answers, same defaults)
$EVAL --model "$T/model" --tasks synth_passkey,synth_facts_mc --limit 4 --max-gen-toks 8 --no-progress \
  --log-samples "$T/synth.jsonl" > /dev/null 2>&1 || bad "synthetic tasks run"
$B/postnas-data synth --task passkey --n 4 --out "$T/pk.jsonl" > /dev/null 2>&1
$B/postnas-data synth --task facts_mc --n 4 --out "$T/fm.jsonl" > /dev/null 2>&1
python3 - "$T/synth.jsonl" "$T/pk.jsonl" "$T/fm.jsonl" << 'EOF' && ok || bad "synthetic task items differ from postnas-data synth's"
import json, sys
s = [json.loads(l) for l in open(sys.argv[1])]
pk = [json.loads(l) for l in open(sys.argv[2])]
fm = [json.loads(l) for l in open(sys.argv[3])]
gen = [x for x in s if x["task"] == "synth_passkey"]
mc = [x for x in s if x["task"] == "synth_facts_mc"]
assert len(gen) == 4 and len(mc) == 4
for a, b in zip(gen, pk):
    assert a["arguments"][0][0] == b["context"] and a["target"] == b["answer"], (a, b)
for a, b in zip(mc, fm):
    assert [x[0] for x in a["arguments"]] == [b["query"]] * len(b["choices"]), (a, b)
    assert [x[1] for x in a["arguments"]] == [" " + c for c in b["choices"]] and a["target"] == b["gold"], (a, b)
EOF

# bad input: one line, exit 1, no results.json
mkdir -p "$T/bad/commonsense"
bad_task() { # LINE NEEDLE
  printf '%s\n' '{"query": "Question: fine?", "choices": ["a", "b"], "gold": 0}' "$1" > "$T/bad/commonsense/arc_easy.jsonl"
  rm -f "$T/badres.json"
  expect_error "$2" $EVAL --model "$T/model" --tasks arc_easy --data "$T/bad" --out "$T/badres.json" --no-progress
  [ ! -e "$T/badres.json" ] && ok || bad "a failed run left $T/badres.json"
}
bad_task '{"choices": ["a", "b"], "gold": 0}' "arc_easy.jsonl:2: no \"query\""
bad_task '{"query": "q", "choices": ["a", "b"], "gold": 2}' "arc_easy.jsonl:2: \"gold\" 2 is outside the 2 choices"
bad_task '{"query": "q", "choices": [], "gold": 0}' "arc_easy.jsonl:2: \"choices\" must be a list of at least 2 strings"
bad_task '{"query": "q", "choices": ["a", ""], "gold": 0}' "arc_easy.jsonl:2: choice 1 is not a non-empty string"
bad_task '{"query": "q", "choices": ["a", "b"], "gold": 0' "arc_easy.jsonl:2"
# MMLU CSVs
mkdir -p "$T/bad/mmlu/test" "$T/bad/mmlu/dev"
mmlu_bad() { # TEST_CSV_TEXT NEEDLE [ARGS]
  printf '%b' "$1" > "$T/bad/mmlu/test/x_test.csv"
  printf 'question,choice0,choice1,choice2,choice3,answer\nq,a,b,c,d,0\n' > "$T/bad/mmlu/dev/x_dev.csv"
  local needle=$2; shift 2
  expect_error "$needle" $EVAL --model "$T/model" --tasks mmlu_x --data "$T/bad" --no-progress "$@"
}
mmlu_bad 'question,choice0,choice1,choice2,choice3,answer\n"q, with comma",a,b,c,d,4\n' 'x_test.csv: row 2: answer "4" is not 0..3 or A..D'
mmlu_bad 'question,choice0,choice1,choice2,choice3\nq,a,b,c,d\n' 'x_test.csv: row 1 has 5 fields, expected 6'
mmlu_bad 'question,a,b,c,d,answer\nq,a,b,c,d,1\n' "the header's field 2 is \"a\", expected \"choice0\""
mmlu_bad 'question,choice0,choice1,choice2,choice3,answer\n"q,a,b,c,d,1\n' 'x_test.csv: row 2: malformed CSV'
mmlu_bad 'question,choice0,choice1,choice2,choice3,answer\nq,a,b,c,d,B\n' 'x_dev.csv: --num-fewshot 2 is more than its 1 examples' --num-fewshot 2
expect_error "mmlu/test/nothere_test.csv" $EVAL --model "$T/model" --tasks mmlu_nothere --data "$SHARED/tasks"
expect_error "--num-fewshot 1, but its local data has one split only" $EVAL --model "$T/model" --tasks piqa \
  --num-fewshot 1 --data "$SHARED/tasks"
expect_error 'unknown task "arc_hard" (known: arc_easy' $EVAL --model "$T/model" --tasks arc_hard --data "$SHARED/tasks"
expect_error "--limit" $EVAL --model "$T/model" --tasks arc_easy --limit 0
expect_error "commonsense/piqa.jsonl" $EVAL --model "$T/model" --tasks piqa --data "$T/bad"
expect_error "--tasks is required" $EVAL --model "$T/model"

echo "eval: $pass passed, $fail failed"
[ $fail -eq 0 ]
