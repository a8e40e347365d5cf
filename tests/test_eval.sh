#!/usr/bin/env bash
# postnas-eval against lm-evaluation-harness (tests/make_eval_goldens.py: lm-eval's Hugging Face backend on the
# same random Qwen2-vocabulary model and the same task files): every request's log-likelihood within 1e-4
# (relative to max(1, |ll|)), every greedy generation the same ids and text
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
. "$(dirname "$0")/test_lib.sh"
if [ ! -d "$SHARED/tasks/commonsense" ] || [ ! -f "$SHARED/tokenizers/qwen2/vocab.json" ]; then
  echo "skipped: $SHARED/tasks and $SHARED/tokenizers/qwen2 are needed (the shared data beside the repository)"
  exit 77
fi

# the model of the goldens (deterministic)
$B/postnas-mkckpt --preset tiny --vocab 151936 --tokenizer "$SHARED/tokenizers/qwen2" --seed 5 --init-std 0.5 \
  --dtype f32 --out "$T/model" > /dev/null || bad "mkckpt"
# the goldens' runs: the commonsense tasks and winogrande (20 documents), two MMLU subjects 0- and 5-shot (10),
# gsm8k 5-shot (5, at most 64 new tokens) and key-value retrieval (3)
run_eval() { # SAMPLES RESULTS ARGS...
  local smp=$1 res=$2; shift 2
  $EVAL --model "$T/model" --data "$SHARED/tasks" --no-progress --log-samples "$T/$smp" --out "$T/$res" "$@" \
    > "$T/table" 2> "$T/log" && ok || bad "postnas-eval $*: $(tail -2 "$T/log")"
}
run_eval s1.jsonl r1.json --tasks arc_easy,arc_challenge,piqa,copa,boolq,lambada_openai,winogrande --limit 20
grep -q "| arc_easy" "$T/table" && ok || bad "no summary table"
run_eval s2.jsonl r2.json --tasks mmlu_abstract_algebra,mmlu_high_school_geography --limit 10
run_eval s3.jsonl r3.json --tasks mmlu_abstract_algebra,mmlu_high_school_geography --limit 10 --num-fewshot 5
run_eval s4.jsonl r4.json --tasks gsm8k --limit 5 --num-fewshot 5 --max-gen-toks 64
run_eval s5.jsonl r5.json --tasks kv_pairs_beginning_len_2048 --limit 3

if [ -f "$G/requests.jsonl" ]; then
  python3 - "$G" "$T" << 'EOF' && ok || bad "lm-eval goldens (see above)"
import json, math, sys
G, T = sys.argv[1:3]
samples, ours = {}, {}
for k, suffix in ((1, ""), (2, ""), (3, "_5shot"), (4, ""), (5, "")):
    for l in open("%s/s%d.jsonl" % (T, k)):
        s = json.loads(l)
        samples[(s["task"] + suffix, s["doc_id"])] = s
    for t, m in json.load(open("%s/r%d.json" % (T, k)))["results"].items():
        ours[t + suffix] = m
worst, flips = 0.0, 0  # relative: lm-eval's fp32 log_softmax vs ours in double, over sums of ~10 tokens
want = [json.loads(l) for l in open(G + "/requests.jsonl")]
for w in want:
    ll, greedy = samples[(w["task"], w["doc_id"])]["resps"][w.get("choice_index", 0)]
    worst = max(worst, abs(ll - w["ll"]) / max(1.0, abs(w["ll"])))
    flips += bool(greedy) != bool(w["is_greedy"])
print("log-likelihood requests: %d, worst |ll - lm-eval| / max(1, |ll|) %.2e, greedy flags differing %d" % (len(want), worst, flips))
gens = [json.loads(l) for l in open(G + "/generations.jsonl")]
gen_bad = 0
for w in gens:
    s = samples[(w["task"], w["doc_id"])]
    if s["gen_ids"] != w["generated_ids"] or s["resps"][0][0] != w["response"]:
        print("generation %s %d: postnas %r (%d ids), lm-eval %r (%d ids)" % (w["task"], w["doc_id"], s["resps"][0][0][:60],
              len(s["gen_ids"]), w["response"][:60], len(w["generated_ids"]))); gen_bad += 1
    if w["task"] == "gsm8k" and s.get("filtered_resps") != w["filtered"]:
        print("filtered answers %s %d: %s vs %s" % (w["task"], w["doc_id"], s.get("filtered_resps"), w["filtered"])); gen_bad += 1
