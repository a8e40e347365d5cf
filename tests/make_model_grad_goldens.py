"""Goldens for the whole-model gradient check (tests/test_train.c): logits and the gradient of every
parameter of two tiny models under L = sum(logits * R), R ~ N(0, 1) fixed (so dL/dlogits = R), computed
by torch autograd in float64 on weights rounded to float32 (the C side loads exactly those values).

hybrid/  A Jet-Nemotron-style hybrid: transformers' Qwen2ForCausalLM (eager attention, float64) with
         layer_types [attn, swa, jet, gdn]: layer 1 attends over a sliding window of 8, and the self_attn
         modules of layers 2 and 3 are replaced by JetBlock and Gated DeltaNet written in torch float64
         (the layer functions of tests/make_jet_layer_goldens.py and tests/make_gdn_layer_goldens.py, with
         non-zero kernel-generator weights). The whole forward is also written out in plain torch here and
         must agree with the transformers-based one (to 1e-5: transformers keeps RMSNorm and the RoPE tables
         in float32 even in a float64 model), which checks the module substitution; dropping the window from
         the plain one must change the logits, which checks that transformers applies it.
qwen3/   transformers' Qwen3ForCausalLM itself (q/k norm, head_dim 16 != hidden / heads), 3 layers.

Each folder holds config.json, model.safetensors (float32 weights) and golden.safetensors: ids (int32
[B, T]), R and logits (float32 [B T, vocab]), loss (float64 [1]) and grad.<parameter name> (float32).

    python3 tests/make_model_grad_goldens.py [--out tests/goldens/model_grad]
"""
import argparse
import json
import math
import os
import sys

import torch
import torch.nn.functional as F
from safetensors.torch import save_file

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import make_gdn_layer_goldens as gl  # noqa: E402
import make_jet_layer_goldens as jl  # noqa: E402

B, T, VOCAB = 2, 70, 257
HIDDEN, INTER, HEADS, KV, HEAD_DIM, EPS, THETA, WINDOW = 32, 64, 4, 2, 8, 1e-6, 10000.0, 8
LIN_HEADS, LIN_DK, LIN_EXPAND, LIN_CONV, LIN_RED, LIN_EPS = 2, 8, 2.0, 4, 4, 1e-5
LAYER_TYPES = ["attn", "swa", "jet", "gdn"]
GEN = "dynamic_conv1d.kernel_generator."

# The block layer functions read their shape from module globals: set them to this model's.
for mod in (jl, gl):
    mod.HIDDEN, mod.HEADS, mod.DK, mod.EXPAND_V, mod.CONV, mod.EPS = HIDDEN, LIN_HEADS, LIN_DK, LIN_EXPAND, LIN_CONV, LIN_EPS
jl.RED = LIN_RED


def f32(t):  # draw in float64, keep float32-representable values
    return t.float().double()


