#!/usr/bin/env bash
# The command-line tools on good and bad input: each bad input must end with exactly one line
# "postnas-<tool>: error: ..." naming the file and the problem, exit status 1 (not a crash), and
# leave no output file behind.
set -u
B=${1:?usage: test_cli.sh BUILD_DIR}
GEN=$B/postnas-generate
MK=$B/postnas-mkckpt
T=$(mktemp -d /tmp/pn_test_cli.XXXXXX)
trap 'rm -rf "$T"' EXIT
. "$(dirname "$0")/test_lib.sh"

# A tiny model to work with.
$MK --out "$T/m" --seed 1 --init-std 0.3 > /dev/null || bad "mkckpt tiny"
[ -f "$T/m/config.json" ] && [ -f "$T/m/model.safetensors" ] && ok || bad "mkckpt wrote no checkpoint"

# Good runs: greedy generation is deterministic, and the same with the decode fusions off (PN_NO_FUSED) and
# with the normalizing MLP (PN_NORM_MLP); --dump-logits writes ids and logits.
out1=$($GEN --model "$T/m" --ids 1,2,3,4 --max-new-tokens 8 --device cpu --print-ids 2> /dev/null)
out2=$($GEN --model "$T/m" --ids 1,2,3,4 --max-new-tokens 8 --device cpu --print-ids 2> /dev/null)
[ -n "$out1" ] && [ "$out1" = "$out2" ] && ok || bad "greedy generation not deterministic: '$out1' vs '$out2'"
out3=$(PN_NO_FUSED=1 $GEN --model "$T/m" --ids 1,2,3,4 --max-new-tokens 8 --device cpu --print-ids 2> /dev/null)
out4=$(PN_NORM_MLP=1 $GEN --model "$T/m" --ids 1,2,3,4 --max-new-tokens 8 --device cpu --print-ids 2> /dev/null)
[ "$out1" = "$out3" ] && [ "$out1" = "$out4" ] && ok || bad "greedy generation changed: '$out1', unfused '$out3', PN_NORM_MLP '$out4'"
n=$(echo "$out1" | tr ',' '\n' | grep -c .)
[ "$n" -ge 1 ] && [ "$n" -le 8 ] && ok || bad "expected 1..8 generated ids, got '$out1'"
s1=$($GEN --model "$T/m" --ids 5,6 --max-new-tokens 16 --temperature 1.5 --seed 7 --device cpu 2> /dev/null)
s2=$($GEN --model "$T/m" --ids 5,6 --max-new-tokens 16 --temperature 1.5 --seed 7 --device cpu 2> /dev/null)
[ "$s1" = "$s2" ] && ok || bad "sampling with a seed not reproducible"
s3=$($GEN --model "$T/m" --ids 5,6 --max-new-tokens 16 --temperature 1.5 --seed 8 --device cpu 2> /dev/null)
[ "$s1" != "$s3" ] && ok || bad "sampling with another seed drew the same 16 tokens: '$s1'"
# --top-k 1 keeps the largest logit only: the draw is the greedy choice, at any temperature and seed
k1=$($GEN --model "$T/m" --ids 1,2,3,4 --max-new-tokens 8 --temperature 3 --top-k 1 --seed 5 --device cpu --print-ids 2> /dev/null)
[ "$k1" = "$out1" ] && ok || bad "--top-k 1 differs from greedy: '$k1' vs '$out1'"
$GEN --model "$T/m" --ids 1,2,3 --max-new-tokens 0 --dump-logits "$T/l.safetensors" --device cpu > /dev/null 2>&1 && ok || bad "dump-logits run"
# Chunked prefill (--prefill-chunk): each chunk continues the decode state of the ones before, on a hybrid
# whose layers keep every kind of state (a KV cache, a sliding window shorter than the prompt, recurrent and
# convolution states): the same logits at every prompt position (fp32: up to summation order, 1e-4) and the same
# generated ids as the whole prompt at once, for chunks of 1, 5 and 64 (longer than the prompt).
$MK --out "$T/hy" --layer-types swa,gdn,attn,jet --sliding-window 6 --seed 2 --init-std 0.3 > /dev/null || bad "mkckpt hybrid"
ids=$(seq -s, 3 3 66) # 22 tokens
for c in 0 1 5 64; do
  $GEN --model "$T/hy" --ids "$ids" --max-new-tokens 6 --prefill-chunk $c --dump-logits "$T/pc$c.st" --print-ids \
    --device cpu > "$T/pc$c.ids" 2> "$T/pc$c.err" || bad "--prefill-chunk $c: $(tail -1 "$T/pc$c.err")"
