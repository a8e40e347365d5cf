#!/usr/bin/env python3
"""make_gdn_goldens.py -- goldens for the Gated DeltaNet op (kernels/cpu/gdn.c) from fla's naive references.

Usage:
    python3 tests/make_gdn_goldens.py [--out tests/goldens/gdn]

Needs torch (CPU is enough), safetensors and flash-linear-attention (`pip install
flash-linear-attention`; written against fla 0.6.0, whose import warns that Triton is unsupported on a
CPU-only machine and falls back -- the naive references are plain torch and run anywhere).

Reference functions (fla 0.6.0):
    fla.ops.gated_delta_rule.naive.naive_recurrent_gated_delta_rule(q, k, v, beta, g, scale,
        initial_state, output_final_state)        -- [B, T, H, D] layout; casts to float32 internally
    fla.ops.delta_rule.naive.delta_rule_recurrence(q, k, v, beta, initial_state, output_final_state)
        -- [B, H, T, D] layout, scale fixed at K^-1/2 (used for the DeltaNet case)
Gradients come from torch autograd through those functions (float32) with the loss
    L = sum(o * do) + sum(ht * dht)            (dht = 0 when the file has no `dht`).

In-kernel L2 normalization (fla's use_qk_l2norm_in_kernel) is fla.modules.norm.l2norm's l2norm_fwd,
y = x / sqrt(sum(x^2) + 1e-6) per row; it is written out here in torch (l2norm below) ahead of the
naive reference, which knows nothing about it, so its backward is autograd's. Cases without it store
q and k already normalized by the same formula (raw N(0,1) keys would make the delta rule blow up).

Variable length: the naive references have no cu_seqlens, so the varlen golden runs each sequence
separately (tokens cu[n]:cu[n+1], initial state h0[n]) and concatenates o along T and stacks the
final states: exactly the semantics of fla's cu_seqlens (no state crosses a boundary).

Every case is also recomputed by an independent float64 recurrence (gdn_f64 below, autograd in
float64); the script prints the RMS ratio ||fla - f64|| / ||f64|| of every tensor and fails if any
exceeds 1e-5, so the goldens are known to be fp32-accurate. fla's naive chunk form
(naive_chunk_gated_delta_rule) is printed as a second opinion on the forward.

Each case is one file <out>/<name>.safetensors (all float32; cu_seqlens int32):
    inputs   q, k [B,T,H,K]  v [B,T,H,V]  g, beta [B,T,H]  h0 [N,H,K,V] (if any)  do [B,T,H,V]  dht [N,H,K,V] (if any)
             cu_seqlens [N+1] (varlen only)
    outputs  o [B,T,H,V]  ht [N,H,K,V]
    grads    dq, dk, dv, dg, dbeta (like the inputs)  dh0 (if h0)
    metadata scale, qk_l2norm ("0"/"1"), reference, fla_version, torch_version
Rerunning gives identical files (fixed seeds, one torch thread).
"""

import argparse
import json
import os
import struct
import sys

import torch
import torch.nn.functional as F

import fla
from fla.ops.delta_rule.naive import delta_rule_recurrence
from fla.ops.gated_delta_rule.naive import naive_chunk_gated_delta_rule, naive_recurrent_gated_delta_rule
from safetensors.torch import load_file

EPS = 1e-6

# name, B, T, H, K, V, has_h0, l2norm, has_dht, extra
CASES = [
    ("t1_h3", 2, 1, 3, 16, 24, True, False, True, {}),
    ("t63_h1", 1, 63, 1, 16, 24, False, False, False, {}),
    ("t65_h3_l2", 1, 65, 3, 16, 24, True, True, True, {}),
    ("t200_h1_l2", 1, 200, 1, 16, 24, False, True, True, {"decay": 0.05}),
    ("k32_v64", 1, 70, 1, 32, 64, True, True, True, {"scale": 0.25}),
    ("deltanet", 1, 65, 2, 16, 24, True, True, True, {"deltanet": True}),
    ("varlen", 1, 139, 2, 16, 24, True, True, True, {"cu_seqlens": [0, 5, 69, 139]}),
]