print("generations: %d, differing %d" % (len(gens), gen_bad))
bad = 0
for task, m in json.load(open(G + "/results.json"))["results"].items():
    if task not in ours:
        continue  # lm-eval's two-subject groups (postnas-eval's mmlu group is every subject)
    for k, v in m.items():
        if "," not in k or not isinstance(v, (int, float)) or k.startswith("perplexity_stderr"):
            continue
        o = ours[task].get(k)
        if o is None or abs(o - v) > 1e-4 * max(1.0, abs(v)):
            print("metric %s %s: postnas %s, lm-eval %s" % (task, k, o, v)); bad += 1
print("metrics: %d differ" % bad)
sys.exit(0 if worst <= 1e-4 and flips == 0 and gen_bad == 0 and bad == 0 else 1)
EOF
else
  echo "golden check skipped: no $G/requests.jsonl"
fi

# rolling log-likelihood (lm-eval's loglikelihood_rolling) on the first 2 articles of wikitext-2's test file,
# in windows of 512 tokens, as a user task
python3 - "$SHARED/corpora/wikitext2-test.raw.txt" "$T/wiki.jsonl" << 'EOF'
import json, re, sys
lines = open(sys.argv[1], encoding="utf-8").read().split("\n")
docs, cur = [], []
for l in lines:  # a new article at each top-level heading " = Title = "
    if re.match(r"^ = [^=].* = $", l) and cur:
        docs.append("\n".join(cur)); cur = []
    cur.append(l)
docs.append("\n".join(cur))
with open(sys.argv[2], "w") as f:
    for d in docs[:2]:
        f.write(json.dumps({"page": d}) + "\n")
EOF
printf 'task: wiki_rolling\ndataset: wiki.jsonl\noutput_type: loglikelihood_rolling\ndoc_to_target: "{page}"\n' > "$T/wiki.yaml"
$EVAL --model "$T/model" --tasks "$T/wiki.yaml" --max-length 512 --no-progress --log-samples "$T/s6.jsonl" \
  --out "$T/r6.json" > /dev/null 2> "$T/log" && ok || bad "rolling run: $(tail -2 "$T/log")"
if [ -f "$G/rolling.jsonl" ]; then
  python3 - "$G" "$T" << 'EOF' && ok || bad "rolling log-likelihood vs lm-eval (see above)"
import json, sys
G, T = sys.argv[1:3]
ours = {json.loads(l)["doc_id"]: json.loads(l) for l in open(T + "/s6.jsonl")}
worst = 0.0
for l in open(G + "/rolling.jsonl"):
    w = json.loads(l)
    o = ours[w["doc_id"]]
    worst = max(worst, abs(o["resps"][0][0] - w["ll"]) / max(1.0, abs(w["ll"])))
    assert o["words"] == w["words"] and o["bytes"] == w["bytes"] and o["tokens"] == w["n_tokens"], (o, w)
g = json.load(open(G + "/results.json"))["results"]["wiki_rolling"]
r = json.load(open(T + "/r6.json"))["results"]["wiki_rolling"]
bad = [k for k in ("word_perplexity,none", "byte_perplexity,none", "bits_per_byte,none")
       if abs(r[k] - g[k]) > 1e-4 * max(1.0, abs(g[k]))]
print("rolling: worst |ll - lm-eval| / max(1, |ll|) %.2e; metrics differing: %s" % (worst, bad or "none"))
sys.exit(0 if worst <= 1e-4 and not bad else 1)
EOF
fi
# generation requests decoded together (continuous batching; rows at different lengths, each request
# prefilled alone into a freed row) give what each gets alone, on a hybrid whose rows carry recurrent and
# convolution states (gdn, jet) and a sliding window (swa)
$B/postnas-mkckpt --preset tiny --layer-types swa,gdn,attn,jet --sliding-window 8 --seed 3 --init-std 0.3 --dtype f32 \
  --out "$T/hyb" > /dev/null || bad "mkckpt hybrid"
