"""Goldens for the trainer (train/pn_trainer.c, postnas-train): the per-step metrics of 10 optimizer steps of
three runs, recomputed in torch float64 (autograd, torch.optim.AdamW) from the same weights and tokens.

Data (deterministic; the C test makes it with the same commands): the byte-level tokenizer (vocab 257, eos
256) of `postnas-mkckpt --preset tiny --seed 1`, `postnas-data synth --task corpus --n 16 --seed 7`, and
`postnas-data tokenize ... --threads 1`: one shard of S tokens. seq_len T = (S - 1) // 4 and global_batch 4
(micro_batch 2), so the loader has exactly 4 windows and every step sees all of them (window w = tokens
[w T, w T + T + 1): T inputs, T targets); the row order inside a step does not change the math.

model/  A tiny Qwen2 (vocab 257, hidden 32, intermediate 64, 2 layers, 4 heads / 2 kv heads of 8, q/k/v
        biases, untied head, rms eps 1e-6, rope_theta 1e4), float32 weights drawn in float64 from a fixed
        generator (norms 1 + 0.1 N, everything else 0.08 N) and rounded to float32, with the tokenizer files.

The trainer's step, as reproduced here: each row is packed: a sequence starts at the row start and right
after every eos (the eos ends its document), and each sequence runs on its own from RoPE position 0 (the
forward runs segment by segment). CE: the next token of every input that is not eos, mean over the step's
counted targets. KL(teacher || student) = tau^2 sum_v pt (log pt - log ps), p = softmax(logits / tau), mean
over all 4 T tokens. MSE: mean over the chosen terms of sum (xs - xt)^2 / (tokens x hidden), "final" = the
LM head's input (after the final norm), layer l = the residual stream after layer l. loss = kl_w KL + ce_w
CE + mse_w MSE and its gradient over the trainable tensors; the global gradient norm (pre-clip), grads x
min(1, clip / (norm + 1e-6)), torch.optim.AdamW (no decay on norms, biases, A_log, dt_bias, conv1d
kernels) at lr(step) = Hugging Face's cosine with min lr and linear warm-up (step 0-based).

Cases (OUT/<case>.yaml, with @MODEL@, @DATA@ (the shards' glob) and @OUT@ (out_dir) to fill in):
  pretrain        model.init: CE only, every tensor trains, lr 1e-2, warmup 3, clip 0.5 (active: the first
                  steps' gradient norms are above it).
  distill_all     teacher = the model (frozen), student = a copy of it with layer types [attn, swa=8]
                  (layer 1 attends over a window of 8: key s visible to query p iff p - s < 8) and every
                  tensor training; KL (tau 2) + 0.5 CE + 0.3 MSE(final).
  distill_blocks  student layer types [gdn, jet]: only the new mixers train (everything else is the
                  teacher's frozen tensors); KL + 0.5 MSE(layers 0, 1). The new mixers start from our own
                  init: one run of the case with train.steps=1, train.lr=0 writes them to its step-1
                  checkpoint (shapes from its config.json's efficient_attention_config); its step-1 loss
                  must equal the golden's. The blocks are tests/make_gdn_layer_goldens.py's and
                  tests/make_jet_layer_goldens.py's `layer` (float64).

golden.json: {"data": {synth_n, synth_seed, tokens: S, seq_len: T}, "cases": {case: {loss, kl, ce, mse,
grad_norm, lr: 10 values each}}}: step s's values are the ones computed before that step's update (what
postnas-train's metrics.jsonl line "step": s holds).

    python3 tests/make_trainer_goldens.py --build build [--out tests/goldens/trainer] [--check]

--check also runs postnas-train on each case (out_dir under a temporary folder) and prints the worst relative
difference of its metrics.jsonl per case and key.
"""
import argparse
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile

import h5py
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import make_gdn_layer_goldens as gl  # noqa: E402
import make_jet_layer_goldens as jl  # noqa: E402
import make_model_grad_goldens as mg  # noqa: E402