def save_safetensors(path, tensors, meta):
    """safetensors written by hand so reruns give byte-identical files (the library's writer orders the
    metadata keys differently from run to run): tensors in sorted-name order, sorted JSON keys, header
    padded with spaces to a multiple of 8 (REFERENCE.md §2)."""
    dt = {torch.float32: "F32", torch.int32: "I32"}
    header, blobs, off = {"__metadata__": dict(sorted(meta.items()))}, [], 0
    for name in sorted(tensors):
        t = tensors[name].contiguous()
        b = t.numpy().tobytes()
        header[name] = {"dtype": dt[t.dtype], "shape": list(t.shape), "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    js = json.dumps(header, separators=(",", ":")).encode()
    js += b" " * (-len(js) % 8)
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(js)) + js + b"".join(blobs))
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)
    back = load_file(path)  # the library must read it back bit-exactly
    assert all(torch.equal(back[n], tensors[n]) for n in tensors), path


def l2norm(x):
    return x * torch.rsqrt((x * x).sum(-1, keepdim=True) + EPS)


def rms_ratio(a, b):
    a, b = a.double(), b.double()
    den = b.pow(2).mean().sqrt().item()
    return (a - b).pow(2).mean().sqrt().item() / (den if den > 0 else 1.0)


def gdn_f64(q, k, v, g, beta, scale, h0):
    """The recurrence, written independently of fla, in whatever dtype it is given. [B,T,H,*] in."""
    B, T, H, K = q.shape
    V = v.shape[-1]
    S = h0.clone() if h0 is not None else q.new_zeros(B, H, K, V)
    outs = []
    for t in range(T):
        S = S * g[:, t].exp()[..., None, None]
        u = beta[:, t, :, None] * (v[:, t] - torch.einsum("bhkv,bhk->bhv", S, k[:, t]))
        S = S + k[:, t, :, :, None] * u[:, :, None, :]
        outs.append(torch.einsum("bhkv,bhk->bhv", S, q[:, t] * scale))
    return torch.stack(outs, 1), S


def run(fn, ins, cu, l2, scale, do, dht):
    """Forward through fn(q, k, v, g, beta, h0, scale) per sequence, backward, return outputs and grads."""
    ins = {n: (t.detach().clone().requires_grad_(True) if t is not None else None) for n, t in ins.items()}
    q, k = (l2norm(ins["q"]), l2norm(ins["k"])) if l2 else (ins["q"], ins["k"])
    os_, hs = [], []
    for n in range(len(cu) - 1):
        a, b = cu[n], cu[n + 1]
        sl = (lambda x: x[:, a:b]) if len(cu) > 2 else (lambda x: x)
        h0 = ins["h0"]
        if h0 is not None and len(cu) > 2:
            h0 = h0[n : n + 1]
        o, ht = fn(sl(q), sl(k), sl(ins["v"]), sl(ins["g"]), sl(ins["beta"]), h0, scale)
        os_.append(o)
        hs.append(ht)
    o = torch.cat(os_, 1)
    ht = torch.cat(hs, 0)
    loss = (o * do).sum() + ((ht * dht).sum() if dht is not None else 0.0)
    loss.backward()
    out = {"o": o.detach(), "ht": ht.detach()}
    for n, t in ins.items():
        if t is not None and t.grad is not None:  # g has none in the DeltaNet reference
            out["d" + n] = t.grad.detach()
    return out


def fla_gdn(q, k, v, g, beta, h0, scale):
    return naive_recurrent_gated_delta_rule(q, k, v, beta, g, scale=scale, initial_state=h0, output_final_state=True)


def fla_deltanet(q, k, v, g, beta, h0, scale):
    # [B, T, H, D] -> fla's [B, H, T, D]; g is unused (it stays zero) and the scale is fla's K^-1/2.
    tr = lambda x: x.transpose(1, 2)
    o, ht = delta_rule_recurrence(tr(q), tr(k), tr(v), beta.transpose(1, 2), initial_state=h0, output_final_state=True)
    return tr(o), ht


def own_f64(q, k, v, g, beta, h0, scale):
    return gdn_f64(q, k, v, g, beta, scale, h0)