done
python3 - "$T" << 'EOF' && ok || bad "chunked prefill differs from the whole prompt at once"
import array, json, struct, sys
T = sys.argv[1]
def logits(path):
    b = open(path, "rb").read()
    n = struct.unpack("<Q", b[:8])[0]
    h = json.loads(b[8:8 + n])
    lo, hi = h["logits"]["data_offsets"]
    a = array.array("f")
    a.frombytes(b[8 + n + lo:8 + n + hi])
    assert h["logits"]["shape"] == [22, 257], h
    return a
ref, ids = logits(T + "/pc0.st"), open(T + "/pc0.ids").read()
for c in (1, 5, 64):
    got = logits("%s/pc%d.st" % (T, c))
    worst = max(abs(x - y) / max(1.0, abs(y)) for x, y in zip(got, ref))
    assert worst <= 1e-4, (c, worst)  # one-token steps run the recurrent form, chunks the chunked one
    assert open("%s/pc%d.ids" % (T, c)).read() == ids, c
EOF
expect_error "--prefill-chunk" $GEN --model "$T/m" --ids 1,2 --prefill-chunk -1 --device cpu

# postnas-bench: chunked prefill of random prompts, batched decode, the decode state per block type (the
# blocks' formulas: a full cache grows with the context, a window's and a linear block's do not) and the
# bandwidth floor.
BENCH=$B/postnas-bench
for ctx in 40 300; do
  $BENCH --model "$T/hy" --context $ctx --prefill-chunk 16 --batch 3 --new-tokens 5 --device cpu > "$T/bench$ctx" \
    2> "$T/bench.err" || bad "postnas-bench --context $ctx: $(tail -1 "$T/bench.err")"
done
python3 - "$T/bench40" "$T/bench300" << 'EOF' && ok || bad "postnas-bench's report (see above)"
import re, sys
def report(p):
    t = open(p).read()
    assert re.search(r"^prefill: 3 x \d+ tokens in [\d.]+ s = [\d.]+ tok/s$", t, re.M), t
    assert re.search(r"^decode: 3 x 5 tokens in [\d.]+ s = [\d.]+ tok/s", t, re.M), t
    assert re.search(r"^bandwidth floor: .* per step .* reached \d+%$", t, re.M), t
    unit = {"B": 1, "KB": 1e3, "MB": 1e6, "GB": 1e9}
    st = {m[0]: float(m[2]) * unit[m[3]] for m in re.findall(r"tokens: (\w+) +(\d+) layers ([\d.]+) (\w+)", t)}
    st = {k: float(v) for k, v in st.items()}
    layers = dict(re.findall(r"tokens: (\w+) +(\d+) layers", t))
    assert sorted(layers) == ["attn", "gdn", "jet", "swa"] and set(layers.values()) == {"1"}, layers
    return st
a, b = report(sys.argv[1]), report(sys.argv[2])
assert b["attn"] > 5 * a["attn"], (a, b)  # 305 vs 45 positions
for k in ("swa", "gdn", "jet"):  # a window of 6 and recurrent states: the same at both lengths
    assert abs(b[k] - a[k]) <= 0.01 * a[k], (k, a, b)
EOF
# the hardware-aware grid (scripts/hw-grid.sh): one table row per (d_k, d_v, heads), each a measured checkpoint
bash "$(dirname "$0")/../scripts/hw-grid.sh" --build "$B" --preset tiny --layer-types swa,jet,attn,jet \
  --sliding-window 6 --grid "16,32,4 8,64,4 32,64,1" --context 32 --batch 2 --new-tokens 3 --prefill-chunk 16 \
  --device cpu --out "$T/grid.md" 2> "$T/grid.err" || bad "hw-grid.sh: $(tail -1 "$T/grid.err")"
[ "$(grep -c '^| ([0-9]*, [0-9]*, [0-9]*) | [0-9.]* | [0-9.]* | [0-9.]* [KMG]*B | [0-9.]* M | [0-9]*% |$' "$T/grid.md")" = 3 ] &&
  grep -q '^| (8, 64, 4) |' "$T/grid.md" && ok || bad "hw-grid.sh's table: $(cat "$T/grid.md")"
