"""The demo's report (scripts/demo.sh's last stage): runs/demo/report.md from the stages' outputs.

usage: python3 scripts/demo_report.py runs/demo

Reads the search's placement.json and heat map (runs/tiny-search), each model's postnas-eval results
(eval-<name>.json), postnas-info (info-<name>.json), the tokens of its training (metrics.jsonl) and the
stages' times (stage-times.tsv); writes report.md beside them and prints its headline table."""
import json
import os
import sys

demo = sys.argv[1]
root = os.path.dirname(os.path.abspath(demo))
MODELS = [("teacher", "tiny-pretrain"), ("searched", "demo-searched"), ("uniform", "demo-uniform"),
          ("all-linear", "demo-all-linear")]
TASKS = [("synth_recall", "exact_match")]


def last_tokens(run):
    lines = [l for l in open(os.path.join(root, run, "metrics.jsonl")) if l.startswith("{")]
    return json.loads(lines[-1])["tokens"]


placement = json.load(open(os.path.join(root, "tiny-search", "placement.json")))
rows = []
for name, run in MODELS:
    ev = json.load(open(os.path.join(demo, "eval-%s.json" % name)))["results"]
    info = json.load(open(os.path.join(demo, "info-%s.json" % name)))
    scores = [ev[t]["%s,none" % m] for t, m in TASKS]
    types = ",".join(l["mixer"] for l in info["layers"])
    rows.append((name, types, scores, info["state_bytes"], info["parameters"], last_tokens(run)))

head = "| model | layer types | " + " | ".join("%s (%s)" % t for t in TASKS) + \
    " | decode state at 64K tokens | parameters | tokens trained |"
sep = "|---|---|" + "---:|" * (len(TASKS) + 3)
table = [head, sep]
for name, types, scores, state, params, tokens in rows:
    table.append("| %s | %s | %s | %.2f MiB | %d | %d |" % (
        name, types, " | ".join("%.2f" % s for s in scores), state / 2**20, params, tokens))

times = [l.rstrip("\n").split("\t") for l in open(os.path.join(demo, "stage-times.tsv")) if l.strip()]
sn_tokens = last_tokens("tiny-supernet")
text = ["# PostNAS demo report", "",
        "A tiny Qwen2-shaped teacher (4 layers, byte-level vocabulary) pretrained on repeats, associative-recall "
        "exercises and slices of real text; a "
        "once-for-all supernet over it (every layer: full attention, sliding-window attention, Gated "
        "DeltaNet, JetBlock; %d tokens); the placement search on associative recall (the retrieval the teacher "
        "has learned); "
        "three hybrids distilled "
        "from the teacher with the same budget; all evaluated on associative recall (100 held-out exercises)."
        % sn_tokens,
        "", "## Where full attention must stay", "",
        "![heat map](../tiny-search/heatmap.svg)", "",
        "Searched placement: `%s` (beam search, budget %d full-attention and %d sliding-window layers; "
        "%d subnets evaluated). Uniform placement with the same budget: `%s`." % (
            ", ".join(placement["layer_specs"]), placement["budget"]["n_attn"], placement["budget"]["n_swa"],
            placement["subnets_evaluated"], ", ".join(placement["uniform_layer_specs"])),
        "", "## The models", ""] + table + [
        "", "Decode state: KV caches in bf16 for one sequence (a full-attention layer's grows with the context; "
        "sliding-window and linear layers' do not). Scores: `postnas-eval`'s synth_recall (`postnas-data synth "
        "--task recall`: 8 one-letter keys with one-digit values, the fourth query's digit, exact match).", "",
        "## Stages", "", "| stage | seconds | |", "|---|---:|---|"] + [
        "| %s | %s | %s |" % (n.replace("|", "\\|"), s, how) for n, s, how in times] + [""]
out = os.path.join(demo, "report.md")
with open(out + ".tmp", "w") as f:
    f.write("\n".join(text))
os.replace(out + ".tmp", out)
print("\n".join(table))
print("\nthe report: %s (the heat map: %s)" % (out, os.path.join(root, "tiny-search", "heatmap.svg")))