for gb in 1 3 8; do
  $EVAL --model "$T/hyb" --tasks synth_copy,synth_passkey --limit 7 --max-gen-toks 12 --gen-batch $gb \
    --log-samples "$T/gb$gb.jsonl" --no-progress > /dev/null 2> "$T/gb.log" || bad "--gen-batch $gb: $(tail -1 "$T/gb.log")"
done
cmp -s "$T/gb1.jsonl" "$T/gb3.jsonl" && cmp -s "$T/gb1.jsonl" "$T/gb8.jsonl" && [ -s "$T/gb1.jsonl" ] && ok ||
  bad "generations decoded together differ from one at a time"
# the LM head over 3 rows at a time (continuations spanning chunks) gives the same scores as 512 at a time:
# equal greedy flags, log-likelihoods within float rounding (OpenBLAS's sgemm may sum a row's products in
# another order when it is given fewer rows: 3e-8 relative seen on a Sapphire Rapids core)
$EVAL --model "$T/model" --tasks arc_easy --limit 6 --data "$SHARED/tasks" --head-rows 3 --log-samples "$T/h3.jsonl" \
  --no-progress > /dev/null 2>&1 || bad "--head-rows 3 run"
$EVAL --model "$T/model" --tasks arc_easy --limit 6 --data "$SHARED/tasks" --log-samples "$T/h512.jsonl" \
  --no-progress > /dev/null 2>&1 || bad "--head-rows default run"
python3 - "$T/h3.jsonl" "$T/h512.jsonl" << 'EOF' && ok || bad "--head-rows changes the log-likelihoods"
import json, sys
a, b = ([json.loads(l) for l in open(p)] for p in sys.argv[1:3])
assert len(a) == len(b) == 6
for x, y in zip(a, b):
    assert x["doc_id"] == y["doc_id"] and len(x["resps"]) == len(y["resps"]) > 0
    for (l1, g1), (l2, g2) in zip(x["resps"], y["resps"]):
        assert abs(l1 - l2) <= 1e-6 * max(1, abs(l2)) and g1 == g2, (x["doc_id"], l1, l2)
EOF

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

# MMLU's four one-token choices share their context's forward: the same scores as forwarding each request,
# from a quarter of the tokens (packed forwards: no cached prefix). fp32 within 1e-5 relative, as the cached
# prefixes below: other row counts per GEMM sum in another order (1.5e-6 seen with OpenBLAS on an AMD EPYC).
$EVAL --model "$T/model" --tasks mmlu_abstract_algebra --limit 8 --num-fewshot 2 --data "$SHARED/tasks" \
  --log-samples "$T/sh1.jsonl" --no-prefix-cache --no-progress > /dev/null 2> "$T/sh1.err" || bad "shared-prefix run"
$EVAL --model "$T/model" --tasks mmlu_abstract_algebra --limit 8 --num-fewshot 2 --data "$SHARED/tasks" \
  --log-samples "$T/sh0.jsonl" --no-share-prefix --no-prefix-cache --no-progress > /dev/null 2> "$T/sh0.err" ||
  bad "unshared run"
python3 - "$T/sh1.jsonl" "$T/sh0.jsonl" "$T/sh1.err" "$T/sh0.err" << 'EOF' && ok || bad "shared prefixes change the scores"
import json, re, sys
a, b = ([json.loads(l) for l in open(p)] for p in sys.argv[1:3])
assert len(a) == len(b) == 8
for x, y in zip(a, b):
    for (l1, g1), (l2, g2) in zip(x["resps"], y["resps"]):
        assert abs(l1 - l2) <= 1e-5 * max(1, abs(l2)) and g1 == g2, (x["doc_id"], l1, l2)
stats = [re.search(r"\((\d+) tokens in \d+ forwards; (\d+) requests read", open(p).read()).groups() for p in sys.argv[3:5]]
(t1, s1), (t0, s0) = ((int(t), int(s)) for t, s in stats)
assert s1 == 24 and s0 == 0 and 4 * t1 == t0, stats  # 8 questions x 3 choices reuse the first one's rows
print("shared prefixes: %d tokens forwarded instead of %d, same scores" % (t1, t0))
EOF

