"""postnas-eval on CPU (fp32) and CUDA (bf16) agree: every log-likelihood request within bf16 tolerance,
greedy flags and generations compared, every task metric within two standard errors (or two documents).

usage: eval_agree.py CPU_SAMPLES CUDA_SAMPLES CPU_RESULTS CUDA_RESULTS (exit 1 on disagreement)"""
import json
import sys


def load(path):
    return {(s["task"], s["doc_id"]): s for s in map(json.loads, open(path))}


cpu, gpu = load(sys.argv[1]), load(sys.argv[2])
assert cpu.keys() == gpu.keys(), "different documents"
worst, n_ll, flips, gen_same, n_gen = 0.0, 0, 0, 0, 0
for key, a in cpu.items():
    b = gpu[key]
    if "gen_ids" in a:  # generate-until: greedy decoding may part ways on a near tie; count, not fail
        n_gen += 1
        gen_same += a["gen_ids"] == b["gen_ids"]
        continue
    for (l1, g1), (l2, g2) in zip(a["resps"], b["resps"]):
        n_ll += 1
        worst = max(worst, abs(l1 - l2) / max(1.0, abs(l1)))
        flips += g1 != g2
ok = worst <= 0.03
ra, rb = (json.load(open(p))["results"] for p in sys.argv[3:5])
for task in ra:
    for k, v in ra[task].items():
        if not isinstance(v, float) or "stderr" in k or k == "alias":
            continue
        se = ra[task].get(k.replace(",", "_stderr,"), 0.0) or 0.0
        d = abs(v - rb[task][k])
        print("  %-16s %-18s cpu %.4f cuda %.4f (stderr %.4f)" % (task, k, v, rb[task][k], se))
        n = sum(1 for t, _ in cpu if t == task)  # up to two documents may flip on a near tie
        ok = ok and d <= max(2 * se, 2.0 / max(n, 1), 1e-3 * max(1.0, abs(v)))
print("eval CPU vs CUDA: %d log-likelihood requests, worst relative difference %.2e, %d greedy flags differ; "
      "%d of %d generations identical: %s" % (n_ll, worst, flips, gen_same, n_gen, "ok" if ok else "FAIL"))
sys.exit(0 if ok else 1)
