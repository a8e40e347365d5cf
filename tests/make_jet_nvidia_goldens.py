#!/usr/bin/env python3
"""Whole-model goldens made by NVIDIA's own Jet-Nemotron modeling code (tests/goldens/jet_nvidia/).

postnas must read a Jet-Nemotron config.json + model.safetensors exactly as NVIDIA's Hugging Face code
(github NVlabs/Jet-Nemotron, jetai/modeling/hf/: configuration_jet_nemotron.py, modeling_jet_nemotron.py,
jet_block.py, dynamic_conv.py, kv_cache.py) interprets them. This script imports that code AT RUN TIME from a
checkout given on the command line (nothing of it is copied into this repository), builds tiny random models,
writes each case folder and computes the logits with NVIDIA's model in float64.

    python tests/make_jet_nvidia_goldens.py --jet-nemotron PATH_TO_CHECKOUT [--out tests/goldens/jet_nvidia]

PATH_TO_CHECKOUT is the repository root (holding jetai/modeling/hf/ and jetai/modeling/configs/jetlm_*.json)
or the jetai/modeling/hf folder itself. Needs transformers 4.53.x (NVIDIA pins transformers<=4.53.0),
torch (CPU is enough), safetensors, einops, numpy; triton must import (torch's PyPI wheel brings it): NVIDIA's
dconv_*.py files define @triton.jit kernels at import time, though none of them is ever launched here.

What is replaced, and why
-------------------------
NVIDIA's code runs unchanged except for GPU kernels, which cannot run on a CPU. Each is replaced by the exact
math in torch float64 (inputs are upcast, results cast back to the caller's dtype, which is float64 here):

* The package `fla` (NVIDIA's fork of flash-linear-attention, jet-ai-projects/flash-linear-attention@jetai,
  Triton only) is replaced by a stub module put in sys.modules before NVIDIA's code is imported:
  - fla.ops.gated_delta_rule.chunk_gated_delta_rule and fused_recurrent_gated_delta_rule (JetBlock uses the
    fused_recurrent one for q_len <= 64 and the chunk one above; both are the same recurrence) ->
    `gated_delta_rule`: with use_qk_l2norm_in_kernel=True q and k are L2-normalised per head as fla does,
    x / sqrt(sum(x^2) + 1e-6); scale = head_k_dim ** -0.5; per step S = exp(g_t) S;
    u = beta_t (v_t - S^T k_t); S += k_t u^T; o_t = S^T (scale q_t). Honours initial_state,
    output_final_state and cu_seqlens (each segment starts from its own initial state).
  - fla.modules.FusedRMSNormGated -> `FusedRMSNormGated`: y = x * rsqrt(mean(x^2) + eps) * weight * g *
    sigmoid(g) ('swish'; 'sigmoid' gives * sigmoid(g)); weight initialised to ones; extra keyword arguments
    of the fork (autotune_interval) are accepted and ignored.
  - fla.layers.utils.get_unpad_data / index_first_axis / pad_input -> plain torch indexing (same results).
* NVIDIA's Triton dynamic-convolution kernels, rebound in NVIDIA's dynamic_conv module (the names it calls):
  - dynamic_conv_triton_cache (eval-mode prefill, implementation "triton" -> "triton_cache") ->
    out[t, d] = sum_w K[t, d, w] * X[t + w - (W - 1), d] over the concatenation [cache, x] with zeros before it
    (the kernel's documented semantics; identical to DynamicShortConvolution._forward_naive without cache);
  - causal_conv_step_triton (decoding) -> cache <- roll(cache, -1), cache[..., -1] = x,
    out = sum_w cache[..., w] * K[..., w] (same as NVIDIA's _step_naive; cache updated in place);
  - dynamic_conv_triton_autograd (training only; never reached in eval) -> the same convolution per segment.
Nothing else is patched: config parsing, layer construction, masks, RoPE, RMSNorm, attention (SDPA; NVIDIA's
model accepts only "sdpa" or "flash_attention_2"), MLP, cache handling and generate() are NVIDIA's / HF's.
Their own float32 casts (RMSNorm computes in float32, RoPE cos/sin are computed in float32, and
`a_proj(x).float()` / `A_log.float()` in the gate) stay; they put ~1e-7 relative noise in the float64 result,
below the float32 storage of the logits.

Logits are computed with an explicit all-ones attention_mask, as generate() passes one. Without a mask NVIDIA's
SDPA path builds a (T, T+1) causal mask which the sliding-window layers and JetBlock read right-aligned (the
JetBlock then treats the last token as padding, its output there is zero; the SWA layers exclude the diagonal
and their fully masked row 0 is unmasked to attend to every key; full attention slices it left-aligned and is
right): not production semantics. The script measures and prints that difference, it does not store it.

Each case folder: config.json (exactly the text the loader must see), model.safetensors (F32, written by
NVIDIA's PreTrainedModel.save_pretrained, so tied models have no lm_head.weight), logits.safetensors with
ids I32 [T] and logits F32 [T, vocab] (float64 forward of the model as RE-LOADED from the folder by NVIDIA's
from_pretrained); released_2b also has greedy I32 [8] (generate(), greedy, 8 new tokens, which exercises
NVIDIA's decode path: JetNemotronCache, conv step, SWA cache roll), cross-checked with an uncached argmax loop.
Weights are seeded random (generator weights non-zero so the dynamic convolution is dynamic); reruns give
identical files.

Checks made while writing (the run fails if one does not hold): the saved F32 tensors are exactly the loaded
parameters; logits finite, std over the vocab > 1e-3 at every position; use_cache=True gives the same logits;
NVIDIA's own torch path for the dynamic conv (implementation="naive": _forward_naive, _step_naive) gives the same
logits and the same greedy tokens as the stand-ins; generate() equals an uncached argmax loop, with a top-1/top-2
margin > 1e-3. Printed (and written with --report): the keys NVIDIA's save_pretrained drops from jetlm_2B.json,
each layer's dims as NVIDIA built them, the logit change when a defaulted key is given postnas's old value, the
no-mask difference and the float32-vs-float64 difference.

    --verify-real-kernels   run NVIDIA's code with its real Triton kernels (dconv_*.py) and the real fla
                            (fla-core from PyPI) on a CUDA GPU in float32 and compare with the goldens in --out,
                            at T=32 (fused_recurrent) and T=100 (chunk kernel, against this script's float64
                            stand-ins) plus generate() for released_2b. NOT YET RUN: no GPU was lent to the session
                            that wrote it; on CPU the stand-ins were checked against fla-core 0.6.0's
                            naive_recurrent/naive_chunk_gated_delta_rule (rel 1e-7, their float32) instead.
"""
import argparse
import copy
import importlib
import json
import math
import os
import shutil
import sys
import tempfile
import types

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from safetensors.torch import load_file, save_file

