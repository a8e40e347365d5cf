"""Golden for the Gated DeltaNet layer forward (src/blocks/gdn_cpu.c): fla's GatedDeltaNet (fla 0.6.0,
fla/layers/gated_deltanet.py; mode chunk, use_gate, use_short_conv, conv_bias off, allow_neg_eigval off)
re-written in torch float64, step for step:

    q, k, v = silu(causal depthwise conv(q/k/v_proj x))         ShortConvolution(activation='silu')
    beta    = sigmoid(b_proj x)                                  use_beta_sigmoid_in_kernel, scale 1
    g       = -exp(A_log) * softplus(a_proj x + dt_bias)         use_gate_in_kernel (naive_gdn_gate)
    o       = delta rule(l2norm(q), l2norm(k), v, g, beta)       use_qk_l2norm_in_kernel (eps 1e-6), scale d_k^-1/2
    o       = rmsnorm(o, eps) * o_norm.weight * silu(g_proj x)   FusedRMSNormGated(activation='swish'), per head
    y       = o_proj o

The recurrence is our own float64 loop, cross-checked here against fla's naive_recurrent_gated_delta_rule
(which computes in fp32). Parameters use src/blocks/gdn.c's names; all inputs are rounded to fp32 first so
the C side sees exactly these values.

The backward golden: for a fixed upstream gradient dy (N(0, 1), drawn after x), torch float64 autograd's
dx ("dx") and the gradient of every parameter ("grad." + its name), through the very same `layer`.

    python3 tests/make_gdn_layer_goldens.py [--out tests/goldens/gdn_layer]
"""
import argparse
import math
import os

import torch
import torch.nn.functional as F
from safetensors.torch import save_file

HIDDEN, HEADS, DK, EXPAND_V, CONV, EPS = 32, 2, 16, 2.0, 4, 1e-5
B, T = 2, 70


def conv_silu(x, w):  # x [B, T, C], w [C, 1, W]: causal depthwise conv (zero left padding), then SiLU
    W = w.shape[-1]
    z = F.conv1d(x.transpose(1, 2), w, None, padding=W - 1, groups=x.shape[-1])[..., : x.shape[1]]
    return F.silu(z.transpose(1, 2))


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


def layer(p, x, check_fla=False):
    key_dim, head_v = HEADS * DK, int(DK * EXPAND_V)
    q = conv_silu(x @ p["q_proj.weight"].T, p["q_conv1d.weight"])
    k = conv_silu(x @ p["k_proj.weight"].T, p["k_conv1d.weight"])
    v = conv_silu(x @ p["v_proj.weight"].T, p["v_conv1d.weight"])
    q = q.unflatten(-1, (HEADS, DK))  # '... (h d) -> ... h d'
    k = k.unflatten(-1, (HEADS, DK))
    v = v.unflatten(-1, (HEADS, head_v))
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
    o = o.flatten(-2)  # 'b t h d -> b t (h d)'
    return o @ p["o_proj.weight"].T


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "goldens", "gdn_layer"))
    out = ap.parse_args().out
    os.makedirs(out, exist_ok=True)
    gen = torch.Generator().manual_seed(1234)
    key_dim, value_dim, head_v = HEADS * DK, int(HEADS * DK * EXPAND_V), int(DK * EXPAND_V)
    n = lambda *s, std=0.1: torch.randn(*s, generator=gen, dtype=torch.float64) * std
    u = lambda *s: torch.rand(*s, generator=gen, dtype=torch.float64)
    # dt_bias as fla initializes it: dt log-uniform in [1e-3, 1e-1], clamped at 1e-4, inverse softplus.
    dt = torch.exp(u(HEADS) * (math.log(0.1) - math.log(0.001)) + math.log(0.001)).clamp(min=1e-4)
    cb = 1 / math.sqrt(CONV)  # nn.Conv1d's default init bound for the short convolutions (fan_in = W)
    p = {  # in src/blocks/gdn.c's order
        "q_proj.weight": n(key_dim, HIDDEN),
        "k_proj.weight": n(key_dim, HIDDEN),
        "v_proj.weight": n(value_dim, HIDDEN),
        "a_proj.weight": n(HEADS, HIDDEN),
        "b_proj.weight": n(HEADS, HIDDEN),
        "A_log": torch.log(1 + 15 * u(HEADS)),  # log U(1, 16)
        "dt_bias": dt + torch.log(-torch.expm1(-dt)),
        "q_conv1d.weight": (2 * u(key_dim, 1, CONV) - 1) * cb,
        "k_conv1d.weight": (2 * u(key_dim, 1, CONV) - 1) * cb,
        "v_conv1d.weight": (2 * u(value_dim, 1, CONV) - 1) * cb,
        "g_proj.weight": n(value_dim, HIDDEN),
        "o_norm.weight": 1 + n(head_v),
        "o_proj.weight": n(HIDDEN, value_dim),
    }
    p = {k_: v_.float().double() for k_, v_ in p.items()}
    x = torch.randn(B, T, HIDDEN, generator=gen, dtype=torch.float64).float().double()
    y = layer(p, x, check_fla=True)
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
        t["grad." + k_] = v_.grad.float().contiguous()
    meta = {"hidden": str(HIDDEN), "heads": str(HEADS), "head_k": str(DK), "expand_v": str(EXPAND_V),
            "conv": str(CONV), "eps": str(EPS)}
    path = os.path.join(out, "gdn_layer.safetensors")
    save_file(t, path, metadata=meta)
    print(f"{path}: y rms {y.pow(2).mean().sqrt().item():.3e}, {os.path.getsize(path)} bytes")


if __name__ == "__main__":
    main()
