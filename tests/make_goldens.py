#!/usr/bin/env python3
"""make_goldens.py -- reference ("golden") logits for the postnas C/CUDA engine.

Usage:
    python3 tests/make_goldens.py [--out tests/goldens] [--mkckpt PATH] [--only NAME ...]

Needs Python 3 with torch (CPU is enough), transformers (written against 5.x),
safetensors and numpy.  Nothing is downloaded: every model is built from a
config with random weights.

For each case a folder <out>/<name>/ is written with
    config.json          Hugging Face config, exactly as model.save_pretrained writes it
    model.safetensors    float32 weights (generation_config.json is deleted)
    logits.safetensors   ids    int32   [T]         one sequence, batch 1, positions 0..T-1
                         logits float32 [T, vocab]  model(ids[None]).logits[0]

Cases (all float32, attn_implementation="eager"):
    qwen2-tiny   Qwen2, hidden 64, 4 heads / 2 kv heads (head_dim 16), q/k/v bias,
                 tied embeddings, rope_theta 1e4, T = 11
    qwen3-tiny   Qwen3, hidden 64, head_dim 32 explicitly (q width 128 != hidden),
                 q_norm/k_norm, untied, rope_theta 1e6, T = 9
    llama-tiny   Llama, 4 heads / 1 kv head, untied, no biases, rope_theta 5e5 with
                 "llama3" rope scaling (factor 8, low 1, high 4, original_max 64:
                 at head_dim 16 inv_freq[0] is kept, inv_freq[1] is smoothed and
                 inv_freq[2..7] are divided by 8), T = 13
    qwen2-swa    Qwen2, 3 layers, use_sliding_window true, sliding_window 4,
                 max_window_layers 1 -> transformers' layer_types is
                 [full, sliding, sliding] (layer i is windowed iff i >= max_window_layers);
                 a query at position q sees keys k with q-4 < k <= q.  T = 16.
                 The script checks that the logits differ from the same weights
                 with use_sliding_window false (eager attention applies the window
                 through its additive mask).
    qwen2-bigvocab  only with --mkckpt PATH (the project's C checkpoint writer):
                 runs PATH --out TMP <args in mkckpt_args.txt>, loads TMP with
                 from_pretrained(dtype float32, eager), and stores only
                 mkckpt_args.txt and logits.safetensors with
                 ids int32 [T], logits_strided float32 [T, ceil(V/97)] = logits[:, ::97],
                 logsumexp float32 [T] (computed in float64), argmax int32 [T].
                 The checkpoint itself is not kept.

Weights: torch.manual_seed(case seed), then every parameter is overwritten from a
torch.Generator seeded with the case seed, visiting parameters in sorted-name
order: linear weights N(0, 0.08^2) (q_proj/k_proj N(0, 0.2^2) so attention is
peaked), embedding / lm_head N(0, 0.125^2) (logits std ~1), biases
N(0, 0.2^2) (q/k/v biases of Qwen2), every RMSNorm weight (input/post-attention/final/q_norm/k_norm)
1 + 0.2 N(0,1).  Token ids come from numpy RandomState(case seed) and always
include 0 and vocab-1.

Golden logits are computed from the model as re-loaded from the saved folder
(from_pretrained, float32, eager), and the script verifies that a second load
reproduces them bit-exactly.  Reruns give identical files (torch runs with one
thread).  With --weights-dtype bfloat16 the weights are rounded to and stored as
bf16 (halves the folder size); the logits are then those of the bf16 weights
upcast to float32.
"""

import argparse
import json
import math
import os
import shlex
import shutil
import subprocess
import sys
import tempfile

import numpy as np
import torch
from safetensors.torch import save_file, load_file

import transformers
from transformers import (
    AutoModelForCausalLM,
    LlamaConfig,
    LlamaForCausalLM,
    Qwen2Config,
    Qwen2ForCausalLM,
    Qwen3Config,
    Qwen3ForCausalLM,
)

LINEAR_STD = 0.08
QK_STD = 0.2
EMBED_STD = 0.125
BIAS_STD = 0.2
NORM_STD = 0.2