def block_params(kind, gen):
    n = lambda *s, std=0.15: torch.randn(*s, generator=gen, dtype=torch.float64) * std
    u = lambda *s: torch.rand(*s, generator=gen, dtype=torch.float64)
    key_dim, value_dim, head_v = LIN_HEADS * LIN_DK, int(LIN_HEADS * LIN_DK * LIN_EXPAND), int(LIN_DK * LIN_EXPAND)
    dt = torch.exp(u(LIN_HEADS) * (math.log(0.1) - math.log(0.001)) + math.log(0.001)).clamp(min=1e-4)
    if kind == "jet":  # src/blocks/jet.c's order
        red = value_dim // LIN_RED
        p = {"q_proj.weight": n(key_dim, HIDDEN), "k_proj.weight": n(key_dim, HIDDEN),
             "v_proj.weight": n(value_dim, HIDDEN), "g_proj.weight": n(value_dim, HIDDEN),
             "a_proj.weight": n(LIN_HEADS, HIDDEN), "b_proj.weight": n(LIN_HEADS, HIDDEN),
             "A_log": torch.log(1 + 15 * u(LIN_HEADS)), "dt_bias": dt + torch.log(-torch.expm1(-dt)),
             GEN + "w1.weight": n(red, HIDDEN), GEN + "w2.weight": n(value_dim * LIN_CONV, red),
             GEN + "w2.bias": n(value_dim * LIN_CONV, std=0.02), "o_norm.weight": 1 + n(head_v),
             "o_proj.weight": n(HIDDEN, value_dim)}
    else:  # gdn: src/blocks/gdn.c's order
        cb = 1 / math.sqrt(LIN_CONV)
        p = {"q_proj.weight": n(key_dim, HIDDEN), "k_proj.weight": n(key_dim, HIDDEN),
             "v_proj.weight": n(value_dim, HIDDEN), "a_proj.weight": n(LIN_HEADS, HIDDEN),
             "b_proj.weight": n(LIN_HEADS, HIDDEN), "A_log": torch.log(1 + 15 * u(LIN_HEADS)),
             "dt_bias": dt + torch.log(-torch.expm1(-dt)),
             "q_conv1d.weight": (2 * u(key_dim, 1, LIN_CONV) - 1) * cb,
             "k_conv1d.weight": (2 * u(key_dim, 1, LIN_CONV) - 1) * cb,
             "v_conv1d.weight": (2 * u(value_dim, 1, LIN_CONV) - 1) * cb,
             "g_proj.weight": n(value_dim, HIDDEN), "o_norm.weight": 1 + n(head_v),
             "o_proj.weight": n(HIDDEN, value_dim)}
    return {k: f32(v) for k, v in p.items()}


class Block(torch.nn.Module):
    """A linear block in place of transformers' self_attn: same call, (output, no attention weights)."""

    def __init__(self, kind, params):
        super().__init__()
        self.kind, self.params = kind, params

    def forward(self, hidden_states, *args, **kwargs):
        fn = jl.layer if self.kind == "jet" else gl.layer
        return fn(self.params, hidden_states), None


# ---- the same hybrid in plain torch (the cross-check) ----

def rmsnorm(x, w, eps):
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * w