def make_case(name, B, T, H, K, V, has_h0, l2, has_dht, extra, seed):
    gen = torch.Generator().manual_seed(seed)
    rn = lambda *s: torch.randn(*s, generator=gen, dtype=torch.float32)
    q, k, v = rn(B, T, H, K), rn(B, T, H, K), rn(B, T, H, V)
    if not l2:  # store keys/queries already normalized: the op then sees exactly these
        q, k = l2norm(q), l2norm(k)
    beta = torch.sigmoid(rn(B, T, H))
    g = -extra.get("decay", 0.5) * F.softplus(rn(B, T, H))
    if extra.get("deltanet"):
        g = torch.zeros(B, T, H)
    cu = extra.get("cu_seqlens", [0, T])
    N = len(cu) - 1 if "cu_seqlens" in extra else B
    h0 = rn(N, H, K, V) if has_h0 else None
    do = rn(B, T, H, V)
    dht = rn(N, H, K, V) if has_dht else None
    scale = extra.get("scale", K**-0.5)
    ins = {"q": q, "k": k, "v": v, "g": g, "beta": beta, "h0": h0}

    ref = run(fla_gdn, ins, cu, l2, scale, do, dht)
    reference = "fla.ops.gated_delta_rule.naive.naive_recurrent_gated_delta_rule"
    if extra.get("deltanet"):
        dn = run(fla_deltanet, ins, cu, l2, scale, do, dht)
        for n, t in dn.items():  # the DeltaNet reference has no g: dg comes from the GDN reference at g = 0
            if n != "dg":
                err = rms_ratio(t, ref[n])
                assert err < 1e-5, f"{name}: DeltaNet and GDN(g=0) references disagree on {n}: {err:.2e}"
                ref[n] = t
        reference = "fla.ops.delta_rule.naive.delta_rule_recurrence (dg: naive_recurrent_gated_delta_rule at g = 0)"
    if len(cu) > 2:
        reference += ", run per sequence and concatenated (varlen)"

    ins64 = {n: (t.double() if t is not None else None) for n, t in ins.items()}
    f64 = run(own_f64, ins64, cu, l2, scale, do.double(), dht.double() if dht is not None else None)
    worst = 0.0
    errs = []
    for n in ref:
        e = rms_ratio(ref[n], f64[n])
        worst = max(worst, e)
        errs.append(f"{n} {e:.1e}")
    line = f"{name}: fla fp32 vs float64 recurrence: " + ", ".join(errs)
    if len(cu) == 2 and not extra.get("deltanet"):
        qq, kk = (l2norm(q), l2norm(k)) if l2 else (q, k)
        oc, hc = naive_chunk_gated_delta_rule(qq, kk, v, g, beta, scale=scale, initial_state=h0, output_final_state=True)
        line += f"; fla naive chunk o {rms_ratio(oc, f64['o']):.1e} ht {rms_ratio(hc, f64['ht']):.1e}"
    print(line)
    if worst > 1e-5:
        sys.exit(f"{name}: fla's fp32 reference is off the float64 recurrence by {worst:.2e}")

    tensors = {"q": q, "k": k, "v": v, "g": g, "beta": beta, "do": do}
    if h0 is not None:
        tensors["h0"] = h0
    if dht is not None:
        tensors["dht"] = dht
    if len(cu) > 2:
        tensors["cu_seqlens"] = torch.tensor(cu, dtype=torch.int32)
    for n, t in ref.items():
        tensors[n] = t.float()
    tensors = {n: t.contiguous() for n, t in tensors.items()}
    meta = {
        "scale": repr(float(scale)),
        "qk_l2norm": "1" if l2 else "0",
        "reference": reference,
        "fla_version": fla.__version__,
        "torch_version": torch.__version__,
    }
    return tensors, meta


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "goldens", "gdn"))
    args = ap.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    os.makedirs(args.out, exist_ok=True)
    print(f"fla {fla.__version__}, torch {torch.__version__}")
    total = 0
    for i, (name, B, T, H, K, V, has_h0, l2, has_dht, extra) in enumerate(CASES):
        tensors, meta = make_case(name, B, T, H, K, V, has_h0, l2, has_dht, extra, seed=1000 + i)
        path = os.path.join(args.out, name + ".safetensors")
        save_safetensors(path, tensors, meta)
        total += os.path.getsize(path)
    print(f"wrote {len(CASES)} files, {total / 1024:.0f} KiB, to {args.out}")


if __name__ == "__main__":
    main()