T_DEFAULT = 32
N_GREEDY = 8


# ----------------------------------------------------------------------------------------------------------
# float64 stand-ins for the GPU kernels
# ----------------------------------------------------------------------------------------------------------
def _l2norm(x, eps=1e-6):  # fla's in-kernel L2 norm: x / sqrt(sum x^2 + eps)
    return x / torch.sqrt((x * x).sum(-1, keepdim=True) + eps)


def gated_delta_rule(q, k, v, g, beta, scale=None, initial_state=None, output_final_state=False,
                     cu_seqlens=None, use_qk_l2norm_in_kernel=False, **_ignored):
    """q, k [B, T, H, K]; v [B, T, H, V]; g, beta [B, T, H]; state [N, H, K, V]."""
    out_dtype = v.dtype
    q, k, v, g, beta = (t.to(torch.float64) for t in (q, k, v, g, beta))
    if use_qk_l2norm_in_kernel:
        q, k = _l2norm(q), _l2norm(k)
    if scale is None:
        scale = k.shape[-1] ** -0.5
    B, T, H, K = k.shape
    V = v.shape[-1]
    if cu_seqlens is None:
        segs = [(b, 0, T) for b in range(B)]
    else:
        assert B == 1, "cu_seqlens needs batch 1"
        cs = [int(c) for c in cu_seqlens.tolist()]
        segs = [(0, cs[i], cs[i + 1]) for i in range(len(cs) - 1)]
    o = torch.zeros(B, T, H, V, dtype=torch.float64, device=v.device)
    finals = []
    for n, (b, s, e) in enumerate(segs):
        S = torch.zeros(H, K, V, dtype=torch.float64, device=v.device)
        if initial_state is not None:
            S = initial_state[n].to(torch.float64).clone()
        for t in range(s, e):
            S = S * g[b, t].exp()[:, None, None]
            u = beta[b, t][:, None] * (v[b, t] - torch.einsum("hkv,hk->hv", S, k[b, t]))
            S = S + k[b, t][:, :, None] * u[:, None, :]
            o[b, t] = torch.einsum("hkv,hk->hv", S, q[b, t] * scale)
        finals.append(S)
    final = torch.stack(finals) if output_final_state else None
    return o.to(out_dtype), final


class FusedRMSNormGated(nn.Module):
    def __init__(self, hidden_size, elementwise_affine=True, eps=1e-5, activation="swish", device=None,
                 dtype=None, **_ignored):
        super().__init__()
        self.hidden_size, self.eps, self.activation = hidden_size, eps, activation
        assert activation in ("swish", "silu", "sigmoid")
        self.weight = nn.Parameter(torch.ones(hidden_size, device=device, dtype=dtype)) if elementwise_affine else None

    def forward(self, x, g, residual=None, prenorm=False, residual_in_fp32=False):
        assert residual is None and not prenorm
        xf, gf = x.to(torch.float64), g.to(torch.float64)
        y = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.eps)
        if self.weight is not None:
            y = y * self.weight.to(torch.float64)
        y = y * torch.sigmoid(gf) * (gf if self.activation in ("swish", "silu") else 1.0)
        return y.to(x.dtype)


