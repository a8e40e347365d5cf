"""The peer's decode speed for the paper testbed (Jet-Nemotron: decode tok/s at 64K context): Hugging Face
transformers' generate, as the issue asks: "next to Hugging Face transformers' generate on the same GPU, same
batch" as postnas-bench, and the same checkpoint and context.
Measured like postnas-bench: prefill of B random prompts into a DynamicCache (timed alone), then greedy decode
of --new-tokens single-token steps from that cache (a manual loop), and model.generate(): its decode rate is
B*new_tokens / (the time of generate with new_tokens + 1 tokens - the time of generate with 1 token), so its
own prefill cancels (a first version subtracted the manual prefill instead, which generate's does not take
the same time as: an H100 run gave 54 tok/s that way against 14.6 from the manual loop). No tokenizer.
usage: hf_generate_bench.py --model DIR --context N --batch B --new-tokens N [--prefill-chunk N] [--json OUT]"""
import argparse, gc, inspect, json, sys, time

import torch
import transformers
from transformers import AutoModelForCausalLM, DynamicCache

ap = argparse.ArgumentParser()
ap.add_argument("--model", required=True)
ap.add_argument("--context", type=int, required=True)
ap.add_argument("--batch", type=int, required=True)
ap.add_argument("--new-tokens", type=int, required=True)
ap.add_argument("--seed", type=int, default=0)
ap.add_argument("--dtype", default="bf16", choices=["bf16", "fp16", "fp32"])
ap.add_argument("--attn", default="sdpa", choices=["sdpa", "flash_attention_2", "eager"])
ap.add_argument("--prefill-chunk", type=int, default=0)
ap.add_argument("--batch-halve-on-oom", action="store_true")
ap.add_argument("--json")
ap.add_argument("--device", default="cuda", help=argparse.SUPPRESS)  # cpu: smoke test only
a = ap.parse_args()
dev, cuda = a.device, a.device == "cuda"
dtype = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}[a.dtype]

def sync():
    if cuda:
        torch.cuda.synchronize()

kw = dict(attn_implementation=a.attn)
try:
    model = AutoModelForCausalLM.from_pretrained(a.model, dtype=dtype, **kw)
except TypeError:
    model = AutoModelForCausalLM.from_pretrained(a.model, torch_dtype=dtype, **kw)
model = model.to(dev).eval()
cfg = model.config
params = inspect.signature(model.forward).parameters
keep = next(({k: 1} for k in ("logits_to_keep", "num_logits_to_keep") if k in params), {})
ckw = "cache" if "cache" in params else "past_key_values"  # renamed cache in later transformers 5 releases
gen_chunk = {"prefill_chunk_size": a.prefill_chunk}  # chunked prefill in generate too, where it exists
gen_chunk = gen_chunk if a.prefill_chunk and hasattr(transformers.GenerationConfig(), "prefill_chunk_size") else {}

def new_cache():
    try:
        return DynamicCache(config=cfg)
    except TypeError:
        return DynamicCache()

def prefill(ids):
    cache, step = new_cache(), a.prefill_chunk or ids.shape[1]
    for i in range(0, ids.shape[1], step):
        out = model(input_ids=ids[:, i:i + step], **{ckw: cache}, use_cache=True, **keep)
    return out.logits[:, -1], cache

def decode(logits, cache, n):
    toks = [logits.argmax(-1)]
    for _ in range(n):
        out = model(input_ids=toks[-1][:, None], **{ckw: cache}, use_cache=True)
        toks.append(out.logits[:, -1].argmax(-1))
    return torch.stack(toks, 1)

def generate(ids, n):
    # n new tokens: the first comes from generate's prefill, then n - 1 decode steps
    return model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=n,
                          min_new_tokens=n, do_sample=False, eos_token_id=None, pad_token_id=0,
                          use_cache=True, **gen_chunk)

def timed(f, *args):
    sync()
    t = time.perf_counter()
    r = f(*args)
    sync()
    return r, time.perf_counter() - t

def peak():
    return torch.cuda.max_memory_allocated() / 2**30 if cuda else 0.0