bash "$(dirname "$0")/../scripts/hw-grid.sh" --build "$B" --grid "16,32" --device cpu > /dev/null 2> "$T/grid.err"
[ $? = 1 ] && grep -q "is not dk,dv,heads" "$T/grid.err" && ok || bad "hw-grid.sh with a bad grid: $(cat "$T/grid.err")"
# the distillation step's benchmark (scripts/bench-distill.sh): a tiny teacher, both losses, a median each
bash "$(dirname "$0")/../scripts/bench-distill.sh" --build "$B" --device cpu --preset tiny --attn 0,3 --seq 64 \
  --steps 4 --work "$T/bd" > "$T/bd.txt" 2> "$T/bd.err" || bad "bench-distill.sh: $(tail -1 "$T/bd.err")"
grep -q '^teacher tiny (4 layers), student \[attn,gdn,gdn,attn\], 2 x 64 tokens' "$T/bd.txt" &&
  [ "$(grep -c '^\(mse\|kl\): median [1-9][0-9]* tok/s (steps 3-4)$' "$T/bd.txt")" = 2 ] && ok ||
  bad "bench-distill.sh's report: $(cat "$T/bd.txt" "$T/bd.err")"
# --repeat on the same work folder: the teacher is not made again (its files keep their times), two runs and
# their median
touch -d '2001-01-01' "$T/bd/teacher/config.json"
bash "$(dirname "$0")/../scripts/bench-distill.sh" --build "$B" --device cpu --preset tiny --attn 0,3 --seq 64 \
  --steps 4 --loss mse --repeat 2 --work "$T/bd" > "$T/bd2.txt" 2> "$T/bd.err" || bad "bench-distill.sh --repeat: $(tail -1 "$T/bd.err")"
[ "$(grep -c '^mse: median [1-9][0-9]* tok/s (steps 3-4) (run [12] of 2)$' "$T/bd2.txt")" = 2 ] &&
  grep -q '^mse: median of the 2 runs [1-9][0-9]* tok/s (runs: [1-9][0-9]* [1-9][0-9]*)$' "$T/bd2.txt" &&
  [ -z "$(find "$T/bd/teacher/config.json" -newermt '2002-01-01')" ] && ok ||
  bad "bench-distill.sh --repeat's report or a remade teacher: $(cat "$T/bd2.txt" "$T/bd.err")"
bash "$(dirname "$0")/../scripts/bench-distill.sh" --build "$B" --loss ce > /dev/null 2> "$T/bd.err"
[ $? = 1 ] && grep -q "neither mse nor kl" "$T/bd.err" && ok || bad "bench-distill.sh with a bad loss: $(cat "$T/bd.err")"
expect_error "--batch" $BENCH --model "$T/hy" --batch 0 --device cpu
expect_error "--context" $BENCH --model "$T/hy" --context x --device cpu
expect_error "--model" $BENCH --context 8
expect_error "nosuch" $BENCH --model "$T/nosuch" --context 8 --device cpu

# ids [3] I32 + logits [3, 257] F32 = 12 + 3084 data bytes after the header.
size=$(stat -c %s "$T/l.safetensors" 2> /dev/null || echo 0)
hl=$(od -An -tu8 -N8 "$T/l.safetensors" 2> /dev/null | tr -d ' ')
[ "$size" -eq $((8 + hl + 12 + 3084)) ] && ok || bad "dump-logits file size $size (header $hl)"
head -c $((8 + hl)) "$T/l.safetensors" | tail -c "$hl" | grep -q '"logits":{"dtype":"F32","shape":\[3,257\]' && ok || bad "dump-logits header"