SYNTH_N, SYNTH_SEED, G, MICRO, STEPS = 16, 7, 4, 2, 10
VOCAB, HIDDEN, INTER, LAYERS, HEADS, KV, HEAD_DIM, EPS, THETA = 257, 32, 64, 2, 4, 2, 8, 1e-6, 10000.0
W_STD = 0.08
KEYS = ("loss", "kl", "ce", "mse", "grad_norm", "lr")
# the attention / norm helpers of make_model_grad_goldens.py read these globals: they are this model's
assert (mg.HIDDEN, mg.HEADS, mg.KV, mg.HEAD_DIM, mg.EPS, mg.THETA) == (HIDDEN, HEADS, KV, HEAD_DIM, EPS, THETA)

CASES = {
    "pretrain": dict(stage="pretrain", types=None, trainable="all", kl=0.0, ce=1.0, mse=0.0, tau=1.0,
                     mse_layers="final", lr=1e-2, warmup=3, min_lr=0.1, wd=0.1, beta1=0.9, beta2=0.95, eps=1e-8,
                     clip=0.5, seed=3),
    "distill_all": dict(stage="distill", types=["attn", "swa=8"], trainable="all", kl=1.0, ce=0.5, mse=0.3,
                        tau=2.0, mse_layers="final", lr=3e-3, warmup=2, min_lr=0.1, wd=0.05, beta1=0.9,
                        beta2=0.95, eps=1e-8, clip=1.0, seed=3),
    "distill_blocks": dict(stage="distill", types=["gdn", "jet"], trainable="blocks", kl=1.0, ce=0.0, mse=0.5,
                           tau=1.0, mse_layers="0,1", lr=3e-3, warmup=0, min_lr=0.1, wd=0.1, beta1=0.9,
                           beta2=0.95, eps=1e-8, clip=1.0, seed=3),
}


def run(*cmd):
    r = subprocess.run([str(c) for c in cmd], capture_output=True, text=True)
    if r.returncode:
        sys.exit(f"{' '.join(map(str, cmd))} failed ({r.returncode}):\n{r.stdout}{r.stderr}")
    return r


def f32(t):  # draw in float64, keep float32-representable values
    return t.float().double()


# ---- data ----

def make_data(build, d):
    run(os.path.join(build, "postnas-mkckpt"), "--preset", "tiny", "--out", os.path.join(d, "tok"), "--seed", 1)
    run(os.path.join(build, "postnas-data"), "synth", "--task", "corpus", "--n", SYNTH_N, "--seed", SYNTH_SEED,
        "--out", os.path.join(d, "c.jsonl"))
    run(os.path.join(build, "postnas-data"), "tokenize", "--tokenizer", os.path.join(d, "tok"), "--jsonl",
        os.path.join(d, "c.jsonl"), "--field", "text", "--out", os.path.join(d, "shards"), "--threads", 1)
    with h5py.File(os.path.join(d, "shards", "shard-00000.h5"), "r") as f:
        tokens = torch.from_numpy(f["tokens"][:].astype("int64"))
        eos = int(f.attrs["eos_id"])
    return tokens, eos


def make_batch(tokens, eos):
    """The step's rows (every step the same 4 windows): ids, targets with -1 where not counted (the input is
    eos), and each row's sequences [start, end) (a new one at the row start and after every eos)."""
    S = tokens.numel()
    T = (S - 1) // G
    assert (S - 1) // T == G, "the loader must have exactly G windows"
    ids = torch.stack([tokens[w * T: w * T + T] for w in range(G)])
    tgt = torch.stack([tokens[w * T + 1: w * T + T + 1] for w in range(G)])
    tgt = torch.where(ids == eos, torch.full_like(tgt, -1), tgt)
    segs = []
    for r in range(G):
        starts = [0] + [t + 1 for t in range(T - 1) if ids[r, t].item() == eos]
        segs.append(list(zip(starts, starts[1:] + [T])))
    return T, ids, tgt, segs