def _get_unpad_data(attention_mask):
    lens = attention_mask.sum(-1, dtype=torch.int32)
    indices = torch.nonzero(attention_mask.flatten(), as_tuple=False).flatten()
    cu_seqlens = F.pad(lens.cumsum(0, dtype=torch.int32), (1, 0))
    return indices, cu_seqlens, int(lens.max().item())


def _index_first_axis(x, indices):
    return x[indices]


def _pad_input(hidden_states, indices, batch_size, seq_len):
    out = hidden_states.new_zeros(batch_size * seq_len, *hidden_states.shape[1:])
    out[indices] = hidden_states
    return out.view(batch_size, seq_len, *hidden_states.shape[1:])


def install_fla_stub():
    mods = {name: types.ModuleType(name) for name in
            ("fla", "fla.layers", "fla.layers.utils", "fla.modules", "fla.ops", "fla.ops.gated_delta_rule")}
    for name, m in mods.items():
        m.__path__ = []
        m.__doc__ = "float64 torch stand-in for fla, made by tests/make_jet_nvidia_goldens.py"
        sys.modules[name] = m
    u = mods["fla.layers.utils"]
    u.get_unpad_data, u.index_first_axis, u.pad_input = _get_unpad_data, _index_first_axis, _pad_input
    mods["fla.modules"].FusedRMSNormGated = FusedRMSNormGated
    gdr = mods["fla.ops.gated_delta_rule"]
    gdr.chunk_gated_delta_rule = gated_delta_rule
    gdr.fused_recurrent_gated_delta_rule = gated_delta_rule


def dconv_cache(x, kernels, cache=None):
    """x [B, T, D], kernels [B, T, D, W], cache [B, Tc, D] or None -> [B, T, D] (before activation)."""
    out_dtype = x.dtype
    W = kernels.shape[-1]
    T = x.shape[1]
    ext = x.to(torch.float64)
    tc = 0
    if cache is not None:
        ext = torch.cat([cache.to(torch.float64), ext], 1)
        tc = cache.shape[1]
    ext = F.pad(ext, (0, 0, W - 1, 0))  # zeros before the start
    kf = kernels.to(torch.float64)
    out = torch.zeros(x.shape, dtype=torch.float64, device=x.device)
    for w in range(W):  # tap w reads input time t + w - (W - 1)
        out += kf[..., w] * ext[:, tc + w: tc + w + T]
    return out.to(out_dtype)


def dconv_autograd(x, kernels, cu_seqlens=None):
    if cu_seqlens is None:
        return dconv_cache(x, kernels)
    cs = [int(c) for c in cu_seqlens.tolist()]
    return torch.cat([dconv_cache(x[:, cs[i]:cs[i + 1]], kernels[:, cs[i]:cs[i + 1]])
                      for i in range(len(cs) - 1)], 1)


def conv_step(x, cache, kernels):
    """x [B, 1, D]; cache [B, D, W] updated in place; kernels [B, D, W] -> [B, D] (before activation)."""
    cache.copy_(cache.roll(shifts=-1, dims=-1))
    cache[:, :, -1] = x[:, 0]
    return (cache.to(torch.float64) * kernels.to(torch.float64)).sum(-1).to(x.dtype)


# ----------------------------------------------------------------------------------------------------------
# NVIDIA's code, imported from the checkout
# ----------------------------------------------------------------------------------------------------------
class Nv:
    pass


def use_real_fla():
    """--verify-real-kernels: the real fla (fla-core from PyPI) instead of the stub. NVIDIA's fork adds an
    `autotune_interval` keyword to FusedRMSNormGated and chunk_gated_delta_rule; it only tunes, so it is dropped.
    fla.layers.utils (plain indexing, no kernel) is the stub's when the installed fla has no fla.layers."""
    import fla.modules
    import fla.ops.gated_delta_rule as gdr
    real_norm, real_chunk = fla.modules.FusedRMSNormGated, gdr.chunk_gated_delta_rule

    class NormNoTune(real_norm):
        def __init__(self, *a, autotune_interval=None, **kw):
            super().__init__(*a, **kw)

    def chunk_no_tune(*a, autotune_interval=None, **kw):
        return real_chunk(*a, **kw)

    fla.modules.FusedRMSNormGated = NormNoTune
    gdr.chunk_gated_delta_rule = chunk_no_tune
    try:
        importlib.import_module("fla.layers.utils")
    except Exception:  # noqa: BLE001
        for name in ("fla.layers", "fla.layers.utils"):
            m = types.ModuleType(name)
            m.__path__ = []
            sys.modules[name] = m
        u = sys.modules["fla.layers.utils"]
        u.get_unpad_data, u.index_first_axis, u.pad_input = _get_unpad_data, _index_first_axis, _pad_input


