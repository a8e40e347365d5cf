"""The peer's speed on postnas-eval's own requests: lm-evaluation-harness's Hugging Face backend (HFLM, bf16,
the same GPU) scores every log-likelihood request a postnas-eval run logged (--log-samples), timed from the
first request to the last (model loading excluded), and the two sets of log-likelihoods are compared.

usage: lmeval_speed.py MODEL_DIR SAMPLES.jsonl [--batch N] [--postnas-seconds S]
Prints questions/s for lm-eval and, given --postnas-seconds (postnas-eval's whole run, loading included),
the ratio; exit 1 when the two disagree beyond bf16 noise (see the bound below)."""
import argparse
import json
import time

import torch
from lm_eval.api.instance import Instance
from lm_eval.models.huggingface import HFLM

ap = argparse.ArgumentParser()
ap.add_argument("model")
ap.add_argument("samples")
ap.add_argument("--batch", default="32")
ap.add_argument("--postnas-seconds", type=float, default=0.0)
ap.add_argument("--device", default="cuda")
a = ap.parse_args()

docs = [s for s in map(json.loads, open(a.samples)) if "gen_ids" not in s]
reqs, ours = [], []
for d in docs:
    for (ctx, cont), (ll, greedy) in zip(d["arguments"], d["resps"]):
        reqs.append(Instance(request_type="loglikelihood", doc={}, arguments=(ctx, cont), idx=len(reqs)))
        ours.append((ll, greedy))

def sync():
    if a.device == "cuda":
        torch.cuda.synchronize()


lm = HFLM(pretrained=a.model, dtype="bfloat16" if a.device == "cuda" else "float32", device=a.device,
          batch_size=int(a.batch) if a.batch.isdigit() else a.batch)
sync()
t0 = time.perf_counter()
theirs = lm.loglikelihood(reqs, disable_tqdm=True)
sync()
dt = time.perf_counter() - t0

# Agreement: both run bf16 weights and activations, with different kernels and summation orders; a
# request's log-likelihood sums a few tokens' log-probabilities, so compare relative to its size.
worst = max(abs(x[0] - y[0]) / max(1.0, abs(x[0])) for x, y in zip(ours, theirs))
flips = sum(x[1] != y[1] for x, y in zip(ours, theirs))
# the documents' argmax choice (acc): how many differ
agree, k = 0, 0
for d in docs:
    n = len(d["arguments"])
    mine = max(range(n), key=lambda i: ours[k + i][0])
    peer = max(range(n), key=lambda i: theirs[k + i][0])
    agree += mine == peer
    k += n
ntok = sum(len(lm.tok_encode(r.args[0] + r.args[1])) for r in reqs[:200]) / min(200, len(reqs))
print(f"lm-eval HFLM (batch {a.batch}): {len(docs)} questions, {len(reqs)} requests (~{ntok:.0f} tokens each) "
      f"in {dt:.1f} s = {len(docs) / dt:.1f} questions/s")
if a.postnas_seconds > 0:
    q = len(docs) / a.postnas_seconds
    print(f"postnas-eval: {len(docs)} questions in {a.postnas_seconds:.1f} s (loading included) = {q:.1f} questions/s, "
          f"{q / (len(docs) / dt):.1f}x lm-eval")
print(f"log-likelihoods vs lm-eval: worst relative difference {worst:.2e}, {flips} greedy flags differ, "
      f"{agree}/{len(docs)} chosen answers equal")
raise SystemExit(0 if worst <= 0.05 else 1)