CASES = {
    "qwen2-tiny": dict(
        seed=1001, T=11, cls=Qwen2ForCausalLM, cfg_cls=Qwen2Config,
        cfg=dict(
            vocab_size=300, hidden_size=64, intermediate_size=160,
            num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
            max_position_embeddings=128, rms_norm_eps=1e-6,
            rope_parameters={"rope_type": "default", "rope_theta": 10000.0},
            tie_word_embeddings=True, use_sliding_window=False,
            bos_token_id=None, eos_token_id=None,
        ),
    ),
    "qwen3-tiny": dict(
        seed=1002, T=9, cls=Qwen3ForCausalLM, cfg_cls=Qwen3Config,
        cfg=dict(
            vocab_size=320, hidden_size=64, intermediate_size=128, head_dim=32,
            num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
            max_position_embeddings=128, rms_norm_eps=1e-6,
            rope_parameters={"rope_type": "default", "rope_theta": 1000000.0},
            tie_word_embeddings=False, attention_bias=False, use_sliding_window=False,
            bos_token_id=None, eos_token_id=None,
        ),
    ),
    "llama-tiny": dict(
        seed=1003, T=13, cls=LlamaForCausalLM, cfg_cls=LlamaConfig,
        cfg=dict(
            vocab_size=256, hidden_size=64, intermediate_size=176,
            num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=1,
            max_position_embeddings=512, rms_norm_eps=1e-5,
            rope_parameters={
                "rope_type": "llama3", "rope_theta": 500000.0, "factor": 8.0,
                "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                "original_max_position_embeddings": 64,
            },
            tie_word_embeddings=False, attention_bias=False, mlp_bias=False,
            bos_token_id=None, eos_token_id=None,
        ),
    ),
    "qwen2-swa": dict(
        seed=1004, T=16, cls=Qwen2ForCausalLM, cfg_cls=Qwen2Config,
        cfg=dict(
            vocab_size=300, hidden_size=64, intermediate_size=96,
            num_hidden_layers=3, num_attention_heads=4, num_key_value_heads=2,
            max_position_embeddings=128, rms_norm_eps=1e-6,
            rope_parameters={"rope_type": "default", "rope_theta": 10000.0},
            tie_word_embeddings=False,
            use_sliding_window=True, sliding_window=4, max_window_layers=1,
            bos_token_id=None, eos_token_id=None,
        ),
    ),
}

BIGVOCAB_ARGS = ("--arch qwen2 --hidden 32 --intermediate 64 --layers 2 --heads 2 "
                 "--kv-heads 1 --vocab 151936 --seed 7 --init-std 0.25 --dtype bf16")
BIGVOCAB_IDS = [0, 151935, 151643, 17, 9000, 123456]  # T = 6
BIGVOCAB_STRIDE = 97


def make_ids(seed, T, V):
    rs = np.random.RandomState(seed)
    ids = rs.randint(1, V - 1, size=T).astype(np.int64)
    ids[1] = 0          # id 0, not at position 0 so it also acts as a key
    ids[T - 2] = V - 1  # last vocab row
    return ids


def randomize_(model, seed):
    """Overwrite every parameter; fail if one is not covered by a rule."""
    g = torch.Generator().manual_seed(seed)
    params = dict(model.named_parameters())  # tied weights appear once
    with torch.no_grad():
        for name in sorted(params):
            p = params[name]
            leaf = name.split(".")[-2] if name.count(".") else name
            if name.endswith("norm.weight") or leaf in ("q_norm", "k_norm"):
                v = 1.0 + NORM_STD * torch.randn(p.shape, generator=g)
            elif name.endswith(".bias"):
                v = BIAS_STD * torch.randn(p.shape, generator=g)
            elif leaf in ("embed_tokens", "lm_head"):
                v = EMBED_STD * torch.randn(p.shape, generator=g)
            elif leaf in ("q_proj", "k_proj"):
                v = QK_STD * torch.randn(p.shape, generator=g)
            elif leaf in ("v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"):
                v = LINEAR_STD * torch.randn(p.shape, generator=g)
            else:
                raise RuntimeError(f"no randomization rule for parameter {name}")
            p.copy_(v.to(p.dtype))


