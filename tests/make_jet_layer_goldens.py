"""Golden for the JetBlock layer forward (src/blocks/jet_cpu.c): Jet-Nemotron's JetBlock
(NVlabs/Jet-Nemotron, jetai/modeling/hf/jet_block.py and jetai/modeling/hf/dynamic_conv.py) re-written in
torch float64, step for step:

    q, k    = silu(q_proj x), silu(k_proj x)                     no convolution on q and k
    K_t     = w2(silu(w1 x_t)) + b2, 'b t (d w) -> b t d w'      DynamicShortConvolution.get_kernel
    v       = silu(sum_w K_t[d, w] * pad(v_proj x)[t + w, d])    _forward_naive: left zero pad W - 1, unfold
    beta    = sigmoid(b_proj x)
    g       = -exp(A_log) * softplus(a_proj x + dt_bias)
    o       = delta rule(l2norm(q), l2norm(k), v, g, beta)       chunk_gated_delta_rule(use_qk_l2norm_in_kernel=True)
    o       = rmsnorm(o, eps) * o_norm.weight * silu(g_proj x)   FusedRMSNormGated, per head over d_v
    y       = o_proj o

The recurrence is our own float64 loop, cross-checked here against fla's naive_recurrent_gated_delta_rule
(fp32); the dynamic convolution is computed twice (unfold as Jet-Nemotron's _forward_naive, and an explicit
tap loop) and compared. The generator weights are NON-zero (N(0, 0.1)) so the dynamic path is exercised;
w2's bias is N(0, 0.02) as the released init. Parameters use src/blocks/jet.c's names; all inputs are
rounded to fp32 first so the C side sees exactly these values.

The backward golden: for a fixed upstream gradient dy (N(0, 1), drawn after x), torch float64 autograd's
dx ("dx") and the gradient of every parameter ("grad." + its name), through the very same `layer`.

    python3 tests/make_jet_layer_goldens.py [--out tests/goldens/jet_layer]
"""
import argparse
import math
import os

import torch
import torch.nn.functional as F
from safetensors.torch import save_file

HIDDEN, HEADS, DK, EXPAND_V, CONV, RED, EPS = 32, 2, 16, 2.0, 4, 8, 1e-5
B, T = 2, 70
GEN = "dynamic_conv1d.kernel_generator."


def l2norm(x, eps=1e-6):  # fla's l2norm_fwd: x / sqrt(sum x^2 + eps)
    return x / torch.sqrt((x * x).sum(-1, keepdim=True) + eps)


def recurrence(q, k, v, g, beta, scale):  # q, k [B, T, H, K]; v [B, T, H, V]; g, beta [B, T, H]
    Bn, Tn, H, K = q.shape
    V = v.shape[-1]
    S = torch.zeros(Bn, H, K, V, dtype=q.dtype)
    o = torch.zeros(Bn, Tn, H, V, dtype=q.dtype)
    for t in range(Tn):
        S = S * g[:, t].exp()[..., None, None]
        u = beta[:, t, :, None] * (v[:, t] - torch.einsum("bhkv,bhk->bhv", S, k[:, t]))
        S = S + k[:, t, :, :, None] * u[:, :, None, :]
        o[:, t] = torch.einsum("bhkv,bhk->bhv", S, q[:, t] * scale)
    return o


def dynamic_conv(p, vraw, x):  # DynamicShortConvolution: kernels from x, causal conv of vraw, then SiLU
    W = CONV
    flat = F.silu(x @ p[GEN + "w1.weight"].T) @ p[GEN + "w2.weight"].T + p[GEN + "w2.bias"]
    kern = flat.unflatten(-1, (-1, W))  # 'b t (d w) -> b t d w'
    xu = F.pad(vraw.transpose(1, 2), (W - 1, 0)).unfold(2, W, 1).permute(0, 2, 1, 3)  # [B, T, D, W]
    z = (xu * kern).sum(-1)
    # the same by an explicit tap loop: tap w reads token t - (W - 1) + w
    z2 = torch.zeros_like(z)
    for w in range(W):
        s = W - 1 - w
        z2[:, s:] += kern[:, s:, :, w] * vraw[:, : vraw.shape[1] - s]
    assert (z - z2).abs().max().item() < 1e-12
    return F.silu(z)


