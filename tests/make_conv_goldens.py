"""Goldens for the causal depthwise convolutions (fla's ShortConvolution and JetBlock's dynamic
convolution), forward and backward, from torch autograd in float64.

    python3 tests/make_conv_goldens.py [--out tests/goldens/conv]

static:  y = act(conv1d(x^T, w[C, 1, W], bias, groups=C, padding=W-1)[..., :T])^T   (nn.Conv1d as fla uses it)
dynamic: y[t, c] = act(sum_j k[t, c, j] * x[t - W + 1 + j, c]) with zero left padding (JetBlock)
Each case stores x [B, T, C], w [C, W] (static) or k [B, T, C, W] (dynamic), bias, dy, and y, dx, dw,
dbias or dk. Inputs are rounded to fp32 first so the C side sees exactly these values.
"""
import argparse
import os

import torch
import torch.nn.functional as F
from safetensors.torch import save_file

CASES = [  # name, B, T, C, W, dynamic, bias, silu
    ("static_silu", 2, 9, 6, 4, False, False, True),
    ("static_bias", 1, 5, 3, 4, False, True, False),
    ("static_t1", 1, 1, 4, 4, False, True, True),
    ("dynamic_silu", 2, 7, 5, 4, True, False, True),
    ("dynamic_w3", 1, 6, 4, 3, True, False, True),
]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "goldens", "conv"))
    out = ap.parse_args().out
    os.makedirs(out, exist_ok=True)
    for i, (name, B, T, C, W, dynamic, has_bias, silu) in enumerate(CASES):
        g = torch.Generator().manual_seed(7 + i)
        r = lambda *s: torch.randn(*s, generator=g, dtype=torch.float64).float().double()
        x, dy = r(B, T, C).requires_grad_(), r(B, T, C)
        t = {"x": x, "dy": dy}
        if dynamic:
            k = r(B, T, C, W).requires_grad_()
            xp = F.pad(x, (0, 0, W - 1, 0))  # zero rows before the sequence
            win = xp.unfold(1, W, 1)  # [B, T, C, W]: window ending at t
            z = (win * k).sum(-1)
            t["k"] = k
        else:
            w = r(C, W).requires_grad_()
            bias = r(C).requires_grad_() if has_bias else None
            z = F.conv1d(x.transpose(1, 2), w.unsqueeze(1), bias, padding=W - 1, groups=C)[..., :T].transpose(1, 2)
            t["w"] = w
            if has_bias:
                t["bias"] = bias
        y = F.silu(z) if silu else z
        y.backward(dy)
        t["y"] = y
        t["dx"] = x.grad
        if dynamic:
            t["dk"] = t["k"].grad
        else:
            t["dw"] = t["w"].grad
            if has_bias:
                t["dbias"] = t["bias"].grad
        meta = {"W": str(W), "dynamic": str(int(dynamic)), "silu": str(int(silu))}
        save_file({n: v.detach().float().contiguous() for n, v in t.items()}, os.path.join(out, name + ".safetensors"),
                  metadata=meta)
        print(name, B, T, C, W)


if __name__ == "__main__":
    main()