def load_nvidia(root, real_kernels=False):
    root = os.path.abspath(root)
    hf = root if os.path.isfile(os.path.join(root, "modeling_jet_nemotron.py")) else \
        os.path.join(root, "jetai", "modeling", "hf")
    if not os.path.isfile(os.path.join(hf, "modeling_jet_nemotron.py")):
        sys.exit(f"no jetai/modeling/hf/modeling_jet_nemotron.py under {root}")
    cfgdir = os.path.normpath(os.path.join(hf, "..", "configs"))
    if real_kernels:
        use_real_fla()
    else:
        install_fla_stub()
    pkg = types.ModuleType("jetnv_hf")  # NVIDIA's hf/ folder as a package, so its relative imports work
    pkg.__path__ = [hf]
    sys.modules["jetnv_hf"] = pkg
    nv = Nv()
    nv.hf, nv.cfgdir = hf, cfgdir
    nv.cfgmod = importlib.import_module("jetnv_hf.configuration_jet_nemotron")
    nv.dc = importlib.import_module("jetnv_hf.dynamic_conv")
    if not real_kernels:
        nv.dc.dynamic_conv_triton_cache = dconv_cache
        nv.dc.dynamic_conv_triton_autograd = dconv_autograd
        nv.dc.causal_conv_step_triton = conv_step
    nv.jb = importlib.import_module("jetnv_hf.jet_block")
    nv.mm = importlib.import_module("jetnv_hf.modeling_jet_nemotron")
    nv.Config = nv.cfgmod.JetNemotronConfig
    nv.Model = nv.mm.JetNemotronForCausalLM
    return nv


# ----------------------------------------------------------------------------------------------------------
# cases
# ----------------------------------------------------------------------------------------------------------
def released(nv, name):
    with open(os.path.join(nv.cfgdir, name)) as f:
        text = f.read()
    d = json.loads(text)
    assert json.dumps(d, indent=2) == text.rstrip("\n"), f"{name}: json.dumps(indent=2) does not reproduce the text"
    return d


def shrink(d, hidden, inter, heads, vocab, layer_types, jet_heads, jet_head_dim, window, kv=None):
    d = copy.deepcopy(d)
    d.update(hidden_size=hidden, intermediate_size=inter, num_attention_heads=heads, vocab_size=vocab,
             num_hidden_layers=len(layer_types), layer_types=list(layer_types))
    # Token ids are sized by the vocabulary too: the released 151643 would point past the shrunk one (postnas
    # refuses bos/eos ids outside the vocabulary), so they become its last id.
    for k in ("bos_token_id", "eos_token_id"):
        if d.get(k) is not None:
            d[k] = vocab - 1
    if kv is not None:
        d["num_key_value_heads"] = kv
    eac = d["efficient_attention_config"]
    eac["jet"].update(num_heads=jet_heads, head_dim=jet_head_dim)
    eac["swa"]["window_size"] = window
    return d


def build_cases(nv):
    r2 = released(nv, "jetlm_2B.json")
    r4 = released(nv, "jetlm_4B.json")
    cases = []
    # released configs: only the size keys shrunk, every other key (torch_dtype, transformers_version,
    # max_window_layers, bos/eos ids, "norm_eps": "1e-5" ...) verbatim.
    c = shrink(r2, 48, 32, 4, 256, ["jet", "attn", "swa", "jet"], 2, 12, 8)
    cases.append(dict(name="released_2b", cfg=c, seed=3, greedy=True,
                      note="jetlm_2B.json shrunk: expand_v 2.6666666667 (head_v = int(12*2.6666666667) = 32), "
                           "norm_eps the string \"1e-5\", window 8, tied"))
    c = shrink(r4, 48, 32, 4, 256, ["jet", "swa", "attn", "jet"], 2, 16, 6)
    cases.append(dict(name="released_4b", cfg=c, seed=4,
                      note="jetlm_4B.json shrunk: expand_v the integer 2, norm_eps \"1e-5\", window 6, tied"))
    # one default each: the key is ABSENT and NVIDIA's default applies.
    base = shrink(r2, 48, 48, 4, 256, ["jet"], 2, 12, 8)
    for k in ("transformers_version", "torch_dtype"):
        base.pop(k)
    base["torch_dtype"] = "float32"

    c = copy.deepcopy(base)
    c.update(num_hidden_layers=3, layer_types=["jet", "swa", "jet"])
    del c["efficient_attention_config"]["jet"]["norm_eps"]
    cases.append(dict(name="no_jet_norm_eps", cfg=c, seed=11, scale={"v_proj.weight": 0.3},
                      alt=("jet norm_eps 1e-6", lambda d: d["efficient_attention_config"]["jet"].update(norm_eps=1e-6)),
                      note="efficient_attention_config.jet.norm_eps absent -> JetBlockConfig default 1e-5; "
                           "v_proj scaled down so the o_norm eps matters"))

    c = copy.deepcopy(base)
    c.update(num_hidden_layers=3, layer_types=["attn", "jet", "swa"])
    jet = c["efficient_attention_config"]["jet"]
    del jet["expand_v"]
    jet.update(head_dim=16)
    cases.append(dict(name="no_expand_v", cfg=c, seed=12,
                      alt=("jet expand_v 1.0", lambda d: d["efficient_attention_config"]["jet"].update(expand_v=1.0)),
                      note="efficient_attention_config.jet.expand_v absent -> JetBlockConfig default 2.0 "
                           "(head_v 32, value dim 64)"))

    c = copy.deepcopy(base)
    c.update(num_hidden_layers=3, layer_types=["jet", "attn", "swa"], tie_word_embeddings=True)
    cases.append(dict(name="saved_tied", cfg=c, seed=13, via_save_pretrained=True,
                      note="config.json and model.safetensors written by NVIDIA's save_pretrained (transformers "
                           "4.53) from a config with tie_word_embeddings=True: the key is omitted (equal to the "
                           "class default) and lm_head.weight is not stored"))

    c = copy.deepcopy(base)
    c.update(num_hidden_layers=3, layer_types=["attn", "swa", "jet"])
    del c["rope_theta"]
    cases.append(dict(name="no_rope_theta", cfg=c, seed=14,
                      alt=("rope_theta 1e4", lambda d: d.update(rope_theta=10000.0)),
                      note="rope_theta absent -> JetNemotronConfig default 1000000.0"))

    c = copy.deepcopy(base)
    c.update(num_hidden_layers=3, layer_types=["swa", "jet", "attn"], tie_word_embeddings=False)
    del c["num_key_value_heads"]
    cases.append(dict(name="no_kv_heads", cfg=c, seed=15,
                      alt=("num_key_value_heads = num_attention_heads (4)",
                           lambda d: d.update(num_key_value_heads=d["num_attention_heads"])),
                      note="num_key_value_heads absent -> JetNemotronConfig default 2 (not num_attention_heads); "
                           "also the untied case: \"tie_word_embeddings\": false, lm_head.weight stored"))

    c = copy.deepcopy(base)
    c.update(num_hidden_layers=3, layer_types=["jet", "attn", "jet"])
    c["efficient_attention_config"]["jet"].update(num_heads=2, head_dim=10, expand_v=3.0,
                                                  dconv_generator_reduction=8)
    cases.append(dict(name="floor_reduction", cfg=c, seed=16,
                      note="value dim 2*int(10*3.0) = 60, dconv_generator_reduction 8 -> generator hidden width "
                           "60 // 8 = 7 (floor)"))
    return cases