# ---- the model ----

def make_model(out, tok_dir):
    gen = torch.Generator().manual_seed(31337)
    n = lambda *s, std=W_STD: f32(torch.randn(*s, generator=gen, dtype=torch.float64) * std)
    P = {"model.embed_tokens.weight": n(VOCAB, HIDDEN)}
    for l in range(LAYERS):
        pre = f"model.layers.{l}."
        P[pre + "input_layernorm.weight"] = f32(1 + n(HIDDEN, std=0.1))
        for m, rows in (("q", HEADS * HEAD_DIM), ("k", KV * HEAD_DIM), ("v", KV * HEAD_DIM)):
            P[pre + f"self_attn.{m}_proj.weight"] = n(rows, HIDDEN)
            P[pre + f"self_attn.{m}_proj.bias"] = n(rows)
        P[pre + "self_attn.o_proj.weight"] = n(HIDDEN, HEADS * HEAD_DIM)
        P[pre + "post_attention_layernorm.weight"] = f32(1 + n(HIDDEN, std=0.1))
        P[pre + "mlp.gate_proj.weight"] = n(INTER, HIDDEN)
        P[pre + "mlp.up_proj.weight"] = n(INTER, HIDDEN)
        P[pre + "mlp.down_proj.weight"] = n(HIDDEN, INTER)
    P["model.norm.weight"] = f32(1 + n(HIDDEN, std=0.1))
    P["lm_head.weight"] = n(VOCAB, HIDDEN)
    os.makedirs(out, exist_ok=True)
    config = {"architectures": ["Qwen2ForCausalLM"], "model_type": "qwen2", "hidden_size": HIDDEN,
              "intermediate_size": INTER, "num_hidden_layers": LAYERS, "num_attention_heads": HEADS,
              "num_key_value_heads": KV, "head_dim": HEAD_DIM, "vocab_size": VOCAB,
              "max_position_embeddings": 4096, "rms_norm_eps": EPS, "rope_theta": THETA, "hidden_act": "silu",
              "tie_word_embeddings": False, "eos_token_id": 256, "torch_dtype": "float32", "rope_scaling": None,
              "use_sliding_window": False, "sliding_window": None, "layer_types": ["full_attention"] * LAYERS,
              "max_window_layers": LAYERS}
    with open(os.path.join(out, "config.json"), "w") as f:
        json.dump(config, f, indent=2)
        f.write("\n")
    save_file({k: v.float().contiguous() for k, v in P.items()}, os.path.join(out, "model.safetensors"),
              metadata={"format": "pt"})
    for name in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(os.path.join(tok_dir, name), os.path.join(out, name))
    return P


def set_block_shapes(eac):
    """The gdn / jet layer functions read their shapes from module globals: the student's config."""
    for mod, key in ((gl, "gdn"), (jl, "jet")):
        c = eac[key]
        mod.HIDDEN, mod.HEADS, mod.DK, mod.EXPAND_V = HIDDEN, c["num_heads"], c["head_dim"], float(c["expand_v"])
        mod.CONV, mod.EPS = c["conv_size"], c["norm_eps"]
    jl.RED = eac["jet"]["dconv_generator_reduction"]


def seq_forward(P, ids, types):
    """One sequence (ids [L], positions 0 .. L-1): the residual stream after every layer and the final
    normalized hidden state (the LM head's input). make_model_grad_goldens.plain_forward's loop, keeping
    the hidden states."""
    x = P["model.embed_tokens.weight"][ids][None]
    outs = []
    for l, kind in enumerate(types):
        pre = f"model.layers.{l}."
        h = mg.rmsnorm(x, P[pre + "input_layernorm.weight"], EPS)
        if kind == "attn" or kind.startswith("swa"):
            h = mg.attention(P, pre + "self_attn.", h, int(kind[4:]) if kind.startswith("swa=") else 0)
        else:
            bp = {k[len(pre + "self_attn."):]: v for k, v in P.items() if k.startswith(pre + "self_attn.")}
            h = (jl.layer if kind == "jet" else gl.layer)(bp, h)
        x = x + h
        h = mg.rmsnorm(x, P[pre + "post_attention_layernorm.weight"], EPS)
        h = F.silu(h @ P[pre + "mlp.gate_proj.weight"].T) * (h @ P[pre + "mlp.up_proj.weight"].T)
        x = x + h @ P[pre + "mlp.down_proj.weight"].T
        outs.append(x[0])
    return outs, mg.rmsnorm(x, P["model.norm.weight"], EPS)[0]