def load(dirpath):
    m = AutoModelForCausalLM.from_pretrained(dirpath, dtype=torch.float32,
                                             attn_implementation="eager")
    m.eval()
    return m


@torch.no_grad()
def run_logits(model, ids):
    x = torch.as_tensor(np.asarray(ids), dtype=torch.long)[None, :]
    out = model(input_ids=x, use_cache=False)
    return out.logits[0].float().contiguous()


@torch.no_grad()
def attn_stats(model, ids):
    """Mean max attention probability over heads/queries (1/len would be uniform)."""
    x = torch.as_tensor(np.asarray(ids), dtype=torch.long)[None, :]
    out = model(input_ids=x, use_cache=False, output_attentions=True)
    res = []
    for a in out.attentions:
        a = a[0]  # [H, T, T]
        res.append(float(a.max(-1).values[:, 1:].mean()))
    return res


def chmod_folder(d):
    for f in os.listdir(d):
        os.chmod(os.path.join(d, f), 0o644)


def tidy_folder(d):
    keep = {"config.json", "model.safetensors"}
    for f in os.listdir(d):
        if f not in keep:
            p = os.path.join(d, f)
            shutil.rmtree(p) if os.path.isdir(p) else os.remove(p)


def build_case(name, spec, outdir, weights_dtype):
    seed, T = spec["seed"], spec["T"]
    torch.manual_seed(seed)
    cfg = spec["cfg_cls"](**spec["cfg"])
    model = spec["cls"]._from_config(cfg, attn_implementation="eager", dtype=torch.float32)
    model.eval()
    randomize_(model, seed)
    if weights_dtype == "bfloat16":
        model = model.to(torch.bfloat16)

    d = os.path.join(outdir, name)
    if os.path.isdir(d):
        shutil.rmtree(d)
    os.makedirs(d)
    model.save_pretrained(d, safe_serialization=True)
    tidy_folder(d)

    V = cfg.vocab_size
    ids = make_ids(seed, T, V)

    # Golden = what the saved folder produces when loaded back.
    m1 = load(d)
    logits = run_logits(m1, ids)
    assert logits.shape == (T, V), logits.shape
    m2 = load(d)
    again = run_logits(m2, ids)
    assert torch.equal(logits, again), f"{name}: reload does not reproduce logits"
    assert m2.config._attn_implementation == "eager"

    save_file({"ids": torch.as_tensor(ids, dtype=torch.int32).contiguous(),
               "logits": logits}, os.path.join(d, "logits.safetensors"))
    chmod_folder(d)

    info = {
        "logit_std": float(logits.std()),
        "logit_absmax": float(logits.abs().max()),
        "attn_maxprob": attn_stats(m1, ids),
        "layer_types": list(getattr(m1.config, "layer_types", []) or []),
    }
    # float64 run of the same weights: size of fp32 rounding noise in the golden
    m64 = load(d).double()
    with torch.no_grad():
        x = torch.as_tensor(ids, dtype=torch.long)[None, :]
        l64 = m64(input_ids=x, use_cache=False).logits[0]
    info["fp32_vs_fp64_maxabs"] = float((logits.double() - l64).abs().max())

    if name == "qwen2-swa":
        # Same weights, window off: logits must differ, else the window is not applied.
        kw = dict(spec["cfg"], use_sliding_window=False)
        cfg_full = spec["cfg_cls"](**kw)
        mfull = spec["cls"]._from_config(cfg_full, attn_implementation="eager",
                                         dtype=torch.float32)
        mfull.load_state_dict(m1.state_dict())
        mfull.eval()
        lfull = run_logits(mfull, ids)
        diff = (lfull - logits).abs().max(-1).values  # per position
        w = cfg.sliding_window
        assert float(diff[:w].max()) == 0.0 or float(diff[:w].max()) < 1e-5, \
            "positions < window should not depend on the window"
        assert float(diff[w:].min()) > 1e-3, f"sliding window not applied: {diff}"
        info["swa_vs_full_maxabs_per_pos"] = [round(float(v), 5) for v in diff]
        info["swa_layer_sliding_window"] = [
            getattr(l.self_attn, "sliding_window", None) for l in m1.model.layers]

    if name == "llama-tiny":
        rp = m1.config.rope_parameters
        hd = m1.config.head_dim
        base = rp["rope_theta"]
        plain = 1.0 / (base ** (torch.arange(0, hd, 2, dtype=torch.int64).float() / hd))
        scaled = m1.model.rotary_emb.inv_freq.float()
        info["inv_freq_plain"] = [f"{v:.6g}" for v in plain.tolist()]
        info["inv_freq_llama3"] = [f"{v:.6g}" for v in scaled.tolist()]
        assert not torch.allclose(plain, scaled), "llama3 scaling had no effect"
    return info