# A subject's 5-shot examples run once: every question continues their decode state (KV caches, recurrent
# and convolution states, a sliding window shorter than the prefix) in batches of rows, each padded at its
# end; the same scores as whole packed requests, from a fraction of the tokens; also without the sharing of
# the choices' rows, and with a forward budget that splits a subject into several batches.
for v in pc nopc nosh small; do
  case $v in nopc) x=--no-prefix-cache ;; nosh) x=--no-share-prefix ;; small) x="--max-length 2048 --batch 2048" ;; *) x= ;; esac
  $EVAL --model "$T/hyb" --tasks mmlu_abstract_algebra,mmlu_high_school_geography --limit 10 --num-fewshot 5 \
    --data "$SHARED/tasks" --log-samples "$T/pf_$v.jsonl" $x --no-progress > /dev/null 2> "$T/pf_$v.err" ||
    bad "cached-prefix run ($v): $(tail -1 "$T/pf_$v.err")"
done
python3 - "$T" << 'EOF' && ok || bad "requests over a cached prefix score differently"
import json, re, sys
T = sys.argv[1]
runs = {v: [json.loads(l) for l in open("%s/pf_%s.jsonl" % (T, v))] for v in ("pc", "nopc", "nosh", "small")}
stats = {v: [int(x) for x in re.search(r"\((\d+) tokens in (\d+) forwards; (\d+) requests read a shared prefix; (\d+) "
         r"continued a cached prefix", open("%s/pf_%s.err" % (T, v)).read()).groups()] for v in runs}
worst = 0.0
for v in ("pc", "nosh", "small"):
    assert len(runs[v]) == len(runs["nopc"]) == 20
    for x, y in zip(runs[v], runs["nopc"]):
        for (l1, g1), (l2, g2) in zip(x["resps"], y["resps"]):
            worst = max(worst, abs(l1 - l2) / max(1, abs(l2)))
            assert g1 == g2, (v, x["doc_id"])
assert worst <= 1e-5, worst
assert stats["pc"][3] == stats["nosh"][3] == stats["small"][3] == 80 and stats["nopc"][3] == 0, stats
assert 3 * stats["pc"][0] < stats["nopc"][0] and stats["nosh"][2] == 0, stats
assert stats["small"][1] > stats["pc"][1], stats  # a 2048-token budget takes more forwards
print("cached prefixes: %d tokens forwarded instead of %d (%d forwards with a 2048-token budget), worst |dll| %.1e"
      % (stats["pc"][0], stats["nopc"][0], stats["small"][1], worst))
EOF

# the synthetic tasks are postnas-data synth's items (same prompts and answers, same defaults)
$EVAL --model "$T/model" --tasks synth_passkey,synth_facts_mc,synth_recall --limit 4 --max-gen-toks 8 --no-progress \
  --log-samples "$T/synth.jsonl" > /dev/null 2> "$T/synth.err" || bad "synthetic tasks run"
# generation's prefills and decode steps are counted in the summary line (a generation-only run said 0 tokens)
$EVAL --model "$T/model" --tasks synth_recall --limit 4 --max-gen-toks 8 --no-progress > /dev/null 2> "$T/gen.err" &&
  python3 -c "