# ----------------------------------------------------------------------------------------------------------
# weights, forward, checks
# ----------------------------------------------------------------------------------------------------------
def init_weights(model, seed, scale=None):
    """Seeded, small-valued random weights (F32-representable; the model is float32 here)."""
    gen = torch.Generator().manual_seed(seed)
    scale = scale or {}

    def randn(shape):
        return torch.randn(shape, generator=gen, dtype=torch.float64)

    with torch.no_grad():
        for name, p in sorted(model.named_parameters(), key=lambda kv: kv[0]):
            if name.endswith("norm.weight"):  # input/post_attention_layernorm, model.norm, o_norm
                val = 1.0 + 0.1 * randn(p.shape)
            elif name.endswith("A_log"):
                val = torch.log(1.0 + 15.0 * torch.rand(p.shape, generator=gen, dtype=torch.float64))
            elif name.endswith("dt_bias"):
                lo, hi = math.log(1e-3), math.log(1e-1)
                dt = torch.exp(lo + (hi - lo) * torch.rand(p.shape, generator=gen, dtype=torch.float64))
                val = dt + torch.log(-torch.expm1(-dt))  # inverse softplus, as NVIDIA's init
            elif name.endswith("kernel_generator.w2.bias"):  # the static kernel part
                val = 0.3 * randn(p.shape)
            elif name.endswith("embed_tokens.weight") or name.endswith("lm_head.weight"):
                val = 0.125 * randn(p.shape)
            elif name.endswith(".bias"):
                val = 0.05 * randn(p.shape)
            else:  # Linear weights [out, in]
                val = (0.8 / math.sqrt(p.shape[-1])) * randn(p.shape)
            for key, s in scale.items():
                if name.endswith(key):
                    val = val * s
            p.copy_(val.to(p.dtype))


def make_ids(seed, T, V):
    rs = np.random.RandomState(1000 + seed)
    ids = rs.randint(0, V, size=T).astype(np.int64)
    ids[1], ids[T - 2] = 0, V - 1
    return ids


def forward(model, ids, mask=True, use_cache=False):
    x = torch.as_tensor(ids, dtype=torch.long)[None]
    kw = dict(attention_mask=torch.ones_like(x)) if mask else {}
    with torch.no_grad():
        return model(input_ids=x, use_cache=use_cache, **kw).logits[0]


def rel(a, b):
    return float((a - b).norm() / b.norm())


def load_model(nv, folder):
    model, info = nv.Model.from_pretrained(folder, torch_dtype=torch.float32, attn_implementation="sdpa",
                                           output_loading_info=True)
    problems = [k for k in info.get("missing_keys", [])
                if not (k == "lm_head.weight" and model.config.tie_word_embeddings)]
    problems += list(info.get("unexpected_keys", [])) + [str(x) for x in info.get("mismatched_keys", [])]
    problems += [str(x) for x in info.get("error_msgs", [])]
    assert not problems, f"{folder}: loading problems {problems}"
    return model.double().eval()