def step_forward(P, ids, segs, types):
    """All rows of a step, sequence by sequence: per-layer outputs and final hidden, each [G T, C]."""
    outs, fin = [[] for _ in types], []
    for r in range(ids.shape[0]):
        for a, b in segs[r]:
            o, h = seq_forward(P, ids[r, a:b], types)
            for l in range(len(types)):
                outs[l].append(o[l])
            fin.append(h)
    return [torch.cat(o) for o in outs], torch.cat(fin)


def decays(name):
    return not (name.endswith("norm.weight") or name.endswith(".bias") or name.endswith("A_log")
                or name.endswith("dt_bias") or name.endswith("conv1d.weight"))


def lr_at(c, step):  # transformers' get_cosine_with_min_lr_schedule_with_warmup, step 0-based
    if step < c["warmup"]:
        return c["lr"] * step / max(1, c["warmup"])
    progress = (step - c["warmup"]) / max(1, STEPS - c["warmup"])
    return c["lr"] * (c["min_lr"] + (1 - c["min_lr"]) * 0.5 * (1 + math.cos(math.pi * progress)))


def train(c, student, trainable, types, teacher, teacher_types, ids, tgt, segs):
    """STEPS steps of the trainer on the fixed batch; the metrics before each update."""
    N = ids.numel()
    tgt = tgt.reshape(-1)
    counted = tgt >= 0
    mse_terms = [] if c["mse"] <= 0 else ([-1] if c["mse_layers"] == "final" else
                                           [int(s) for s in c["mse_layers"].split(",")])
    tau = c["tau"]
    th = tl = zt = None
    if teacher is not None:  # frozen, and every step sees the same tokens: once
        with torch.no_grad():
            tl, th = step_forward(teacher, ids, segs, teacher_types)
            zt = th @ teacher["lm_head.weight"].T
    params = {k: v.clone().requires_grad_(True) for k, v in student.items() if k in trainable}
    groups = [{"params": [p for k, p in params.items() if decays(k)], "weight_decay": c["wd"]},
              {"params": [p for k, p in params.items() if not decays(k)], "weight_decay": 0.0}]
    groups = [g for g in groups if g["params"]]
    opt = torch.optim.AdamW(groups, lr=c["lr"], betas=(c["beta1"], c["beta2"]), eps=c["eps"], foreach=False)
    hist = {k: [] for k in KEYS}
    for step in range(STEPS):
        P = {k: params.get(k, v) for k, v in student.items()}
        outs, hs = step_forward(P, ids, segs, types)
        zs = hs @ P["lm_head.weight"].T
        kl = ce = mse = torch.zeros((), dtype=torch.float64)
        if c["kl"] > 0:
            lpt, lps = F.log_softmax(zt / tau, -1), F.log_softmax(zs / tau, -1)
            kl = tau * tau * (lpt.exp() * (lpt - lps)).sum() / N
        if c["ce"] > 0:
            ce = F.cross_entropy(zs[counted], tgt[counted], reduction="sum") / counted.sum()
        for l in mse_terms:
            xs, xt = (hs, th) if l < 0 else (outs[l], tl[l])
            mse = mse + (xs - xt).pow(2).sum() / (len(mse_terms) * N * HIDDEN)
        loss = c["kl"] * kl + c["ce"] * ce + c["mse"] * mse
        opt.zero_grad()
        loss.backward()
        gnorm = math.sqrt(sum(p.grad.pow(2).sum().item() for p in params.values()))
        coef = min(1.0, c["clip"] / (gnorm + 1e-6)) if c["clip"] > 0 else 1.0
        lr = lr_at(c, step)
        for p in params.values():
            p.grad.mul_(coef)
        for g in opt.param_groups:
            g["lr"] = lr
        opt.step()
        for k, v in zip(KEYS, (loss.item(), kl.item(), ce.item(), mse.item(), gnorm, lr)):
            hist[k].append(v)
        print(f"  step {step + 1:2d}: loss {loss.item():.6f} kl {kl.item():.6f} ce {ce.item():.6f} "
              f"mse {mse.item():.6f} grad_norm {gnorm:.4f}{' (clipped)' if coef < 1 else ''} lr {lr:.3e}")
    return hist