import re, sys
t, f = map(int, re.search(r'\((\d+) tokens in (\d+) forwards', open(sys.argv[1]).read()).groups())
assert t >= 20 and f >= 4, (t, f)  # 4 prompts (a prefill each), then decode steps
" "$T/gen.err" && ok || bad "generation's tokens and forwards: $(tail -1 "$T/gen.err")"
$B/postnas-data synth --task passkey --n 4 --out "$T/pk.jsonl" > /dev/null 2>&1
$B/postnas-data synth --task facts_mc --n 4 --out "$T/fm.jsonl" > /dev/null 2>&1
$B/postnas-data synth --task recall --n 4 --out "$T/rc.jsonl" > /dev/null 2>&1
python3 - "$T/synth.jsonl" "$T/pk.jsonl" "$T/fm.jsonl" "$T/rc.jsonl" << 'EOF' && ok || bad "synthetic task items differ from postnas-data synth's"
import json, sys
s = [json.loads(l) for l in open(sys.argv[1])]
pk = [json.loads(l) for l in open(sys.argv[2])]
fm = [json.loads(l) for l in open(sys.argv[3])]
rc = [json.loads(l) for l in open(sys.argv[4])]
gen = [x for x in s if x["task"] == "synth_passkey"]
mc = [x for x in s if x["task"] == "synth_facts_mc"]
rec = [x for x in s if x["task"] == "synth_recall"]
assert len(gen) == 4 and len(mc) == 4 and len(rec) == 4
for a, b in zip(gen + rec, pk + rc):
    assert a["arguments"][0][0] == b["context"] and a["target"] == b["answer"], (a, b)
# recall's answers end at '|' (the next query) as well as at a newline: no response runs past one
assert all("|" not in x["resps"][0][0] and "\n" not in x["resps"][0][0] for x in rec), rec
for a, b in zip(mc, fm):
    assert [x[0] for x in a["arguments"]] == [b["query"]] * len(b["choices"]), (a, b)
    assert [x[1] for x in a["arguments"]] == [" " + c for c in b["choices"]] and a["target"] == b["gold"], (a, b)
EOF

# a user task in YAML that restates a built-in one scores every request the same
cat > "$T/my_arc.yaml" << EOF
task: my_arc
dataset: $SHARED/tasks/commonsense/arc_easy.jsonl
output_type: multiple_choice
doc_to_text: "{query}\nAnswer:"
doc_to_choice: choices
doc_to_target: gold
EOF
cp "$T/pk.jsonl" "$T/user_pk.jsonl"
cat > "$T/my_pk.yaml" << 'EOF'
task: my_passkey
dataset: user_pk.jsonl   # relative to this file
output_type: generate_until
doc_to_text: "{context}"
doc_to_target: "{answer}"
until: ["\n"]
max_gen_toks: 8
EOF
$EVAL --model "$T/model" --tasks "$T/my_arc.yaml,arc_easy,$T/my_pk.yaml,synth_passkey" --limit 4 --max-gen-toks 8 \
  --data "$SHARED/tasks" --no-progress --log-samples "$T/user.jsonl" > /dev/null 2>&1 || bad "user task run"
python3 - "$T/user.jsonl" << 'EOF' && ok || bad "a user task scores differently from the built-in one it restates"
import json, sys
s = [json.loads(l) for l in open(sys.argv[1])]
by = lambda t: [x for x in s if x["task"] == t]
assert len(by("my_arc")) == 4 and [x["resps"] for x in by("my_arc")] == [x["resps"] for x in by("arc_easy")]
assert [x["arguments"] for x in by("my_arc")] == [x["arguments"] for x in by("arc_easy")]
assert len(by("my_passkey")) == 4 and [x["resps"] for x in by("my_passkey")] == [x["resps"] for x in by("synth_passkey")]
EOF
printf 'task: x\ndataset: a.jsonl\ndoc_to_txt: "q"\n' > "$T/bad1.yaml"
expect_error "bad1.yaml:3:1: unknown key 'doc_to_txt' (did you mean 'doc_to_text'?)" $EVAL --model "$T/model" --tasks "$T/bad1.yaml"
printf '{"q": "a"}\n{"x": "b"}\n' > "$T/u.jsonl"
printf 'task: x\ndataset: u.jsonl\noutput_type: loglikelihood\ndoc_to_text: "{q}"\ndoc_to_target: " t"\n' > "$T/bad2.yaml"
expect_error "u.jsonl:2: no string or number field \"q\"" $EVAL --model "$T/model" --tasks "$T/bad2.yaml"
printf 'task: x\ndataset: u.jsonl\ndoc_to_text: "{q}"\ndoc_to_choice: c\ndoc_to_target: g\nnum_fewshot: 2\n' > "$T/bad3.yaml"
expect_error "num_fewshot 2 needs a fewshot_split" $EVAL --model "$T/model" --tasks "$T/bad3.yaml"

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
