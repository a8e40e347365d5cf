"""Goldens for causal / sliding-window GQA attention, forward and backward, from torch autograd in float64.

    python3 tests/make_attention_goldens.py [--out tests/goldens/attention]

Each case writes <name>.safetensors with inputs q [B,T,Hq,D], k and v [B,T,Hkv,D], the upstream gradient
do [B,T,Hq,D], and torch's o, dq, dk, dv. Attention is computed the textbook way (scores, mask, softmax,
weighted sum) in float64 so the goldens carry no rounding of their own; query head h reads kv head
h // (Hq // Hkv); key s is visible to query t iff s <= t and (window == 0 or t - s < window), the Hugging Face
sliding-window rule. The C tests compare their fp32 CPU backward against these (and their CUDA backward
against the CPU one).
"""
import argparse
import os

import torch
from safetensors.torch import save_file

CASES = [  # name, B, T, Hq, Hkv, D, window
    ("mha_t1", 1, 1, 2, 2, 8, 0),
    ("gqa_t17", 2, 17, 4, 2, 16, 0),
    ("gqa_t40_win5", 1, 40, 6, 2, 8, 5),
    ("mqa_t33", 1, 33, 4, 1, 32, 0),
    ("gqa_t64_win64", 2, 64, 4, 2, 16, 64),
]


def attention(q, k, v, window):
    B, T, Hq, D = q.shape
    Hkv = k.shape[2]
    k = k.repeat_interleave(Hq // Hkv, dim=2)
    v = v.repeat_interleave(Hq // Hkv, dim=2)
    s = torch.einsum("bthd,bshd->bhts", q, k) / D**0.5
    t = torch.arange(T)[:, None]
    c = torch.arange(T)[None, :]
    visible = c <= t
    if window:
        visible &= (t - c) < window
    s = s.masked_fill(~visible, float("-inf"))
    p = torch.softmax(s, dim=-1)
    return torch.einsum("bhts,bshd->bthd", p, v)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "goldens", "attention"))
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    for i, (name, B, T, Hq, Hkv, D, window) in enumerate(CASES):
        g = torch.Generator().manual_seed(100 + i)
        q = torch.randn(B, T, Hq, D, generator=g, dtype=torch.float64) * 1.5
        k = torch.randn(B, T, Hkv, D, generator=g, dtype=torch.float64) * 1.5
        v = torch.randn(B, T, Hkv, D, generator=g, dtype=torch.float64)
        do = torch.randn(B, T, Hq, D, generator=g, dtype=torch.float64)
        # The inputs are rounded to fp32 first, so the C side sees exactly these values.
        q, k, v, do = (x.float().double().requires_grad_(x is not do) for x in (q, k, v, do))
        o = attention(q, k, v, window)
        o.backward(do)
        t = {"q": q, "k": k, "v": v, "do": do, "o": o, "dq": q.grad, "dk": k.grad, "dv": v.grad}
        meta = {"window": str(window)}
        save_file({n: x.detach().float().contiguous() for n, x in t.items()}, os.path.join(args.out, name + ".safetensors"),
                  metadata=meta)
        print(f"{name}: B {B} T {T} Hq {Hq} Hkv {Hkv} D {D} window {window}")


if __name__ == "__main__":
    main()