def rope(x):  # x [B, T, H, D], positions 0 .. T-1, rotate-half
    D = x.shape[-1]
    inv = 1.0 / (THETA ** (torch.arange(0, D, 2, dtype=torch.float64) / D))
    ang = torch.arange(x.shape[1], dtype=torch.float64)[:, None] * inv[None]
    cos, sin = torch.cat([ang.cos(), ang.cos()], -1)[None, :, None], torch.cat([ang.sin(), ang.sin()], -1)[None, :, None]
    x1, x2 = x[..., : D // 2], x[..., D // 2:]
    return x * cos + torch.cat([-x2, x1], -1) * sin


def attention(P, pre, x, window):
    Bn, Tn, _ = x.shape
    q = (x @ P[pre + "q_proj.weight"].T + P[pre + "q_proj.bias"]).unflatten(-1, (HEADS, HEAD_DIM))
    k = (x @ P[pre + "k_proj.weight"].T + P[pre + "k_proj.bias"]).unflatten(-1, (KV, HEAD_DIM))
    v = (x @ P[pre + "v_proj.weight"].T + P[pre + "v_proj.bias"]).unflatten(-1, (KV, HEAD_DIM))
    q, k = rope(q), rope(k)
    k, v = k.repeat_interleave(HEADS // KV, dim=2), v.repeat_interleave(HEADS // KV, dim=2)
    s = torch.einsum("bthd,bshd->bhts", q, k) * HEAD_DIM ** -0.5
    pos = torch.arange(Tn)
    allowed = pos[None, :] <= pos[:, None]
    if window:
        allowed &= (pos[:, None] - pos[None, :]) < window
    s = s.masked_fill(~allowed, float("-inf"))
    o = torch.einsum("bhts,bshd->bthd", s.softmax(-1), v).flatten(-2)
    return o @ P[pre + "o_proj.weight"].T


def plain_forward(P, ids, types):
    x = P["model.embed_tokens.weight"][ids]
    for l, kind in enumerate(types):
        pre = f"model.layers.{l}."
        h = rmsnorm(x, P[pre + "input_layernorm.weight"], EPS)
        if kind in ("attn", "swa"):
            h = attention(P, pre + "self_attn.", h, WINDOW if kind == "swa" else 0)
        else:
            bp = {k[len(pre + "self_attn."):]: v for k, v in P.items() if k.startswith(pre + "self_attn.")}
            h = (jl.layer if kind == "jet" else gl.layer)(bp, h)
        x = x + h
        h = rmsnorm(x, P[pre + "post_attention_layernorm.weight"], EPS)
        h = (F.silu(h @ P[pre + "mlp.gate_proj.weight"].T) * (h @ P[pre + "mlp.up_proj.weight"].T))
        x = x + h @ P[pre + "mlp.down_proj.weight"].T
    return rmsnorm(x, P["model.norm.weight"], EPS) @ P["lm_head.weight"].T


def save(out, name, config, weights, ids, R, logits, loss, grads):
    d = os.path.join(out, name)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "config.json"), "w") as f:
        json.dump(config, f, indent=2)
        f.write("\n")
    save_file({k: v.float().contiguous() for k, v in weights.items()}, os.path.join(d, "model.safetensors"),
              metadata={"format": "pt"})
    g = {"ids": ids.to(torch.int32).contiguous(), "R": R.float().reshape(B * T, VOCAB).contiguous(),
         "logits": logits.float().reshape(B * T, VOCAB).contiguous(), "loss": loss.reshape(1).contiguous()}
    for k, v in grads.items():
        assert v is not None, k
        g["grad." + k] = v.float().contiguous()
    save_file(g, os.path.join(d, "golden.safetensors"))
    size = sum(os.path.getsize(os.path.join(d, f)) for f in os.listdir(d))
    worst = max(v.abs().max().item() for v in grads.values())
    print(f"{d}: loss {loss.item():.6f}, {len(grads)} parameter gradients (max |g| {worst:.3e}), {size} bytes")


