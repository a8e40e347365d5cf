#!/usr/bin/env python3
"""make_gguf_goldens.py -- tiny GGUF files written by gguf-py, and what transformers makes of them,
for postnas' GGUF reader / converter (src/pn_gguf.c, src/tools/postnas-convert.c).

Usage:
    /work/venv-smol/bin/python tests/make_gguf_goldens.py [--out tests/goldens/gguf]
                                                          [--corpus PATH/tinyshakespeare.txt]

Needs torch, transformers (written against 5.25), tokenizers (0.23), gguf (gguf-py 0.19),
safetensors and numpy.  Nothing is downloaded (HF_HUB_OFFLINE=1); everything runs on the CPU.
RAYON_NUM_THREADS=1 is set before `tokenizers` is imported and torch uses one thread, so a rerun
rewrites byte-identical files (the script's --check mode verifies that against the folder).

What it does, per case (see CASES below and the README.md it writes):

1. A byte-level BPE vocabulary is trained here with the `tokenizers` package on tinyshakespeare
   (ByteLevel pre-tokenizer, all 256 byte tokens, a few special tokens, ~350 tokens in all); its
   tokens (GPT-2 byte alphabet spelling) and merges ("a b") become the GGUF vocabulary.
2. A tiny random model (seeded numpy, std 0.05, norms around 1) is written with gguf-py's
   GGUFWriter under llama.cpp's tensor names and metadata keys.  Every tensor is converted with
   gguf-py's own `gguf.quants.quantize` and handed to `add_tensor(..., raw_dtype=...)`, which is
   what llama.cpp's convert_hf_to_gguf.py does, so the bytes are the ones llama.cpp tools write.
   Llama q/k rows are stored permuted the way llama.cpp's converter permutes them.
3. transformers loads the file (`from_pretrained(dir, gguf_file=..., dtype=torch.float32)`,
   `AutoTokenizer.from_pretrained(dir, gguf_file=...)`); every tensor it holds is saved
   (expected.safetensors), the logits of one sentence (logits.safetensors) and the ids of ~25
   strings (tokens.json).  The script also checks transformers' tensors bit for bit against its
   own numpy dequantization of the file's bytes (written from the block layouts, with its own
   q/k un-permutation).
"""

import argparse
import hashlib
import json
import os
import platform
import shutil
import sys

os.environ["RAYON_NUM_THREADS"] = "1"
os.environ["TOKENIZERS_PARALLELISM"] = "false"
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)

# ------------------------------------------------------------------------------------------------
# The vocabulary (shared by all cases)

N_MERGES = 87  # trained merges: 4 special + 256 bytes + 87 + 4 probe merges + 1 trailing control = 352 tokens
# Merges appended after the trained ones (ranks 87..90), each making one new token, so that the
# pipelines that transformers, llama.cpp and the original tokenizer.json files run can be told apart
# on this small vocabulary:
PROBE_MERGES = [
    ("\u0120", "1"),     # "Ġ1": GPT-2-style regexes keep a space before a number; smollm's digit split does not
    ("1", "2"),           # "12": a multi-digit token (smollm / qwen2 split every digit)
    ("\u0120", "("),     # "Ġ(": llama.cpp's `default` pre type isolates punctuation runs before anything else
    ("\u0120th", "en"),  # "Ġthen": BPE on " then" gives Ġthe + n, so only ignore_merges (llama-bpe) yields it
]
TRAIN_SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<think>"]  # ids 0..3
TAIL_CONTROL = "<|pad|>"  # appended after the merges: a control token at the end of the vocabulary
USER_DEFINED = {"<think>"}  # token_type 4; the other specials are 3 (CONTROL)

# Regexes of llama.cpp's pre-tokenizer types (src/llama-vocab.cpp, llm_tokenizer_bpe), applied in
# sequence, each one isolating its matches and keeping the text between them as pieces.
GPT2_RE = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)"
LLAMACPP_PRE = {
    "default": [r"[\p{P}\$\+<=>\^~\|]+", GPT2_RE, r"\p{N}+", r"[0-9][0-9][0-9]"],
    "gpt2": [GPT2_RE],
    "llama-bpe": [r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}"
                  r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"],
    "qwen2": [r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}"
              r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"],
    "smollm": [r"\p{N}", GPT2_RE],
}
LLAMACPP_IGNORE_MERGES = {"llama-bpe"}  # llama.cpp sets ignore_merges for the llama3 family only

# The original model families' tokenizer.json pipelines (what the pre type stands for):
LLAMA3_SPLIT = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
                r"|\s*[\r\n]+|\s+(?!\S)|\s+")
QWEN2_SPLIT = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
               r"|\s*[\r\n]+|\s+(?!\S)|\s+")


