"""Goldens for the CPU backward ops of the model's frozen and trainable pieces, from torch autograd in
float64: RMSNorm (HF Qwen2RMSNorm), the gated RMSNorm of linear-attention outputs (fla FusedRMSNormGated,
swish gate), SwiGLU and the linear layer y = x W^T + b.

    python3 tests/make_backward_goldens.py [--out tests/goldens/backward]
"""
import argparse
import os

import torch
import torch.nn.functional as F
from safetensors.torch import save_file


def rnd(g, *s, scale=1.0):
    return (torch.randn(*s, generator=g, dtype=torch.float64) * scale).float().double().requires_grad_()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "goldens", "backward"))
    out = ap.parse_args().out
    os.makedirs(out, exist_ok=True)
    g = torch.Generator().manual_seed(11)
    eps = 1e-6
    t = {}
    # RMSNorm over rows of D = 24.
    x, w, dy = rnd(g, 7, 24), (1 + rnd(g, 24, scale=0.2)).detach().requires_grad_(), rnd(g, 7, 24)
    y = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * w
    y.backward(dy)
    t.update(rms_x=x, rms_w=w, rms_dy=dy, rms_y=y, rms_dx=x.grad, rms_dw=w.grad)
    # Gated RMSNorm over rows of D = 16 (eps 1e-5 as JetBlock's norm_eps).
    x, gt, w, dy = rnd(g, 9, 16), rnd(g, 9, 16), (1 + rnd(g, 16, scale=0.2)).detach().requires_grad_(), rnd(g, 9, 16)
    y = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-5) * w * F.silu(gt)
    y.backward(dy)
    t.update(grms_x=x, grms_g=gt, grms_w=w, grms_dy=dy, grms_y=y, grms_dx=x.grad, grms_dg=gt.grad, grms_dw=w.grad)
    # SwiGLU.
    gate, up, dy = rnd(g, 5, 12), rnd(g, 5, 12), rnd(g, 5, 12)
    y = F.silu(gate) * up
    y.backward(dy)
    t.update(swi_gate=gate, swi_up=up, swi_dy=dy, swi_y=y, swi_dgate=gate.grad, swi_dup=up.grad)
    # Linear: x [6, 10], W [7, 10], b [7].
    x, W, b, dy = rnd(g, 6, 10), rnd(g, 7, 10), rnd(g, 7), rnd(g, 6, 7)
    y = x @ W.T + b
    y.backward(dy)
    t.update(lin_x=x, lin_w=W, lin_b=b, lin_dy=dy, lin_y=y, lin_dx=x.grad, lin_dw=W.grad, lin_db=b.grad)
    save_file({k: v.detach().float().contiguous() for k, v in t.items()}, os.path.join(out, "ops.safetensors"))
    print("wrote", len(t), "tensors")


if __name__ == "__main__":
    main()