# Bad command lines.
expect_error "--model DIR is required" $GEN --ids 1
expect_error "exactly one of --prompt and --ids" $GEN --model "$T/m"
expect_error "--ids: 'x1' is not" $GEN --model "$T/m" --ids x1
expect_error "--device: 'tpu'" $GEN --model "$T/m" --ids 1 --device tpu
expect_error "--temperature" $GEN --model "$T/m" --ids 1 --temperature -1
expect_error "unknown preset" $MK --out "$T/x" --preset gpt5
# Hybrids: a Jet-Nemotron config with every block type generates; impossible layer lists are refused.
$MK --out "$T/hy" --layers 5 --layer-types attn,swa,jet,gdn,deltanet --seed 3 --init-std 0.3 > /dev/null && ok || bad "mkckpt hybrid"
grep -q '"jet_nemotron"' "$T/hy/config.json" && grep -q '"deltanet"' "$T/hy/config.json" && ok || bad "hybrid config.json"
h1=$($GEN --model "$T/hy" --ids 1,2,3,4,5,6 --max-new-tokens 6 --device cpu --print-ids 2> /dev/null)
h2=$(PN_NORM_MLP=1 $GEN --model "$T/hy" --ids 1,2,3,4,5,6 --max-new-tokens 6 --device cpu --print-ids 2> /dev/null)
[ -n "$h1" ] && [ "$h1" = "$h2" ] && ok || bad "hybrid generation: '$h1' vs '$h2'"
expect_error "unknown block type \"mamba\"" $MK --out "$T/x" --layers 2 --layer-types attn,mamba
expect_error "lists 1 types for 2 layers" $MK --out "$T/x" --layers 2 --layer-types jet
expect_error "hybrids are built on a qwen2 base" $MK --out "$T/x" --arch llama --layers 1 --layer-types jet
[ ! -e "$T/x" ] && ok || bad "a refused mkckpt left $T/x behind"
expect_error "--out DIR is required" $MK --preset tiny
expect_error "unknown option or missing value: '--bogus'" $GEN --bogus
$GEN --help | grep -q "usage: postnas-generate" && ok || bad "--help"

# Bad checkpoints.
expect_error "$T/nope: no such checkpoint folder" $GEN --model "$T/nope" --ids 1 --device cpu
expect_error "outside the vocabulary" $GEN --model "$T/m" --ids 1,257 --device cpu
# --prompt through the folder's tokenizer (the byte-level one mkckpt wrote): the dumped ids are the bytes.
$GEN --model "$T/m" --prompt "Hi!" --max-new-tokens 4 --dump-logits "$T/p.safetensors" --device cpu > "$T/text" 2> /dev/null && ok || bad "--prompt run"
hl=$(od -An -tu8 -N8 "$T/p.safetensors" | tr -d ' ')
[ "$(od -An -tu4 -j $((8 + hl)) -N12 "$T/p.safetensors" | tr -s ' ')" = " 72 105 33" ] && ok || bad "--prompt ids are not the bytes of 'Hi!'"
mkdir -p "$T/notok"; cp "$T/m/config.json" "$T/m/model.safetensors" "$T/notok/"
expect_error "no tokenizer (tokenizer.json, or vocab.json + merges.txt) for --prompt" $GEN --model "$T/notok" --prompt "Hi" --device cpu
cp -r "$T/m" "$T/badtok"; echo '{"model": {"type": "BPE", "vocab": {"a": 0}, "merges": []}' > "$T/badtok/tokenizer.json"
expect_error "badtok/tokenizer.json" $GEN --model "$T/badtok" --prompt "Hi" --device cpu
mkdir -p "$T/empty"
expect_error "config.json: cannot open" $GEN --model "$T/empty" --ids 1 --device cpu
cp "$T/m/config.json" "$T/empty/"
expect_error "no model.safetensors or model.safetensors.index.json" $GEN --model "$T/empty" --ids 1 --device cpu

cp -r "$T/m" "$T/badjson"; echo '{"model_type": "qwen2",' > "$T/badjson/config.json"
expect_error "config.json:2:0: invalid JSON" $GEN --model "$T/badjson" --ids 1 --device cpu
cp -r "$T/m" "$T/arch"; sed -i 's/"model_type": "qwen2"/"model_type": "mamba"/' "$T/arch/config.json"
expect_error "unknown architecture" $GEN --model "$T/arch" --ids 1 --device cpu
cp -r "$T/m" "$T/rope"; sed -i 's/"rope_scaling": null/"rope_scaling": {"rope_type": "dynamic", "factor": 2.0}/' "$T/rope/config.json"
expect_error "unknown rope type \"dynamic\"" $GEN --model "$T/rope" --ids 1 --device cpu
cp -r "$T/m" "$T/shape"; sed -i 's/"intermediate_size": 192/"intermediate_size": 200/' "$T/shape/config.json"
expect_error "has shape [192, 64] but config.json implies [200, 64]" $GEN --model "$T/shape" --ids 1 --device cpu
cp -r "$T/m" "$T/untied"; sed -i 's/"tie_word_embeddings": true/"tie_word_embeddings": false/' "$T/untied/config.json"
expect_error "missing tensor 'lm_head.weight'" $GEN --model "$T/untied" --ids 1 --device cpu
cp -r "$T/m" "$T/trunc"; truncate -s -100 "$T/trunc/model.safetensors"
expect_error "model.safetensors: tensor" $GEN --model "$T/trunc" --ids 1 --device cpu
cp -r "$T/m" "$T/trunc2"; truncate -s 20 "$T/trunc2/model.safetensors"
expect_error "runs past the end of the file" $GEN --model "$T/trunc2" --ids 1 --device cpu