def write_config(folder, cfg):
    with open(os.path.join(folder, "config.json"), "w") as f:
        f.write(json.dumps(cfg, indent=2) + "\n")


def try_alt(nv, cfg, alt_fn, weights_dir):
    """NVIDIA's model under a changed config with the same weights: logits, or why it does not load."""
    d = copy.deepcopy(cfg)
    alt_fn(d)
    with tempfile.TemporaryDirectory() as tmp:
        for fn in os.listdir(weights_dir):
            if fn != "config.json":
                shutil.copy(os.path.join(weights_dir, fn), tmp)
        write_config(tmp, d)
        try:
            model = nv.Model.from_pretrained(tmp, torch_dtype=torch.float32, attn_implementation="sdpa")
        except Exception as e:  # noqa: BLE001 - report it
            return None, f"do not load ({type(e).__name__}: {str(e).splitlines()[0][:160]})"
        return model.double().eval(), None


def make_case(nv, case, out, report):
    name, cfg = case["name"], case["cfg"]
    folder = os.path.join(out, name)
    if os.path.isdir(folder):
        shutil.rmtree(folder)
    os.makedirs(folder)
    config = nv.Config(**{k: v for k, v in cfg.items() if k not in ("transformers_version", "architectures")})
    model = nv.Model(config).to(torch.float32).eval()
    init_weights(model, case["seed"], case.get("scale"))
    model.save_pretrained(folder, safe_serialization=True)
    if not case.get("via_save_pretrained"):
        write_config(folder, cfg)  # the exact text, not save_pretrained's rewrite
        os.remove(os.path.join(folder, "generation_config.json"))
    with open(os.path.join(folder, "config.json")) as f:
        cfg_written = json.load(f)

    ref = load_model(nv, folder)
    saved = load_file(os.path.join(folder, "model.safetensors"))
    sd = ref.state_dict()
    for k, v in saved.items():
        assert v.dtype == torch.float32 and torch.equal(sd[k], v.double()), k
    T = case.get("T", T_DEFAULT)
    V = ref.config.vocab_size
    ids = make_ids(case["seed"], T, V)
    logits = forward(ref, ids)
    lines = [f"## {name}", case["note"], ""]
    lines.append(f"- layer_types {ref.config.layer_types}, hidden {ref.config.hidden_size}, intermediate "
                 f"{ref.config.intermediate_size}, heads {ref.config.num_attention_heads}/kv "
                 f"{ref.config.num_key_value_heads}, vocab {V}, T {T}, tied {ref.config.tie_word_embeddings}, "
                 f"rope_theta {ref.config.rope_theta}, rms_norm_eps {ref.config.rms_norm_eps}")
    for i, layer in enumerate(ref.model.layers):
        a = layer.self_attn
        if isinstance(a, nv.jb.JetBlock):
            lines.append(f"- layer {i} jet: heads {a.num_heads}, head_k {a.head_k_dim}, head_v {a.head_v_dim}, "
                         f"value dim {a.value_dim}, conv {a.conv_size}, generator width "
                         f"{a.dynamic_conv1d.generator_hidden_size}, o_norm eps {a.o_norm.eps!r}, "
                         f"dconv implementation {a.dynamic_conv1d.implementation}")
        else:
            lines.append(f"- layer {i} {'swa window %d' % a.sliding_window if a.sliding_window else 'attn'}: "
                         f"head_dim {a.head_dim}, kv groups {a.num_key_value_groups}")

    # sanity
    assert torch.isfinite(logits).all()
    std = float(logits.std(-1).min())
    assert std > 1e-3, f"{name}: degenerate logits (min std over vocab {std})"
    cached = forward(ref, ids, use_cache=True)
    assert rel(cached, logits) < 1e-12, f"{name}: use_cache=True forward differs"
    nomask = forward(ref, ids, mask=False)
    lines.append(f"- logits: min std over vocab {std:.3f}, max |logit| {float(logits.abs().max()):.2f}; "
                 f"use_cache=True forward identical; without attention_mask (NVIDIA's (T, T+1) mask) the "
                 f"logits differ by rel {rel(nomask, logits):.3e} (last row {rel(nomask[-1], logits[-1]):.3e})")
    naive = load_model(nv, folder)  # NVIDIA's own torch path for the dynamic conv, instead of the Triton stand-ins
    for mod in naive.modules():
        if isinstance(mod, nv.dc.DynamicShortConvolution):
            mod.implementation = "naive"
    assert rel(forward(naive, ids), logits) < 1e-13, f"{name}: naive dynamic conv differs"
    lines.append("- NVIDIA's implementation=\"naive\" dynamic conv (_forward_naive) gives the same logits")
    f32 = load_model(nv, folder).float()
    lines.append(f"- the same model run in float32 differs by rel {rel(forward(f32, ids).double(), logits):.2e}")
    if "alt" in case:
        label, fn = case["alt"]
        m, why = try_alt(nv, cfg_written, fn, folder)
        if m is None:
            lines.append(f"- with {label} instead of NVIDIA's default the same files {why}")
        else:
            lines.append(f"- with {label} instead of NVIDIA's default the logits differ by rel "
                         f"{rel(forward(m, ids), logits):.3e}")
    tensors = {"ids": torch.as_tensor(ids, dtype=torch.int32), "logits": logits.float().contiguous()}
    if case.get("greedy"):
        x = torch.as_tensor(ids, dtype=torch.long)[None]
        with torch.no_grad():
            gen = ref.generate(x, attention_mask=torch.ones_like(x), max_new_tokens=N_GREEDY, do_sample=False,
                               min_new_tokens=N_GREEDY, pad_token_id=0)
        greedy = gen[0, T:]
        seq, gap = list(ids), float("inf")
        for _ in range(N_GREEDY):  # uncached argmax loop over full forwards
            top2 = forward(ref, np.array(seq))[-1].topk(2).values
            gap = min(gap, float(top2[0] - top2[1]))
            seq.append(int(forward(ref, np.array(seq))[-1].argmax()))
        assert seq[T:] == greedy.tolist(), f"generate {greedy.tolist()} != argmax loop {seq[T:]}"
        with torch.no_grad():  # decode with NVIDIA's _step_naive instead of the causal_conv_step_triton stand-in
            gen2 = naive.generate(x, attention_mask=torch.ones_like(x), max_new_tokens=N_GREEDY, do_sample=False,
                                  min_new_tokens=N_GREEDY, pad_token_id=0)
        assert torch.equal(gen2, gen), f"{name}: generate with the naive conv step differs"
        assert gap > 1e-3, f"{name}: greedy top-1/top-2 gap {gap} too small to be robust"
        tensors["greedy"] = greedy.to(torch.int32).contiguous()
        lines.append(f"- greedy (generate, 8 new tokens) {greedy.tolist()} == uncached argmax loop == generate with "
                     f"NVIDIA's naive conv step; smallest "
                     f"top-1 minus top-2 logit gap {gap:.4f}")
    save_file(tensors, os.path.join(folder, "logits.safetensors"), metadata={"format": "pt"})
    absent = [k for k in ("tie_word_embeddings", "rope_theta", "num_key_value_heads", "rms_norm_eps",
                          "bos_token_id", "eos_token_id", "max_position_embeddings") if k not in cfg_written]
    jet_absent = [k for k in ("mode", "expand_v", "num_heads", "head_dim", "norm_eps", "conv_size",
                              "dconv_generator_reduction", "dconv_implementation")
                  if k not in cfg_written.get("efficient_attention_config", {}).get("jet", {})]
    lines.append(f"- absent from config.json: top level {absent}, jet {jet_absent}")
    size = sum(os.path.getsize(os.path.join(folder, fn)) for fn in os.listdir(folder))
    lines.append(f"- files {sorted(os.listdir(folder))}, {size / 1024:.0f} KiB")
    report.extend(lines + [""])
    print("\n".join(lines), flush=True)