def run(B, st):
    st["stage"] = "warm-up"  # CUDA init, cuBLAS heuristics, kernel selection
    w = torch.randint(0, cfg.vocab_size, (B, min(256, a.context)), device=dev)
    decode(*prefill(w), 4), generate(w, 5)
    del w
    g = torch.Generator(device=dev).manual_seed(a.seed)
    ids = torch.randint(0, cfg.vocab_size, (B, a.context), generator=g, device=dev)
    r = {}
    if cuda:
        torch.cuda.empty_cache(), torch.cuda.reset_peak_memory_stats()
    st["stage"] = "prefill"
    (logits, cache), r["prefill_s"] = timed(prefill, ids)
    st["stage"] = "decode"
    toks, r["decode_s"] = timed(decode, logits, cache, a.new_tokens)
    r["peak_gib"] = peak()
    del logits, cache
    if cuda:
        torch.cuda.empty_cache(), torch.cuda.reset_peak_memory_stats()
    st["stage"] = "generate"
    _, r["generate_1_s"] = timed(generate, ids, 1)  # its prefill and first token
    out, r["generate_s"] = timed(generate, ids, a.new_tokens + 1)
    r["peak_generate_gib"] = peak()
    gen = out[:, a.context:]
    r["generate_agree"] = (gen == toks).float().mean().item() if gen.shape == toks.shape else 0.0
    return r

B = a.batch
while True:
    st, r = {}, None
    try:
        with torch.inference_mode():
            r = run(B, st)
    except torch.cuda.OutOfMemoryError:
        pass
    if r is not None:
        break
    gc.collect()
    if cuda:
        torch.cuda.empty_cache()
    print(f"hf_generate_bench: out of memory at batch {B}, context {a.context} ({st['stage']})", flush=True)
    if not a.batch_halve_on_oom or B == 1:
        sys.exit(3)
    B //= 2
    print(f"hf_generate_bench: retrying at batch {B}", flush=True)

n, N = B * a.context, B * a.new_tokens
r.update(model=a.model, model_type=cfg.model_type, params=sum(p.numel() for p in model.parameters()),
         batch=B, batch_requested=a.batch, context=a.context, new_tokens=a.new_tokens, seed=a.seed, dtype=a.dtype,
         attn=a.attn, prefill_chunk=a.prefill_chunk, generate_prefill_chunked=bool(gen_chunk),
         device=torch.cuda.get_device_name() if cuda else dev, torch=torch.__version__,
         transformers=transformers.__version__)
r["prefill_tok_s"] = n / r["prefill_s"]
r["decode_tok_s"] = N / r["decode_s"]
r["decode_ms_per_step"] = 1e3 * r["decode_s"] / a.new_tokens
gd = r["generate_s"] - r["generate_1_s"]
r["generate_decode_tok_s"] = N / gd if gd > 0 else float("nan")
print(f"hf-generate: {a.model} ({cfg.model_type}, {r['params'] / 1e9:.2f}B params, {a.dtype}, {a.attn}), "
      f"{B} sequences x {a.context} tokens, {a.new_tokens} new tokens, on {r['device']}"
      f" (torch {torch.__version__}, transformers {transformers.__version__})")
chunk = f", chunks of {a.prefill_chunk}" if a.prefill_chunk else ", one forward"
print(f"prefill: {r['prefill_s']:.3f} s, {r['prefill_tok_s']:.1f} tok/s ({n} tokens{chunk})")
print(f"decode (manual loop, DynamicCache): {r['decode_s']:.3f} s, {r['decode_tok_s']:.1f} tok/s "
      f"({r['decode_ms_per_step']:.2f} ms per step)")
gp = "chunked" if gen_chunk else "one forward"
print(f"generate(): {r['generate_s']:.3f} s total (its own prefill: {gp}), decode {r['generate_decode_tok_s']:.1f} tok/s "
      f"(= {N} tokens / (generate of {a.new_tokens + 1} tokens - generate of 1: {r['generate_1_s']:.3f} s)); "
      f"greedy tokens agreeing with the manual loop: "
      f"{100 * r['generate_agree']:.1f}%")
print(f"peak memory {r['peak_gib']:.2f} GiB (prefill + manual decode), {r['peak_generate_gib']:.2f} GiB (generate)")
if a.json:
    with open(a.json, "w") as f:
        json.dump(r, f, indent=1)