# Sharded: an index that names a tensor its shard does not hold; a missing shard.
$MK --out "$T/sh" --seed 1 --hidden 128 --intermediate 512 --vocab 4096 --shard-mb 1 --dtype f32 > /dev/null || bad "mkckpt sharded"
cp -r "$T/sh" "$T/sh2"; sed -i 's/"model.norm.weight": "model-[0-9]*/"model.norm.weight": "model-00001/' "$T/sh2/model.safetensors.index.json"
expect_error "weight_map puts 'model.norm.weight' in model-00001" $GEN --model "$T/sh2" --ids 1 --device cpu
cp -r "$T/sh" "$T/sh3"; rm "$T/sh3/model-00002-of-"*.safetensors
expect_error "model-00002-of-" $GEN --model "$T/sh3" --ids 1 --device cpu

# postnas-data: JSONL with bad lines (skipped by default, fatal with --on-bad-line fail), text files, inspect.
DATA=$B/postnas-data
printf '{"text": "one"}\nnot json\n{"other": 1}\n{"text": "two \\u00e9"}\n\n' > "$T/b.jsonl"
printf 'hello \xff\xfe world\n' > "$T/a.txt"
$DATA tokenize --tokenizer "$T/m" --jsonl "$T/b.jsonl" --field text --out "$T/d1" > /dev/null 2> "$T/err" && ok || bad "postnas-data jsonl: $(cat "$T/err")"
grep -q "b.jsonl:2: not valid JSON" "$T/err" && grep -q "b.jsonl:3: no field 'text'" "$T/err" && ok || bad "bad lines not reported with file:line"
$DATA inspect "$T/d1/shard-00000.h5" --tokenizer "$T/m" > "$T/out" 2>&1 && grep -q "documents *2" "$T/out" && grep -q "tokens *11" "$T/out" && ok || bad "inspect: $(cat "$T/out")"
expect_error "b.jsonl:2: not valid JSON" $DATA tokenize --tokenizer "$T/m" --jsonl "$T/b.jsonl" --field text --out "$T/d2" --on-bad-line fail
[ ! -e "$T/d2/shard-00000.h5" ] && ok || bad "a failed run left a shard behind"
# Invalid UTF-8 in a text file is kept as bytes: 'hello ', 0xff, 0xfe, ' world', newline, eos = 16 ids.
$DATA tokenize --tokenizer "$T/m" --text "$T/a.txt" --out "$T/d3" > /dev/null 2>&1 && ok || bad "postnas-data text"
$DATA inspect "$T/d3/shard-00000.h5" --tokenizer "$T/m" 2>&1 | grep -q "first 16 ids  104,101,108,108,111,32,255,254,32,119,111,114,108,100,10,256" && ok || bad "invalid UTF-8 bytes not kept"
expect_error "no such tokenizer folder" $DATA tokenize --tokenizer "$T/nope" --text "$T/a.txt" --out "$T/d4"
printf 'not hdf5' > "$T/bad.h5"
expect_error "bad.h5: not an HDF5 file" $DATA inspect "$T/bad.h5"