def hybrid(out):
    from transformers import Qwen2Config, Qwen2ForCausalLM

    gen = torch.Generator().manual_seed(2025)
    cfg = Qwen2Config(vocab_size=VOCAB, hidden_size=HIDDEN, intermediate_size=INTER, num_hidden_layers=4,
                      num_attention_heads=HEADS, num_key_value_heads=KV, head_dim=HEAD_DIM, rms_norm_eps=EPS,
                      rope_theta=THETA, max_position_embeddings=512, tie_word_embeddings=False,
                      use_sliding_window=True, sliding_window=WINDOW,
                      layer_types=["full_attention", "sliding_attention", "full_attention", "full_attention"],
                      attn_implementation="eager")
    model = Qwen2ForCausalLM(cfg).double().eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("layernorm.weight") or name == "model.norm.weight":
                p.copy_(f32(1 + 0.1 * torch.randn(p.shape, generator=gen, dtype=torch.float64)))
            else:
                p.copy_(f32(0.15 * torch.randn(p.shape, generator=gen, dtype=torch.float64)))
    blocks = {}
    for l, kind in enumerate(LAYER_TYPES):
        if kind in ("jet", "gdn"):
            bp = {k: v.clone().requires_grad_(True) for k, v in block_params(kind, gen).items()}
            model.model.layers[l].self_attn = Block(kind, bp)
            blocks[l] = bp
    ids = torch.randint(0, VOCAB, (B, T), generator=gen)
    R = torch.randn(B, T, VOCAB, generator=gen, dtype=torch.float64).float().double()
    logits = model(input_ids=ids).logits
    loss = (logits * R).sum()
    loss.backward()
    weights = {n: p.detach() for n, p in model.named_parameters()}
    grads = {n: p.grad for n, p in model.named_parameters()}
    for l, bp in blocks.items():
        for k, v in bp.items():
            weights[f"model.layers.{l}.self_attn.{k}"] = v.detach()
            grads[f"model.layers.{l}.self_attn.{k}"] = v.grad
    # the plain torch hybrid must agree
    with torch.no_grad():
        ref = plain_forward(weights, ids, LAYER_TYPES)
        err = ((ref - logits).norm() / logits.norm()).item()
    # transformers computes RMSNorm and the RoPE tables in float32 even in a float64 model, hence ~1e-7
    print(f"hybrid: transformers-based vs plain torch logits rel err {err:.2e}")
    assert err < 1e-5, err
    # the window matters: the same weights with layer 1 as full attention give other logits
    with torch.no_grad():
        d = ((plain_forward(weights, ids, ["attn", "attn", "jet", "gdn"]) - logits).norm() / logits.norm()).item()
    print(f"hybrid: layer 1 without its window changes the logits by rel {d:.2e}")
    assert d > 1e-3, d
    config = {"model_type": "jet_nemotron", "architectures": ["JetNemotronForCausalLM"], "hidden_size": HIDDEN,
              "intermediate_size": INTER, "num_hidden_layers": 4, "num_attention_heads": HEADS,
              "num_key_value_heads": KV, "head_dim": HEAD_DIM, "vocab_size": VOCAB, "rms_norm_eps": EPS,
              "rope_theta": THETA, "max_position_embeddings": 512, "tie_word_embeddings": False,
              "hidden_act": "silu", "layer_types": LAYER_TYPES,
              "efficient_attention_config": {
                  "jet": {"num_heads": LIN_HEADS, "head_dim": LIN_DK, "expand_v": LIN_EXPAND, "conv_size": LIN_CONV,
                          "dconv_generator_reduction": LIN_RED, "norm_eps": LIN_EPS, "mode": "chunk"},
                  "gdn": {"num_heads": LIN_HEADS, "head_dim": LIN_DK, "expand_v": LIN_EXPAND, "conv_size": LIN_CONV,
                          "norm_eps": LIN_EPS},
                  "swa": {"window_size": WINDOW}}}
    save(out, "hybrid", config, weights, ids, R, logits.detach(), loss.detach(), grads)


def qwen3(out):
    from transformers import Qwen3Config, Qwen3ForCausalLM

    gen = torch.Generator().manual_seed(2026)
    cfg = Qwen3Config(vocab_size=VOCAB, hidden_size=32, intermediate_size=64, num_hidden_layers=3,
                      num_attention_heads=4, num_key_value_heads=2, head_dim=16, rms_norm_eps=EPS, rope_theta=THETA,
                      max_position_embeddings=512, tie_word_embeddings=False, attention_bias=False,
                      attn_implementation="eager")
    model = Qwen3ForCausalLM(cfg).double().eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("norm.weight"):
                p.copy_(f32(1 + 0.1 * torch.randn(p.shape, generator=gen, dtype=torch.float64)))
            else:
                p.copy_(f32(0.15 * torch.randn(p.shape, generator=gen, dtype=torch.float64)))
    ids = torch.randint(0, VOCAB, (B, T), generator=gen)
    R = torch.randn(B, T, VOCAB, generator=gen, dtype=torch.float64).float().double()
    logits = model(input_ids=ids).logits
    loss = (logits * R).sum()
    loss.backward()
    d = os.path.join(out, "qwen3")
    os.makedirs(d, exist_ok=True)
    cfg.save_pretrained(d)
    weights = {n: p.detach() for n, p in model.named_parameters()}
    grads = {n: p.grad for n, p in model.named_parameters()}
    with open(os.path.join(d, "config.json")) as f:
        config = json.load(f)
    save(out, "qwen3", config, weights, ids, R, logits.detach(), loss.detach(), grads)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "goldens", "model_grad"))
    out = ap.parse_args().out
    torch.set_grad_enabled(True)
    hybrid(out)
    qwen3(out)


if __name__ == "__main__":
    main()