def layer(p, x, check_fla=False):
    head_v = int(DK * EXPAND_V)
    q = F.silu(x @ p["q_proj.weight"].T).unflatten(-1, (HEADS, DK))
    k = F.silu(x @ p["k_proj.weight"].T).unflatten(-1, (HEADS, DK))
    v = dynamic_conv(p, x @ p["v_proj.weight"].T, x).unflatten(-1, (HEADS, head_v))
    beta = torch.sigmoid(x @ p["b_proj.weight"].T)
    g = -p["A_log"].exp() * F.softplus(x @ p["a_proj.weight"].T + p["dt_bias"])
    qn, kn = l2norm(q), l2norm(k)
    o = recurrence(qn, kn, v, g, beta, DK ** -0.5)
    if check_fla:
        from fla.ops.gated_delta_rule.naive import naive_recurrent_gated_delta_rule

        o32, _ = naive_recurrent_gated_delta_rule(qn, kn, v, beta, g, scale=DK ** -0.5)
        err = ((o32.double() - o).norm() / o.norm()).item()
        print(f"own float64 recurrence vs fla naive (fp32): rel err {err:.2e}")
        assert err < 1e-5, err
    gate = (x @ p["g_proj.weight"].T).unflatten(-1, (HEADS, head_v))
    rstd = torch.rsqrt(o.pow(2).mean(-1, keepdim=True) + EPS)
    o = o * rstd * p["o_norm.weight"] * F.silu(gate)
    return o.flatten(-2) @ p["o_proj.weight"].T


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "goldens", "jet_layer"))
    out = ap.parse_args().out
    os.makedirs(out, exist_ok=True)
    gen = torch.Generator().manual_seed(4321)
    key_dim, value_dim, head_v = HEADS * DK, int(HEADS * DK * EXPAND_V), int(DK * EXPAND_V)
    red = value_dim // RED  # generator hidden size: value_dim // dconv_generator_reduction
    n = lambda *s, std=0.1: torch.randn(*s, generator=gen, dtype=torch.float64) * std
    u = lambda *s: torch.rand(*s, generator=gen, dtype=torch.float64)
    dt = torch.exp(u(HEADS) * (math.log(0.1) - math.log(0.001)) + math.log(0.001)).clamp(min=1e-4)
    p = {  # in src/blocks/jet.c's order
        "q_proj.weight": n(key_dim, HIDDEN),
        "k_proj.weight": n(key_dim, HIDDEN),
        "v_proj.weight": n(value_dim, HIDDEN),
        "g_proj.weight": n(value_dim, HIDDEN),
        "a_proj.weight": n(HEADS, HIDDEN),
        "b_proj.weight": n(HEADS, HIDDEN),
        "A_log": torch.log(1 + 15 * u(HEADS)),  # log U(1, 16)
        "dt_bias": dt + torch.log(-torch.expm1(-dt)),
        GEN + "w1.weight": n(red, HIDDEN),
        GEN + "w2.weight": n(value_dim * CONV, red),
        GEN + "w2.bias": n(value_dim * CONV, std=0.02),
        "o_norm.weight": 1 + n(head_v),
        "o_proj.weight": n(HIDDEN, value_dim),
    }
    p = {k_: v_.float().double() for k_, v_ in p.items()}
    x = torch.randn(B, T, HIDDEN, generator=gen, dtype=torch.float64).float().double()
    y = layer(p, x, check_fla=True)
    # the dynamic part matters: zeroing the generator weights changes y
    p0 = dict(p, **{GEN + "w1.weight": torch.zeros_like(p[GEN + "w1.weight"])})
    d = ((layer(p0, x) - y).norm() / y.norm()).item()
    print(f"y with w1 = 0 differs by rel {d:.2e}")
    assert d > 1e-3, d
    t = {k_: v_.float().contiguous() for k_, v_ in p.items()}
    t["x"] = x.float()
    t["y"] = y.float()
    # backward: autograd through the same float64 layer, for a seeded dy
    dy = torch.randn(B, T, HIDDEN, generator=gen, dtype=torch.float64).float().double()
    pg = {k_: v_.clone().requires_grad_(True) for k_, v_ in p.items()}
    xg = x.clone().requires_grad_(True)
    yg = layer(pg, xg)
    assert torch.equal(yg.detach(), y)
    yg.backward(dy)
    t["dy"] = dy.float()
    t["dx"] = xg.grad.float()
    for k_, v_ in pg.items():
        assert v_.grad is not None and v_.grad.abs().max().item() > 0, k_
        t["grad." + k_] = v_.grad.float().contiguous()
    meta = {"hidden": str(HIDDEN), "heads": str(HEADS), "head_k": str(DK), "expand_v": str(EXPAND_V),
            "conv": str(CONV), "reduction": str(RED), "eps": str(EPS)}
    path = os.path.join(out, "jet_layer.safetensors")
    save_file(t, path, metadata=meta)
    print(f"{path}: y rms {y.pow(2).mean().sqrt().item():.3e}, {os.path.getsize(path)} bytes")


if __name__ == "__main__":
    main()