# postnas-data synth: deterministic JSONL in the harness's field names; the corpus tokenizes into a shard.
$DATA synth --task mqar --n 5 --seed 3 --out "$T/s1.jsonl" 2> /dev/null && $DATA synth --task mqar --n 5 --seed 3 --out "$T/s2.jsonl" 2> /dev/null && ok || bad "synth"
[ "$(wc -l < "$T/s1.jsonl")" -eq 5 ] && cmp -s "$T/s1.jsonl" "$T/s2.jsonl" && grep -q '"context":' "$T/s1.jsonl" && grep -q '"answer":' "$T/s1.jsonl" && ok || bad "synth output"
$DATA synth --task facts_mc --n 4 --seed 3 --out "$T/mc.jsonl" 2> /dev/null && grep -q '"choices":' "$T/mc.jsonl" && grep -q '"gold":' "$T/mc.jsonl" && ok || bad "synth facts_mc"
$DATA synth --task corpus --n 50 --seed 3 --out "$T/c.jsonl" 2> /dev/null && $DATA tokenize --tokenizer "$T/m" --jsonl "$T/c.jsonl" --field text --out "$T/cs" > /dev/null 2>&1 && ok || bad "synth corpus -> shard"
expect_error "unknown synthetic task \"nope\"" $DATA synth --task nope --n 3 --out "$T/x.jsonl"
# --format text: the same items as training documents (prompt + answer), e.g. copy "abc|" + "abc"
$DATA synth --task copy --n 3 --seed 3 --format text --out "$T/ct.jsonl" 2> /dev/null && $DATA synth --task copy --n 3 --seed 3 --out "$T/ci.jsonl" 2> /dev/null && ok || bad "synth --format text"
python3 -c "
import json, sys
t = [json.loads(l) for l in open(sys.argv[1])]; i = [json.loads(l) for l in open(sys.argv[2])]
assert len(t) == 3 and all(a == {'text': b['context'] + b['answer'] + '\\n'} for a, b in zip(t, i)), (t, i)
" "$T/ct.jsonl" "$T/ci.jsonl" && ok || bad "synth --format text documents"
expect_error "--format must be items or text" $DATA synth --task copy --n 3 --format txt --out "$T/x.jsonl"
# Sizes: --pairs/--queries (mqar), --length (copy), --filler (passkey; 0 is a size, not "the default").
$DATA synth --task mqar --n 2 --pairs 3 --queries 2 --out "$T/m3.jsonl" 2> /dev/null && python3 -c "
import json, sys
for l in open(sys.argv[1]):
    d = json.loads(l); c = d['context']
    assert len(c.split('\n')[0].split()) == 3 and c.count('q: ') == 2, d
" "$T/m3.jsonl" && ok || bad "synth --pairs --queries"
$DATA synth --task copy --n 2 --length 5 --out "$T/c5.jsonl" 2> /dev/null && python3 -c "
import json, sys
assert all(len(json.loads(l)['answer']) == 5 for l in open(sys.argv[1]))
" "$T/c5.jsonl" && ok || bad "synth --length"
$DATA synth --task passkey --n 1 --filler 0 --out "$T/p0.jsonl" 2> /dev/null && python3 -c "
import json, sys
d = json.loads(open(sys.argv[1]).readline()); assert d['context'].startswith('The pass key is'), d
" "$T/p0.jsonl" && ok || bad "synth --filler 0"
expect_error "n_queries 4 out of range" $DATA synth --task mqar --n 3 --pairs 3 --queries 4 --out "$T/x.jsonl"
expect_error "--pairs is an option of --task mqar and recall, not copy" $DATA synth --task copy --n 3 --pairs 3 --out "$T/x.jsonl"
expect_error "--length is an option of --task copy, not recall" $DATA synth --task recall --n 3 --length 3 --out "$T/x.jsonl"
expect_error "recall: n_pairs 11 out of range [1, 10]" $DATA synth --task recall --n 3 --pairs 11 --out "$T/x.jsonl"
expect_error "--length: " $DATA synth --task copy --n 3 --length 0 --out "$T/x.jsonl"
# An output that is not a regular file is written, not replaced (a rename over /dev/stdout would put a file
# in place of the link); a directory is refused.
[ "$($DATA synth --task mqar --n 2 --out /dev/stdout 2> /dev/null | wc -l)" -eq 2 ] && [ -L /dev/stdout ] && ok || bad "synth --out /dev/stdout"
expect_error "$T: is a directory" $DATA synth --task mqar --n 2 --out "$T"

# A failed dump leaves no file behind.
expect_error "cannot create" $GEN --model "$T/m" --ids 1 --max-new-tokens 0 --dump-logits "$T/nodir/l.safetensors" --device cpu
[ -z "$(ls "$T" | grep '\.tmp\.')" ] && ok || bad "temporary files left behind"