def save_pretrained_facts(nv, report):
    """What NVIDIA's save_pretrained (transformers 4.53) writes for the released 2B config."""
    d = released(nv, "jetlm_2B.json")
    config = nv.Config(**{k: v for k, v in d.items() if k not in ("transformers_version",)})
    with tempfile.TemporaryDirectory() as tmp:
        config.save_pretrained(tmp)
        with open(os.path.join(tmp, "config.json")) as f:
            w = json.load(f)
    dropped = sorted(set(d) - set(w))
    added = sorted(set(w) - set(d))
    changed = sorted(k for k in set(d) & set(w) if d[k] != w[k])
    lines = ["## save_pretrained of jetlm_2B.json (transformers %s)" % __import__("transformers").__version__,
             f"- keys dropped: {dropped}", f"- keys added: {added}",
             f"- values changed: " + ", ".join(f"{k}: {d[k]!r} -> {w[k]!r}" for k in changed),
             f"- jet norm_eps written as {w['efficient_attention_config']['jet']['norm_eps']!r}", ""]
    report.extend(lines)
    print("\n".join(lines), flush=True)


T_LONG = 100  # > 64: JetBlock takes the chunk kernel instead of fused_recurrent


def long_ids(folder):
    V = json.load(open(os.path.join(folder, "config.json")))["vocab_size"]
    return make_ids(7777, T_LONG, V)


def case_folders(out):
    return sorted(d for d in os.listdir(out) if os.path.isfile(os.path.join(out, d, "logits.safetensors")))


def long_reference(nv, out, path):
    """float64 (stub kernels) logits of every case for the T_LONG sequence, for --verify-real-kernels."""
    res = {}
    for name in case_folders(out):
        folder = os.path.join(out, name)
        res[name] = forward(load_model(nv, folder), long_ids(folder)).float().contiguous()
    save_file(res, path)