def build_bigvocab(mkckpt, outdir):
    if not mkckpt or not os.path.exists(mkckpt):
        print(f"qwen2-bigvocab: skipped (mkckpt tool {mkckpt!r} does not exist)")
        return None
    d = os.path.join(outdir, "qwen2-bigvocab")
    with tempfile.TemporaryDirectory(prefix="pn_bigvocab_") as tmp:
        ck = os.path.join(tmp, "ckpt")
        cmd = [mkckpt, "--out", ck] + shlex.split(BIGVOCAB_ARGS)
        print("running:", " ".join(shlex.quote(c) for c in cmd))
        subprocess.run(cmd, check=True)
        m = load(ck)
        V = m.config.vocab_size
        assert V == 151936, V
        ids = np.asarray(BIGVOCAB_IDS, dtype=np.int64)
        logits = run_logits(m, ids)
        l64 = logits.double()
        lse = torch.logsumexp(l64, dim=-1).float()
        amax = logits.argmax(-1).to(torch.int32)
        strided = logits[:, ::BIGVOCAB_STRIDE].contiguous()
        assert strided.shape == (len(ids), math.ceil(V / BIGVOCAB_STRIDE))
        if os.path.isdir(d):
            shutil.rmtree(d)
        os.makedirs(d)
        with open(os.path.join(d, "mkckpt_args.txt"), "w") as f:
            f.write(BIGVOCAB_ARGS + "\n")
        save_file({"ids": torch.as_tensor(ids, dtype=torch.int32).contiguous(),
                   "logits_strided": strided, "logsumexp": lse.contiguous(),
                   "argmax": amax.contiguous()},
                  os.path.join(d, "logits.safetensors"))
        chmod_folder(d)
        top2 = logits.topk(2, dim=-1).values
        return {"logit_std": float(logits.std()), "argmax": amax.tolist(),
                "min_top1_top2_margin": float((top2[:, 0] - top2[:, 1]).min()),
                "logsumexp": [round(v, 4) for v in lse.tolist()]}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "goldens"),
                    help="output folder (default: tests/goldens next to this script)")
    ap.add_argument("--mkckpt", default=None,
                    help="path of the project's mkckpt tool; enables the qwen2-bigvocab case")
    ap.add_argument("--only", nargs="*", default=None, help="build only these cases")
    ap.add_argument("--weights-dtype", choices=["float32", "bfloat16"], default="float32",
                    help="dtype of the stored model.safetensors (default float32)")
    args = ap.parse_args()

    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    os.makedirs(args.out, exist_ok=True)
    print(f"transformers {transformers.__version__}, torch {torch.__version__}, "
          f"numpy {np.__version__}")
    for name, spec in CASES.items():
        if args.only and name not in args.only:
            continue
        info = build_case(name, spec, args.out, args.weights_dtype)
        print(f"{name}: " + json.dumps(info))
    if args.mkckpt is not None and (not args.only or "qwen2-bigvocab" in args.only):
        info = build_bigvocab(args.mkckpt, args.out)
        if info:
            print("qwen2-bigvocab: " + json.dumps(info))


if __name__ == "__main__":
    main()