# Tokenizers and --prompt / --ids. A refused tokenizer does not block --ids (a warning, ids printed); --prompt
# names why it cannot be used.
cp -r "$T/m" "$T/badtok" && echo '{"model": {"type": "Unigram"}}' > "$T/badtok/tokenizer.json"
out=$($GEN --model "$T/badtok" --ids 1,2,3 --max-new-tokens 2 --device cpu 2> "$T/err")
[ $? -eq 0 ] && echo "$out" | grep -qE '^[0-9]+(,[0-9]+)*$' && grep -q "tokenizer cannot be used" "$T/err" && ok ||
  bad "--ids with a refused tokenizer: '$out' $(cat "$T/err")"
expect_error 'badtok/tokenizer.json: model.type must be "BPE"' $GEN --model "$T/badtok" --prompt hi --device cpu
# --prompt adds the post-processor's special tokens as HF's encode does (Llama 3: <|begin_of_text|>, id 1004
# in tests/tokenizers/llama3.json), and not with --no-special-tokens.
mkdir -p "$T/l3tok" && cp "$(dirname "$0")/tokenizers/llama3.json" "$T/l3tok/tokenizer.json"
$MK --out "$T/l3" --vocab 1024 --tokenizer "$T/l3tok" --seed 1 > /dev/null || bad "mkckpt with the llama3 tokenizer"
first_id() { python3 -c "import json,struct,sys; b=open(sys.argv[1],'rb').read(); n=struct.unpack('<Q',b[:8])[0]; h=json.loads(b[8:8+n]); o=h['ids']['data_offsets'][0]; print(struct.unpack('<i',b[8+n+o:12+n+o])[0])" "$1"; }
$GEN --model "$T/l3" --prompt "Hello" --max-new-tokens 0 --dump-logits "$T/l3a.st" --device cpu > /dev/null 2>&1
$GEN --model "$T/l3" --prompt "Hello" --max-new-tokens 0 --dump-logits "$T/l3b.st" --no-special-tokens --device cpu > /dev/null 2>&1
[ "$(first_id "$T/l3a.st")" = 1004 ] && [ "$(first_id "$T/l3b.st")" != 1004 ] && ok ||
  bad "--prompt BOS: with $(first_id "$T/l3a.st"), without $(first_id "$T/l3b.st")"

# postnas-info: the parameter count is the checkpoint's, attention's decode state grows with the context
# (2 x ctx x kv heads x head dim x 2 bytes), a window's stops at the window, a linear block's does not grow
$MK --out "$T/hy" --layer-types attn,gdn,jet,swa --sliding-window 64 --seed 1 > /dev/null || bad "mkckpt hybrid"
$B/postnas-info --model "$T/hy" --context 1000 --json > "$T/i1.json" && $B/postnas-info --model "$T/hy" --context 5000 --json \
  > "$T/i2.json" && ok || bad "postnas-info"
PYTHONPATH=$(cd "$(dirname "$0")" && pwd) python3 - "$T/i1.json" "$T/i2.json" "$T/hy" << 'EOF' && ok || bad "postnas-info numbers"
import json, sys
from st_values import header
a, b = (json.load(open(p)) for p in sys.argv[1:3])
cfg = json.load(open(sys.argv[3] + "/config.json"))
n = 0
for v in header(sys.argv[3] + "/model.safetensors")[2].values():
    k = 1
    for s in v["shape"]:
        k *= s
    n += k
assert a["parameters"] == n, (a["parameters"], n)
kvh, hd = cfg["num_key_value_heads"], cfg["hidden_size"] // cfg["num_attention_heads"]
la, lb = a["layers"], b["layers"]
assert [x["mixer"] for x in la] == ["attn", "gdn", "jet", "swa=64"], la
assert la[0]["state_bytes"] == 2 * 1000 * kvh * hd * 2 and lb[0]["state_bytes"] == 2 * 5000 * kvh * hd * 2
assert la[3]["state_bytes"] == lb[3]["state_bytes"] == 2 * 64 * kvh * hd * 2
assert la[1]["state_bytes"] == lb[1]["state_bytes"] > 0 and la[2]["state_bytes"] == lb[2]["state_bytes"] > 0
assert b["state_bytes"] == sum(x["state_bytes"] for x in lb)
EOF
$B/postnas-info --model "$T/hy" --context 4096 | grep -q "^total: " && ok || bad "postnas-info table"
expect_error "postnas-info: error: $T/nothing/config.json" $B/postnas-info --model "$T/nothing"
expect_error "--model DIR is required" $B/postnas-info --context 5

echo "test_cli: $pass passed, $fail failed"
[ $fail -eq 0 ]