def verify_real_kernels(args):
    """NVIDIA's code with its real Triton kernels (dconv_*.py, fla) on CUDA in float32 against the goldens."""
    import subprocess
    assert torch.cuda.is_available(), "--verify-real-kernels needs a CUDA GPU"
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    with tempfile.TemporaryDirectory() as tmp:
        ref_path = os.path.join(tmp, "long.safetensors")
        subprocess.run([sys.executable, os.path.abspath(__file__), "--jet-nemotron", args.jet_nemotron,
                        "--out", args.out, "--long-reference", ref_path], check=True,
                       env=dict(os.environ, CUDA_VISIBLE_DEVICES=""))
        long_ref = load_file(ref_path)
    nv = load_nvidia(args.jet_nemotron, real_kernels=True)
    worst = 0.0
    for name in case_folders(args.out):
        folder = os.path.join(args.out, name)
        gold = load_file(os.path.join(folder, "logits.safetensors"))
        model = load_model(nv, folder).float().cuda()
        with torch.no_grad():
            got = forward(model, gold["ids"].long().cuda()).double().cpu()
            got_long = forward(model, torch.as_tensor(long_ids(folder)).cuda()).double().cpu()
        e1, e2 = rel(got, gold["logits"].double()), rel(got_long, long_ref[name].double())
        worst = max(worst, e1, e2)
        msg = f"{name}: real kernels fp32 vs golden rel {e1:.2e} (T={gold['ids'].numel()}, fused_recurrent); " \
              f"T={T_LONG} (chunk) vs stub float64 rel {e2:.2e}"
        if "greedy" in gold:
            x = gold["ids"].long()[None].cuda()
            with torch.no_grad():
                g = model.generate(x, attention_mask=torch.ones_like(x), max_new_tokens=N_GREEDY, do_sample=False,
                                   min_new_tokens=N_GREEDY, pad_token_id=0)[0, x.shape[1]:].cpu()
            assert torch.equal(g.to(torch.int32), gold["greedy"]), f"{name}: greedy {g.tolist()}"
            msg += f"; generate() with real decode kernels gives the stored greedy {g.tolist()}"
        print(msg, flush=True)
    assert worst < 1e-4, f"worst relative difference {worst}"
    print(f"verify-real-kernels OK, worst relative difference {worst:.2e}")


def check_export(nv, folders):
    """postnas's own output in NVIDIA's code: each folder (postnas-mkckpt --layer-types ... --dtype f32, plus
    the `logits.safetensors` that `postnas-generate --dump-logits` wrote) loads with NVIDIA's from_pretrained,
    keeps every config.json field (read back through NVIDIA's config class and to_dict), and gives postnas's
    logits."""
    from safetensors.torch import load_file
    worst = 0.0
    for folder in folders:
        cfg = json.load(open(os.path.join(folder, "config.json")))
        model = load_model(nv, folder)
        kept = model.config.to_dict()
        lost = [k for k in cfg if k not in kept or (kept[k] != cfg[k] and k != "torch_dtype")]
        assert not lost, f"{folder}: NVIDIA's config lost or changed {lost}"
        g = load_file(os.path.join(folder, "logits.safetensors"))
        ref = forward(model, g["ids"].tolist()).float()
        e = rel(g["logits"].float(), ref)
        worst = max(worst, e)
        print(f"{folder}: layer_types {cfg['layer_types']}: postnas vs NVIDIA logits rel err {e:.3g}; "
              f"all {len(cfg)} config.json keys kept")
        assert e < 1e-4, f"{folder}: rel err {e}"
    print(f"worst {worst:.3g} over {len(folders)} postnas exports")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--jet-nemotron", required=True, help="NVlabs/Jet-Nemotron checkout (or its jetai/modeling/hf)")
    ap.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "goldens", "jet_nvidia"))
    ap.add_argument("--report", default=None, help="also write the printed facts to this file")
    ap.add_argument("--verify-real-kernels", action="store_true",
                    help="instead of writing: run NVIDIA's code with its real Triton/fla kernels on CUDA (float32) "
                         "and compare with the goldens in --out (needs a GPU and fla-core installed)")
    ap.add_argument("--long-reference", help=argparse.SUPPRESS)
    ap.add_argument("--check-export", nargs="+", metavar="DIR",
                    help="instead of writing: load folders postnas wrote in NVIDIA's code and compare the logits "
                         "postnas-generate --dump-logits saved beside them")
    args = ap.parse_args()
    torch.manual_seed(0)
    torch.set_num_threads(1)
    import transformers
    assert transformers.__version__.startswith("4.53"), f"transformers {transformers.__version__}, want 4.53.x"
    if args.verify_real_kernels:
        return verify_real_kernels(args)
    nv = load_nvidia(args.jet_nemotron)
    if args.check_export:
        return check_export(nv, args.check_export)
    if args.long_reference:
        return long_reference(nv, args.out, args.long_reference)
    os.makedirs(args.out, exist_ok=True)
    report = [f"transformers {transformers.__version__}, torch {torch.__version__}", ""]
    save_pretrained_facts(nv, report)
    for case in build_cases(nv):
        make_case(nv, case, args.out, report)
    if args.report:
        with open(args.report, "w") as f:
            f.write("\n".join(report))


if __name__ == "__main__":
    main()