def _bl(use_regex):
    return {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": use_regex}


def _split(rx):
    return {"type": "Split", "pattern": {"Regex": rx}, "behavior": "Isolated", "invert": False}


ORIGINAL_PIPELINE = {
    # pre -> (normalizer, pre_tokenizer, ignore_merges, description)
    "default": (None, _bl(True), False, "GPT-2's tokenizer.json: ByteLevel(use_regex=true)"),
    "gpt2": (None, _bl(True), False, "GPT-2's tokenizer.json: ByteLevel(use_regex=true)"),
    "llama-bpe": (None, {"type": "Sequence", "pretokenizers": [_split(LLAMA3_SPLIT), _bl(False)]}, True,
                  "Llama 3's tokenizer.json: Split(llama3 regex, Isolated) + ByteLevel(use_regex=false), BPE ignore_merges=true"),
    "qwen2": ({"type": "NFC"}, {"type": "Sequence", "pretokenizers": [_split(QWEN2_SPLIT), _bl(False)]}, False,
              "Qwen2's tokenizer.json: normalizer NFC, Split(qwen2 regex, Isolated) + ByteLevel(use_regex=false)"),
    "smollm": (None, {"type": "Sequence", "pretokenizers": [{"type": "Digits", "individual_digits": True}, _bl(True)]},
               False, "SmolLM's tokenizer.json: Digits(individual_digits=true) + ByteLevel(use_regex=true)"),
}

# ------------------------------------------------------------------------------------------------
# The cases

HIDDEN, LAYERS, HEADS, KV_HEADS, HEAD_DIM, INTER = 64, 2, 4, 2, 16, 128

CASES = {
    "llama_q4_0": dict(
        arch="llama", seed=1, pre="llama-bpe", add_bos=True, bos=1, eos=2, unk=0, pad=2, tied=True,
        linear="Q4_0", embd="F16", output=None, rope_theta=10000.0, eps=1e-5,
        about="Llama, GQA 4/2 (head_dim 16), q/k stored permuted (llama.cpp), linear weights Q4_0, "
              "token_embd F16, norms F32, tied (no output.weight), pre llama-bpe, add_bos_token true"),
    "llama_bf16_untied": dict(
        arch="llama", seed=2, pre="smollm", add_bos=False, bos=1, eos=2, unk=0, pad="last", tied=False,
        linear="BF16", embd="Q8_0", output="Q4_1", rope_theta=100000.0, eps=1e-5,
        about="Llama, GQA 4/2, q/k permuted, linear weights BF16, token_embd Q8_0, output.weight Q4_1 "
              "(untied), norms F32, pre smollm, add_bos_token false"),
    "qwen2_q8_0": dict(
        arch="qwen2", seed=3, pre="qwen2", add_bos=False, bos=0, eos=2, unk=None, pad=0, tied=True,
        linear="Q8_0", embd="F32", output=None, rope_theta=1000000.0, eps=1e-6,
        about="Qwen2, GQA 4/2 (head_dim 16), q/k/v biases F32, linear weights Q8_0, token_embd F32, "
              "norms F32, tied, pre qwen2, add_bos_token false"),
    "qwen3_q4_1": dict(
        arch="qwen3", seed=4, pre="default", add_bos=False, bos=0, eos=2, unk=None, pad="last", tied=True,
        linear="Q4_1", embd="Q4_0", output=None, rope_theta=1000000.0, eps=1e-6, heads=2, kv_heads=1,
        head_dim=128,
        about="Qwen3, GQA 2/1 with head_dim 128 (q width 256 != hidden 64; attention.key_length = 128), "
              "q_norm/k_norm F32 [128], linear weights Q4_1, token_embd Q4_0, norms F32, tied, pre default, "
              "add_bos_token false"),
}

LOGITS_TEXT = "To be, or not to be: that is the question."

TOKEN_CASES = [
    ("hello", "Hello world"),
    ("shakespeare", "To be, or not to be: that is the question."),
    ("speaker", "KING RICHARD III:\nNow is the winter of our discontent"),
    ("digits_12345", "12345"),
    ("two_spaces_digit", "x  12"),
    ("year", "in the year 2024, 1,000,000 and 3.14159"),
    ("empty", ""),
    ("single_space", " "),
    ("leading_spaces", "   three leading spaces"),
    ("trailing_spaces", "trailing spaces   "),
    ("newlines", "line one\nline two\n\nline four\n"),
    ("only_newlines", "\n\n\n"),
    ("tabs_crlf", "tab\there\r\nand\r\n\tthere"),
    ("contractions", "don't I'LL we've she'd THEY'RE"),
    ("punct_spaces", "Nay, (good sir) [x] {y} -- 'tis \"so\"!?"),
    ("symbols", "a+b=c; x^2 | y~z $5 <tag> @home #1 100%"),
    ("code", "    def f(x):\n        return x * 2\n"),
    ("special_embedded", "<|im_start|>user\nhello<|im_end|>\n<|im_start|>assistant\n"),
    ("special_glued", "word<|endoftext|>word <|pad|> end"),
    ("user_defined", "<think>maybe</think> so"),
    ("accents_nfc", "caf\u00e9 na\u00efve r\u00e9sum\u00e9"),
    ("accents_combining", "cafe\u0301 and A\u030a"),
    ("numerics_unicode", "\u00bd cup, \u2167 and \u0663"),
    ("emoji_cjk", "hi \U0001F44D \u6771\u4eac"),
    ("long_word", "honorificabilitudinitatibus"),
    ("then_best", "and then, the best of them then"),
    ("numbers_spaces", "x 12 and (12) 1212 ( 1"),
]

# ggml type ids (gguf-py GGMLQuantizationType)
GGML_NAMES = {0: "F32", 1: "F16", 2: "Q4_0", 3: "Q4_1", 8: "Q8_0", 30: "BF16"}
FILE_TYPE = {"F32": 0, "F16": 1, "Q4_0": 2, "Q4_1": 3, "Q8_0": 7, "BF16": 32}  # llama.cpp LlamaFileType


# ------------------------------------------------------------------------------------------------
# vocabulary

def train_vocab(corpus):
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    alphabet = pre_tokenizers.ByteLevel.alphabet()
    n_target = len(TRAIN_SPECIALS) + len(alphabet) + N_MERGES
    trainer = trainers.BpeTrainer(vocab_size=n_target, min_frequency=2, special_tokens=TRAIN_SPECIALS,
                                  initial_alphabet=alphabet, show_progress=False)
    with open(corpus, encoding="utf-8") as f:
        text = f.read()
    tok.train_from_iterator(text.split("\n"), trainer)
    js = json.loads(tok.to_str())
    vocab = js["model"]["vocab"]
    tokens = [None] * len(vocab)
    for t, i in vocab.items():
        tokens[i] = t
    assert all(t is not None for t in tokens) and len(tokens) == n_target, len(tokens)
    merges = [m if isinstance(m, str) else " ".join(m) for m in js["model"]["merges"]]
    assert len(merges) == N_MERGES, len(merges)
    for a, b in PROBE_MERGES:
        assert a in tokens and b in tokens and a + b not in tokens, (a, b)
        merges.append(f"{a} {b}")
        tokens.append(a + b)
    tokens.append(TAIL_CONTROL)
    types = []
    for t in tokens:
        if t in USER_DEFINED:
            types.append(4)
        elif t in TRAIN_SPECIALS or t == TAIL_CONTROL:
            types.append(3)
        else:
            types.append(1)
    return tokens, merges, types


# ------------------------------------------------------------------------------------------------
# weights

def case_dims(c):
    return dict(hidden=HIDDEN, layers=LAYERS, heads=c.get("heads", HEADS), kv_heads=c.get("kv_heads", KV_HEADS),
                head_dim=c.get("head_dim", HEAD_DIM), inter=INTER)


def make_weights(c, vocab):
    """HF-named float32 tensors in HF layout, in a fixed order."""
    d = case_dims(c)
    rng = np.random.default_rng(1000 + c["seed"])
    H, I, hd = d["hidden"], d["inter"], d["head_dim"]
    nq, nkv = d["heads"] * hd, d["kv_heads"] * hd

    def lin(o, i):
        return (rng.standard_normal((o, i)) * 0.05).astype(np.float32)

    def norm(n):
        return (1.0 + rng.standard_normal(n) * 0.1).astype(np.float32)

    def bias(n):
        return (rng.standard_normal(n) * 0.1).astype(np.float32)

    w = {"model.embed_tokens.weight": (rng.standard_normal((vocab, H)) * 0.5).astype(np.float32)}
    for l in range(d["layers"]):
        p = f"model.layers.{l}."
        w[p + "input_layernorm.weight"] = norm(H)
        w[p + "self_attn.q_proj.weight"] = lin(nq, H)
        w[p + "self_attn.k_proj.weight"] = lin(nkv, H)
        w[p + "self_attn.v_proj.weight"] = lin(nkv, H)
        if c["arch"] == "qwen2":
            w[p + "self_attn.q_proj.bias"] = bias(nq)
            w[p + "self_attn.k_proj.bias"] = bias(nkv)
            w[p + "self_attn.v_proj.bias"] = bias(nkv)
        if c["arch"] == "qwen3":
            w[p + "self_attn.q_norm.weight"] = norm(hd)
            w[p + "self_attn.k_norm.weight"] = norm(hd)
        w[p + "self_attn.o_proj.weight"] = lin(H, nq)
        w[p + "post_attention_layernorm.weight"] = norm(H)
        w[p + "mlp.gate_proj.weight"] = lin(I, H)
        w[p + "mlp.up_proj.weight"] = lin(I, H)
        w[p + "mlp.down_proj.weight"] = lin(H, I)
    w["model.norm.weight"] = norm(H)
    if not c["tied"]:
        w["lm_head.weight"] = (rng.standard_normal((vocab, H)) * 0.05).astype(np.float32)
    return w


HF_TO_GGUF_LEAF = {
    "input_layernorm.weight": "attn_norm.weight", "post_attention_layernorm.weight": "ffn_norm.weight",
    "self_attn.q_proj.weight": "attn_q.weight", "self_attn.k_proj.weight": "attn_k.weight",
    "self_attn.v_proj.weight": "attn_v.weight", "self_attn.o_proj.weight": "attn_output.weight",
    "self_attn.q_proj.bias": "attn_q.bias", "self_attn.k_proj.bias": "attn_k.bias",
    "self_attn.v_proj.bias": "attn_v.bias",
    "self_attn.q_norm.weight": "attn_q_norm.weight", "self_attn.k_norm.weight": "attn_k_norm.weight",
    "mlp.gate_proj.weight": "ffn_gate.weight", "mlp.up_proj.weight": "ffn_up.weight",
    "mlp.down_proj.weight": "ffn_down.weight",
}


def gguf_name(hf):
    if hf == "model.embed_tokens.weight":
        return "token_embd.weight"
    if hf == "model.norm.weight":
        return "output_norm.weight"
    if hf == "lm_head.weight":
        return "output.weight"
    _, _, l, leaf = hf.split(".", 3)
    return f"blk.{l}.{HF_TO_GGUF_LEAF[leaf]}"


def tensor_type(c, hf, arr):
    if hf == "model.embed_tokens.weight":
        return c["embd"]
    if hf == "lm_head.weight":
        return c["output"]
    if arr.ndim == 1:
        return "F32"  # norms and biases: llama.cpp keeps 1-D tensors in F32
    return c["linear"]


def llamacpp_permute(w, n_head):
    """llama.cpp's LlamaModel.permute: within each head, HF row j*hd/2 + i goes to row 2i + j."""
    hd = w.shape[0] // n_head
    return w.reshape(n_head, 2, hd // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


# ------------------------------------------------------------------------------------------------
# own dequantization (block layouts) and un-permutation, to check transformers independently

def own_dequant(raw, tname, n):
    b = np.ascontiguousarray(raw).view(np.uint8).ravel()
    if tname == "F32":
        return b.view("<f4").copy()
    if tname == "F16":
        return b.view("<f2").astype(np.float32)
    if tname == "BF16":
        return (b.view("<u2").astype(np.uint32) << 16).view(np.float32)
    if tname == "Q8_0":
        k = b.reshape(-1, 34)
        d = k[:, :2].copy().view("<f2").astype(np.float32)
        return (k[:, 2:].view(np.int8).astype(np.float32) * d).astype(np.float32).ravel()
    if tname == "Q4_0":
        k = b.reshape(-1, 18)
        d = k[:, :2].copy().view("<f2").astype(np.float32)
        qs = k[:, 2:]
        q = np.concatenate([qs & 15, qs >> 4], axis=1).astype(np.float32) - 8.0
        return (q * d).astype(np.float32).ravel()
    if tname == "Q4_1":
        k = b.reshape(-1, 20)
        d = k[:, 0:2].copy().view("<f2").astype(np.float32)
        m = k[:, 2:4].copy().view("<f2").astype(np.float32)
        qs = k[:, 4:]
        q = np.concatenate([qs & 15, qs >> 4], axis=1).astype(np.float32)
        return ((q * d).astype(np.float32) + m).astype(np.float32).ravel()
    raise ValueError(tname)


def own_unpermute(w, n_head):
    hd = w.shape[0] // n_head
    out = np.empty_like(w)
    for h in range(n_head):
        for j in range(2):
            for i in range(hd // 2):
                out[h * hd + j * (hd // 2) + i] = w[h * hd + 2 * i + j]
    return out


# ------------------------------------------------------------------------------------------------

def write_gguf(path, name, c, weights, tokens, merges, types):
    import gguf
    from gguf import GGMLQuantizationType as Q
    d = case_dims(c)
    arch = c["arch"]
    wr = gguf.GGUFWriter(path, arch)
    wr.add_type("model")
    wr.add_name(f"postnas gguf golden {name}")
    wr.add_block_count(d["layers"])
    wr.add_context_length(256)
    wr.add_embedding_length(d["hidden"])
    wr.add_feed_forward_length(d["inter"])
    wr.add_head_count(d["heads"])
    wr.add_head_count_kv(d["kv_heads"])
    wr.add_rope_freq_base(c["rope_theta"])
    wr.add_layer_norm_rms_eps(c["eps"])
    wr.add_file_type(FILE_TYPE[c["linear"]])
    wr.add_vocab_size(len(tokens))
    if arch == "llama":
        wr.add_rope_dimension_count(d["head_dim"])
    if arch == "qwen3":
        wr.add_key_length(d["head_dim"])
        wr.add_value_length(d["head_dim"])
    wr.add_tokenizer_model("gpt2")
    wr.add_tokenizer_pre(c["pre"])
    wr.add_token_list(tokens)
    wr.add_token_types(types)
    wr.add_token_merges(merges)
    wr.add_bos_token_id(c["bos"])
    wr.add_eos_token_id(c["eos"])
    if c["unk"] is not None:
        wr.add_unk_token_id(c["unk"])
    wr.add_pad_token_id(c["pad"])
    wr.add_add_bos_token(c["add_bos"])
    wr.add_quantization_version(gguf.GGML_QUANT_VERSION)
    stored = {}
    for hf, w in weights.items():
        if arch == "llama" and hf.endswith("self_attn.q_proj.weight"):
            w = llamacpp_permute(w, d["heads"])
        elif arch == "llama" and hf.endswith("self_attn.k_proj.weight"):
            w = llamacpp_permute(w, d["kv_heads"])
        qt = getattr(Q, tensor_type(c, hf, w))
        data = gguf.quants.quantize(w, qt)
        wr.add_tensor(gguf_name(hf), data, raw_dtype=qt)
        stored[gguf_name(hf)] = w
    wr.write_header_to_file()
    wr.write_kv_data_to_file()
    wr.write_tensors_to_file()
    wr.close()
    return stored


def build_pipeline_tokenizer(hf_tok_json, normalizer, pre_tokenizer, ignore_merges):
    from tokenizers import Tokenizer
    js = json.loads(hf_tok_json)
    js["normalizer"] = normalizer
    js["pre_tokenizer"] = pre_tokenizer
    js["model"]["ignore_merges"] = ignore_merges
    return Tokenizer.from_str(json.dumps(js))


def llamacpp_tokenizer(hf_tok_json, pre):
    rxs = LLAMACPP_PRE[pre]
    pt = {"type": "Sequence", "pretokenizers": [_split(r) for r in rxs] + [_bl(False)]}
    return build_pipeline_tokenizer(hf_tok_json, None, pt, pre in LLAMACPP_IGNORE_MERGES)


def do_case(name, c, out, tokens, merges, types, versions):
    import torch
    import gguf
    from safetensors.numpy import save_file
    from transformers import AutoModelForCausalLM, AutoTokenizer

    c = dict(c)
    if c["pad"] == "last":
        c["pad"] = len(tokens) - 1
    cdir = os.path.join(out, name)
    os.makedirs(cdir, exist_ok=True)
    gpath = os.path.join(cdir, "model.gguf")
    weights = make_weights(c, len(tokens))
    stored = write_gguf(gpath, name, c, weights, tokens, merges, types)

    # -- own reading of the file (gguf-py's reader only for the tensor byte ranges)
    reader = gguf.GGUFReader(gpath)
    d = case_dims(c)
    own = {}
    tinfo = []
    for t in reader.tensors:
        tname = GGML_NAMES[int(t.tensor_type)]
        ne = [int(x) for x in t.shape]
        n = int(np.prod(ne))
        v = own_dequant(t.data, tname, n).reshape(list(reversed(ne)))
        if c["arch"] == "llama" and t.name.endswith("attn_q.weight"):
            v = own_unpermute(v, d["heads"])
        elif c["arch"] == "llama" and t.name.endswith("attn_k.weight"):
            v = own_unpermute(v, d["kv_heads"])
        own[t.name] = v
        tinfo.append({"gguf": t.name, "type": tname, "ne": ne, "offset": int(t.data_offset - reader.data_offset)})

    # -- transformers
    model = AutoModelForCausalLM.from_pretrained(cdir, gguf_file="model.gguf", dtype=torch.float32)
    model.eval()
    tok = AutoTokenizer.from_pretrained(cdir, gguf_file="model.gguf")
    cfg = model.config
    sd = model.state_dict()
    expected = {}
    for k, v in sd.items():
        if k == "lm_head.weight" and cfg.tie_word_embeddings:
            assert v.data_ptr() == sd["model.embed_tokens.weight"].data_ptr()
            continue
        expected[k] = np.ascontiguousarray(v.detach().cpu().numpy().astype(np.float32))
    assert set(expected) == set(weights), (sorted(set(expected) ^ set(weights)))
    names = {}
    for k in expected:
        g = gguf_name(k)
        names[k] = g
        a, b = expected[k], own[g]
        assert a.shape == b.shape, (k, a.shape, b.shape)
        assert a.tobytes() == b.tobytes(), f"{name}: {k}: transformers differs from own dequantization"
        # sanity: the quantized values are close to the random float weights (in HF layout)
        err = float(np.abs(a - weights[k]).max())
        scale = float(np.abs(weights[k]).max())
        assert err <= 0.2 * scale + 1e-6, (k, err, scale)
    save_file(expected, os.path.join(cdir, "expected.safetensors"))
    os.chmod(os.path.join(cdir, "expected.safetensors"), 0o644)  # save_file leaves 0600

    # -- logits
    ids = tok(LOGITS_TEXT)["input_ids"]
    with torch.no_grad():
        x = torch.tensor([ids], dtype=torch.long)
        lg = model(input_ids=x, attention_mask=torch.ones_like(x), use_cache=False).logits[0].float()
        # float64 copy of the same weights, for the accuracy note
        cfg64 = model.config.__class__.from_dict(model.config.to_dict())
        if hasattr(cfg64, "quantization_config"):
            del cfg64.quantization_config
        m64 = model.__class__(cfg64)
        m64.load_state_dict(model.state_dict())
        m64 = m64.double().eval()
        lg64 = m64(input_ids=x, attention_mask=torch.ones_like(x), use_cache=False).logits[0]
    f64diff = float((lg.double() - lg64).abs().max())
    save_file({"ids": np.array(ids, dtype=np.int32), "logits": np.ascontiguousarray(lg.numpy().astype(np.float32))},
              os.path.join(cdir, "logits.safetensors"))
    os.chmod(os.path.join(cdir, "logits.safetensors"), 0o644)

    # -- tokens
    hf_json = tok.backend_tokenizer.to_str()
    lc_tok = llamacpp_tokenizer(hf_json, c["pre"])
    onorm, opre, oign, odesc = ORIGINAL_PIPELINE[c["pre"]]
    or_tok = build_pipeline_tokenizer(hf_json, onorm, opre, oign)
    post = json.loads(hf_json)["post_processor"]
    tcases = []
    n_diff_lc = n_diff_or = 0
    for tname, text in TOKEN_CASES:
        e = {"name": tname, "text": text,
             "ids": tok(text)["input_ids"],
             "ids_no_special": tok(text, add_special_tokens=False)["input_ids"]}
        lc = lc_tok.encode(text, add_special_tokens=True).ids
        lcn = lc_tok.encode(text, add_special_tokens=False).ids
        orr = or_tok.encode(text, add_special_tokens=True).ids
        orn = or_tok.encode(text, add_special_tokens=False).ids
        if lc != e["ids"] or lcn != e["ids_no_special"]:
            e["ids_llamacpp"], e["ids_no_special_llamacpp"] = lc, lcn
            n_diff_lc += 1
        if orr != e["ids"] or orn != e["ids_no_special"]:
            e["ids_original"], e["ids_no_special_original"] = orr, orn
            n_diff_or += 1
        tcases.append(e)
    hf_js = json.loads(hf_json)
    tok_desc = {
        "tokenizer": "transformers AutoTokenizer.from_pretrained(dir, gguf_file='model.gguf') "
                     f"({type(tok).__name__}); pre_tokenizer {json.dumps(hf_js['pre_tokenizer'])}; "
                     f"normalizer {json.dumps(hf_js['normalizer'])}; BPE ignore_merges "
                     f"{json.dumps(hf_js['model'].get('ignore_merges'))}; post_processor "
                     f"{json.dumps(post)}",
        "ids": "tok(text)['input_ids'] (add_special_tokens=True, the default)",
        "ids_no_special": "tok(text, add_special_tokens=False)['input_ids']",
        "ids_llamacpp": "present only where it differs (then both *_llamacpp fields are given): the same vocabulary, "
                        "merges, added tokens and post-processor with llama.cpp's pre-tokenization for "
                        f"tokenizer.ggml.pre = {c['pre']!r} (regexes {json.dumps(LLAMACPP_PRE[c['pre']])} each "
                        "isolating its matches in turn, then bytes -> GPT-2 alphabet; ignore_merges "
                        f"{c['pre'] in LLAMACPP_IGNORE_MERGES}; no normalizer), emulated with the tokenizers package",
        "ids_original": "present only where it differs (then both *_original fields are given): the pipeline of the "
                        f"model family's own tokenizer.json that this pre type stands for: {odesc}",
        "pre": c["pre"],
        "add_bos_token": c["add_bos"],
        "n_cases_llamacpp_differs": n_diff_lc,
        "n_cases_original_differs": n_diff_or,
        "cases": tcases,
    }
    _dump_json(os.path.join(cdir, "tokens.json"), tok_desc, one_line_items=True)

    # -- case.json
    cfgd = {k: getattr(cfg, k, None) for k in ("model_type", "hidden_size", "num_hidden_layers", "num_attention_heads",
                                                 "num_key_value_heads", "head_dim", "intermediate_size", "vocab_size",
                                                 "max_position_embeddings", "rms_norm_eps", "tie_word_embeddings",
                                                 "bos_token_id", "eos_token_id", "pad_token_id", "hidden_act")}
    cfgd["rope_theta"] = (getattr(cfg, "rope_parameters", None) or {}).get("rope_theta", getattr(cfg, "rope_theta", None))
    cfgd["class"] = type(model).__name__
    info = {
        "about": c["about"],
        "arch": c["arch"],
        "gguf_sha256": _sha256(gpath),
        "gguf_bytes": os.path.getsize(gpath),
        "data_section_offset": int(reader.data_offset),
        "tokenizer_pre": c["pre"],
        "add_bos_token": c["add_bos"],
        "special_ids": {"bos": c["bos"], "eos": c["eos"], "unk": c["unk"], "pad": c["pad"]},
        "transformers_config": cfgd,
        "logits_text": LOGITS_TEXT,
        "logits_T": len(ids),
        "logits_max_abs_diff_vs_float64": f64diff,
        "logits_max_abs": float(lg.abs().max()),
        "tensors": [dict(ti, hf=[k for k, g in names.items() if g == ti["gguf"]][0],
                         hf_shape=list(reversed(ti["ne"])),
                         permuted_rows_heads=(d["heads"] if ti["gguf"].endswith("attn_q.weight") else d["kv_heads"])
                         if c["arch"] == "llama" and ti["gguf"].endswith(("attn_q.weight", "attn_k.weight")) else None)
                    for ti in tinfo],
    }
    _dump_json(os.path.join(cdir, "case.json"), info)
    return info, tok_desc


def _sha256(p):
    with open(p, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def _dist_version(name):
    try:
        from importlib.metadata import version
        return version(name)
    except Exception:
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


def write_readme(out, versions, infos, toks, vocab_info):
    L = []
    a = L.append
    a("# GGUF goldens")
    a("")
    a("Written by `tests/make_gguf_goldens.py`; do not edit by hand. Rerun (CPU, under a minute):")
    a("")
    a("    /work/venv-smol/bin/python tests/make_gguf_goldens.py [--out tests/goldens/gguf]")
    a("")
    a("A rerun writes byte-identical files (torch runs on one thread; `tokenizers` training with "
      "RAYON_NUM_THREADS=1). `--check` regenerates into a temporary folder and compares every file.")
    a("")
    a("## Versions")
    a("")
    for k, v in versions.items():
        a(f"- {k}: {v}")
    a("")
    a("## What the files are")
    a("")
    a("Each case folder holds:")
    a("")
    a("- `model.gguf`: a tiny random model written by gguf-py's `GGUFWriter` (GGUF v3, alignment 32). "
      "Tensors were converted with gguf-py's `gguf.quants.quantize` and added with "
      "`add_tensor(name, data, raw_dtype=type)` exactly as llama.cpp's convert_hf_to_gguf.py does, so the bytes "
      "are those llama.cpp tools write (Q4_0's d is max/-8, i.e. usually negative; BF16 rounds to nearest even). "
      "Metadata: general.architecture/type/name/file_type/quantization_version, `<arch>.block_count, "
      "context_length (256), embedding_length, feed_forward_length, attention.head_count, "
      "attention.head_count_kv, rope.freq_base, attention.layer_norm_rms_epsilon, vocab_size`, plus "
      "`llama.rope.dimension_count` (llama) or `qwen3.attention.key_length/value_length` (qwen3); "
      "`tokenizer.ggml.model = gpt2, pre, tokens, token_type, merges, bos/eos/(unknown)/padding_token_id, "
      "add_bos_token`. Llama q/k rows are stored permuted as llama.cpp's converter permutes them "
      "(HF row h*hd + j*hd/2 + i is GGUF row h*hd + 2i + j; n = head_count for q, head_count_kv for k).")
    a("- `expected.safetensors`: every tensor of transformers' model after "
      "`AutoModelForCausalLM.from_pretrained(dir, gguf_file='model.gguf', dtype=torch.float32)` (state_dict; "
      "F32, HF names and shapes, q/k un-permuted by transformers). For tied models `lm_head.weight` is "
      "left out (it is the same tensor as `model.embed_tokens.weight`). The script checks each one bit for bit "
      "against its own numpy dequantization of the file's blocks (+ its own un-permutation): a converter must "
      "match these bit for bit.")
    a(f"- `logits.safetensors`: `ids` I32 [T] = `tok({LOGITS_TEXT!r})['input_ids']` (default "
      "add_special_tokens) and `logits` F32 [T, vocab] of that model (float32, CPU, one thread, explicit "
      "all-ones attention_mask, positions 0..T-1). A float64 rerun of the same (dequantized) weights differs "
      f"by at most {max(i['logits_max_abs_diff_vs_float64'] for i in infos.values()):.1e} "
      f"(`logits_max_abs_diff_vs_float64` of each case.json; logits reach |x| = "
      f"{max(i['logits_max_abs'] for i in infos.values()):.1f}): compare a C float32 forward with a "
      "tolerance of a few 1e-5.")
    a("- `tokens.json`: for each string, `ids` (transformers' GGUF tokenizer, add_special_tokens=True) and "
      "`ids_no_special` (=False); where another pipeline gives other ids: `ids_llamacpp` / "
      "`ids_no_special_llamacpp` (llama.cpp's pre-tokenizer for this `tokenizer.ggml.pre`, emulated with the "
      "`tokenizers` package) and `ids_original` / `ids_no_special_original` (the pipeline of the original "
      "tokenizer.json of the model family the pre type names). The header of the file spells out each pipeline.")
    a("- `case.json`: the case in words, the config transformers built, and every tensor: GGUF name, ggml type, "
      "ne (ggml order), byte offset inside the data section, HF name and shape, and for llama q/k the head "
      "count of the permutation.")
    a("")
    a("## Vocabulary (all cases)")
    a("")
    a(vocab_info)
    a("")
    a("## Cases")
    a("")
    a("| case | arch | tensors | pre | add_bos | bos/eos/unk/pad | T | file bytes |")
    a("|---|---|---|---|---|---|---|---|")
    for name, info in infos.items():
        types = {}
        for t in info["tensors"]:
            g = t["gguf"]
            short = g.split(".", 2)[2] if g.startswith("blk.") else g
            short = short[:-len(".weight")] if short.endswith(".weight") else short
            types.setdefault(t["type"], set()).add(short)
        tdesc = "; ".join(f"{k}: {', '.join(sorted(v))}" for k, v in sorted(types.items()))
        s = info["special_ids"]
        a(f"| `{name}` | {info['arch']} | {tdesc} | `{info['tokenizer_pre']}` | {str(info['add_bos_token']).lower()} | "
          f"{s['bos']}/{s['eos']}/{s['unk'] if s['unk'] is not None else '-'}/{s['pad']} | {info['logits_T']} | "
          f"{info['gguf_bytes']} |")
    a("")
    for name, info in infos.items():
        cfg = info["transformers_config"]
        a(f"- `{name}`: {info['about']}. transformers: {cfg['class']}, hidden {cfg['hidden_size']}, "
          f"{cfg['num_hidden_layers']} layers, heads {cfg['num_attention_heads']}/{cfg['num_key_value_heads']}, "
          f"head_dim {cfg['head_dim'] or cfg['hidden_size'] // cfg['num_attention_heads']}, intermediate {cfg['intermediate_size']}, vocab {cfg['vocab_size']}, "
          f"rope_theta {cfg['rope_theta']}, rms_norm_eps {cfg['rms_norm_eps']!r}, tied {cfg['tie_word_embeddings']}. "
          f"tokens.json: llama.cpp pre-tokenization differs on {toks[name]['n_cases_llamacpp_differs']} of "
          f"{len(TOKEN_CASES)} strings, the original tokenizer.json pipeline on "
          f"{toks[name]['n_cases_original_differs']}.")
    a("")
    a("## What transformers does (5.25) that a converter has to know")
    a("")
    a("- Qwen3: transformers ignores `qwen3.attention.key_length` (its GGUF config map has no entry for it) "
      "and keeps Qwen3Config's default head_dim 128. A Qwen3 GGUF with any other head_dim does not load "
      "(q_proj/k_norm shape mismatch). So `qwen3_q4_1` uses head_dim 128 (2 heads / 1 kv head, hidden 64, "
      "q width 256): the only Qwen3 shape transformers can load, and one where head_dim != hidden/heads, so "
      "a converter must take head_dim from `attention.key_length`.")
    a("- Tokenizer: `tokenizer.ggml.model = gpt2` becomes a GPT2Tokenizer (BPE without unk token, "
      "ByteLevel(add_prefix_space=false, use_regex=true) pre-tokenizer, no normalizer, ignore_merges false); "
      "for pre types it knows (llama-bpe, llama3, qwen2, ...) the pre-tokenizer is replaced by "
      "Split(regex, Isolated) + ByteLevel(use_regex=false). It knows neither `smollm` (no digit split: "
      "see `ids_original`/`ids_llamacpp` of llama_bf16_untied) nor `default` (plain GPT-2 regex; llama.cpp's "
      "`default` type runs four regexes, punctuation runs first, see `ids_llamacpp` of qwen3_q4_1). It adds no "
      "NFC normalizer for qwen2 (Qwen2's tokenizer.json has one) and no ignore_merges for llama-bpe (Llama 3's "
      "tokenizer.json and llama.cpp have it). Token type 3 (CONTROL) -> special added token, 4 "
      "(USER_DEFINED) -> non-special added token, both normalized=false.")
    a("- `add_bos_token` true -> the post-processor prepends bos (llama_q4_0); false -> nothing is added.")
    a("")
    with open(os.path.join(out, "README.md"), "w", encoding="utf-8", newline="\n") as f:
        f.write("\n".join(L))


def generate(out, corpus):
    import torch
    import transformers
    import tokenizers
    import gguf
    import safetensors

    torch.set_num_threads(1)
    transformers.utils.logging.disable_progress_bar()
    torch.manual_seed(0)
    os.makedirs(out, exist_ok=True)
    versions = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "tokenizers": tokenizers.__version__,
        "gguf (gguf-py)": _dist_version("gguf"),
        "safetensors": safetensors.__version__,
        "numpy": np.__version__,
        "accelerate": _dist_version("accelerate"),
    }
    tokens, merges, types = train_vocab(corpus)
    nb = len(TRAIN_SPECIALS) + 256
    vocab_info = (f"{len(tokens)} tokens: ids 0..3 `{TRAIN_SPECIALS}` (token_type 3, 3, 3 and 4 = USER_DEFINED for "
                  f"`<think>`), ids 4..{nb - 1} the 256 byte tokens (GPT-2 byte alphabet, in the order the `tokenizers` "
                  f"trainer gives them), ids {nb}..{nb + N_MERGES - 1} the {N_MERGES} trained merges (merge rank r made "
                  f"token {nb} + r), ids {nb + N_MERGES}..{nb + N_MERGES + len(PROBE_MERGES) - 1} four probe merges "
                  f"appended by hand ({', '.join('`' + a + ' ' + b + '`' for a, b in PROBE_MERGES)}: they make the "
                  f"digit split, llama.cpp's `default` punctuation split and llama-bpe's ignore_merges visible on this "
                  f"small vocabulary; `Ġthen` is a token that BPE merging never produces from ` then`), id "
                  f"{len(tokens) - 1} `{TAIL_CONTROL}` (CONTROL). Trained with tokenizers' BpeTrainer (ByteLevel "
                  f"pre-tokenizer with the GPT-2 regex, min_frequency 2) on tinyshakespeare.txt "
                  f"({os.path.getsize(corpus)} bytes, sha256 {_sha256(corpus)[:16]}..., split at newlines). The same "
                  f"vocabulary is used by every case; only the special ids and flags change. `tokenizer.ggml.merges` "
                  f"holds all {len(merges)} merges as \"a b\" (rank = index).")
    infos, toks = {}, {}
    for name, c in CASES.items():
        infos[name], toks[name] = do_case(name, c, out, tokens, merges, types, versions)
        print(f"{name}: ok ({infos[name]['gguf_bytes']} bytes gguf)", flush=True)
    # every one of the six types appears somewhere
    seen = {t["type"] for i in infos.values() for t in i["tensors"]}
    assert seen == set(GGML_NAMES.values()), seen
    write_readme(out, versions, infos, toks, vocab_info)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=os.path.join(REPO, "tests", "goldens", "gguf"))
    ap.add_argument("--corpus", default=os.path.join(os.path.dirname(REPO), "shared", "data", "corpora",
                                                     "tinyshakespeare.txt"))
    ap.add_argument("--check", action="store_true",
                    help="regenerate into a temporary folder and compare every file with --out (writes nothing there)")
    args = ap.parse_args()
    if not args.check:
        generate(args.out, args.corpus)
        print("wrote", args.out)
        return
    import tempfile
    tmp = tempfile.mkdtemp(prefix="gguf_goldens_")
    try:
        generate(tmp, args.corpus)
        bad = []
        for root, _, files in os.walk(tmp):
            for fn in files:
                p = os.path.join(root, fn)
                rel = os.path.relpath(p, tmp)
                q = os.path.join(args.out, rel)
                if not os.path.exists(q) or _sha256(p) != _sha256(q):
                    bad.append(rel)
        print("identical" if not bad else f"DIFFERENT: {bad}")
        sys.exit(1 if bad else 0)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