# ---- configs ----

def case_yaml(name, c, T):
    lines = [f"# tests/make_trainer_goldens.py case {name} (fill in @MODEL@, @DATA@, @OUT@)",
             "out_dir: \"@OUT@\"", f"seed: {c['seed']}", "model:"]
    lines.append("  init: \"@MODEL@\"" if c["stage"] == "pretrain" else "  teacher: \"@MODEL@\"")
    if c["types"]:
        lines += ["  student:", f"    layer_types: [{', '.join(c['types'])}]"]
    lines += ["data:", "  train: [\"@DATA@\"]", "train:", f"  stage: {c['stage']}"]
    if c["stage"] == "distill":
        lines.append(f"  trainable: {c['trainable']}")
    lines += [f"  steps: {STEPS}", f"  seq_len: {T}", f"  global_batch: {G}", f"  micro_batch: {MICRO}",
              f"  lr: {c['lr']!r}", f"  warmup_steps: {c['warmup']}", f"  min_lr_ratio: {c['min_lr']!r}",
              f"  beta1: {c['beta1']!r}", f"  beta2: {c['beta2']!r}", f"  eps: {c['eps']!r}",
              f"  weight_decay: {c['wd']!r}", f"  clip: {c['clip']!r}", "loss:"]
    for k in ("kl", "ce", "mse"):
        if c[k] > 0:
            lines.append(f"  {k}: {c[k]!r}")
    if c["kl"] > 0:
        lines.append(f"  temperature: {c['tau']!r}")
    if c["mse"] > 0:
        lines.append(f"  mse_layers: \"{c['mse_layers']}\"")
    return "\n".join(lines) + "\n"


def fill(text, model, data, out):
    return text.replace("@MODEL@", model).replace("@DATA@", data).replace("@OUT@", out)


def train_run(build, yaml_text, d, name, *sets):
    path = os.path.join(d, name + ".yaml")
    with open(path, "w") as f:
        f.write(yaml_text)
    args = [os.path.join(build, "postnas-train"), "--config", path]
    for s in sets:
        args += ["--set", s]
    run(*args)


def read_metrics(out_dir):
    with open(os.path.join(out_dir, "metrics.jsonl")) as f:
        return [json.loads(line) for line in f if line.strip()]


def rel(a, b):
    return abs(a - b) / max(abs(b), 1e-12) if a != b else 0.0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", required=True, help="the build folder (postnas-mkckpt, -data, -train, -generate)")
    ap.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "goldens", "trainer"))
    ap.add_argument("--check", action="store_true", help="also run postnas-train on every case and compare")
    a = ap.parse_args()
    build, out = os.path.abspath(a.build), os.path.abspath(a.out)
    torch.set_grad_enabled(True)
    with tempfile.TemporaryDirectory(prefix="pn-trainer-goldens-") as d:
        tokens, eos = make_data(build, d)
        T, ids, tgt, segs = make_batch(tokens, eos)
        print(f"data: {tokens.numel()} tokens, eos {eos}, seq_len {T}, {sum(map(len, segs))} sequences in "
              f"{G} rows, {(tgt >= 0).sum().item()} counted targets")
        model_dir = os.path.join(out, "model")
        P = make_model(model_dir, os.path.join(d, "tok"))
        run(os.path.join(build, "postnas-generate"), "--model", model_dir, "--ids", "1,2,3", "--max-new-tokens", 2)
        # the hidden-state forward against make_model_grad_goldens.plain_forward on a sequence
        with torch.no_grad():
            a0, b0 = segs[0][0]
            _, h = seq_forward(P, ids[0, a0:b0], ["attn", "swa=8"])
            ref = mg.plain_forward(P, ids[0:1, a0:b0], ["attn", "swa"])[0]
            err = ((h @ P["lm_head.weight"].T - ref).norm() / ref.norm()).item()
            assert err < 1e-12, err
        data_glob = os.path.join(d, "shards", "*.h5")
        golden = {"data": {"synth_n": SYNTH_N, "synth_seed": SYNTH_SEED, "tokens": tokens.numel(), "seq_len": T},
                  "cases": {}}
        yamls = {}
        for name, c in CASES.items():
            yamls[name] = case_yaml(name, c, T)
            with open(os.path.join(out, name + ".yaml"), "w") as f:
                f.write(yamls[name])
            print(f"{name}:")
            if name == "pretrain":
                hist = train(c, P, set(P), ["attn"] * LAYERS, None, None, ids, tgt, segs)
            elif name == "distill_all":  # the student = the teacher's tensors (swa runs attn's)
                hist = train(c, P, set(P), c["types"], P, ["attn"] * LAYERS, ids, tgt, segs)
            else:  # the new mixers from our own init: a run with lr 0
                init_out = os.path.join(d, "init_run")
                train_run(build, fill(yamls[name], model_dir, data_glob, init_out), d, name + "-init",
                          "train.steps=1", "train.lr=0")
                ck = os.path.join(init_out, "checkpoints", "step-00000001")
                with open(os.path.join(ck, "config.json")) as f:
                    scfg = json.load(f)
                set_block_shapes(scfg["efficient_attention_config"])
                W = {k: v.double() for k, v in load_file(os.path.join(ck, "model.safetensors")).items()}
                S = {k: v for k, v in P.items() if ".self_attn." not in k}
                new = {k: v for k, v in W.items() if ".self_attn." in k}
                for k, v in S.items():  # lr 0: the frozen tensors are the teacher's, unchanged
                    assert torch.equal(W[k], v), k
                S.update(new)
                print(f"  student init from {ck}: layer types {scfg['layer_types']}, {len(new)} mixer tensors, "
                      f"efficient_attention_config {json.dumps(scfg['efficient_attention_config'])}")
                hist = train(c, S, set(new), c["types"], P, ["attn"] * LAYERS, ids, tgt, segs)
                first = read_metrics(init_out)[0]["loss"]
                print(f"  step-1 loss of the lr-0 run {first:.9g}, golden {hist['loss'][0]:.9g} "
                      f"(rel {rel(first, hist['loss'][0]):.2e})")
            golden["cases"][name] = hist
        with open(os.path.join(out, "golden.json"), "w") as f:
            json.dump(golden, f, indent=1)
            f.write("\n")
        print(f"wrote {out}: model/, {', '.join(n + '.yaml' for n in CASES)}, golden.json")
        if a.check:
            print(f"{'case':15s} " + " ".join(f"{k:>10s}" for k in KEYS))
            for name in CASES:
                rd = os.path.join(d, "run-" + name)
                train_run(build, fill(yamls[name], model_dir, data_glob, rd), d, name)
                got = read_metrics(rd)
                assert [m["step"] for m in got] == list(range(1, STEPS + 1))
                g = golden["cases"][name]
                worst = {k: max(rel(m[k], g[k][i]) for i, m in enumerate(got)) for k in KEYS}
                print(f"{name:15s} " + " ".join(f"{worst[k]:10.2e}" for k in KEYS))


if __name__ == "__main__":
    main()
