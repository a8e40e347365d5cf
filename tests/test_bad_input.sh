#!/usr/bin/env bash
# The bad-input catalogue (issue 11): malformed checkpoints, shards, tokenizer folders and command lines,
# each with the error it must produce. Every case must end with exit status 1 and exactly one line on
# stderr, "postnas-<tool>: error: ...", that names the file (or flag) and the problem: no crash, no
# sanitizer report, no hang (each run has a time limit), no second line. Shards come from
# tests/fuzz/mkbadshard.c (h5py is not available to the suite); checkpoints are edited with python3.
set -u
B=${1:?usage: test_bad_input.sh BUILD_DIR}
GEN=$B/postnas-generate
MK=$B/postnas-mkckpt
DATA=$B/postnas-data
BAD=$B/tests/mkbadshard
T=$(mktemp -d /tmp/pn_test_bad.XXXXXX)
trap 'rm -rf "$T"' EXIT
pass=0 fail=0
ok() { pass=$((pass + 1)); }
bad() { fail=$((fail + 1)); echo "FAIL: $*" >&2; }

# expect_error TOOL NEEDLE CMD...: exit 1 within 60 s, one stderr line "postnas-TOOL: error: ...NEEDLE...".
expect_error() {
  local tool=$1 needle=$2; shift 2
  timeout 60 "$@" > "$T/out" 2> "$T/err" < /dev/null
  local rc=$? lines first
  lines=$(wc -l < "$T/err")
  first=$(head -n 1 "$T/err")
  if [ $rc -eq 1 ] && [ "$lines" -eq 1 ] && [[ $first == "postnas-$tool: error: "* ]] && grep -qF -- "$needle" "$T/err"; then ok
  else bad "$* -> rc=$rc, $lines stderr line(s): $(head -c 600 "$T/err")  (wanted one line 'postnas-$tool: error: ...$needle...')"; fi
}
# expect_ok CMD...: exit 0 within 60 s.
expect_ok() {
  timeout 60 "$@" > "$T/out" 2> "$T/err" < /dev/null && ok || bad "$* -> rc=$?, stderr: $(head -c 600 "$T/err")"
}

# st_edit FILE PYTHON: rewrites a safetensors header in place; PYTHON edits the dict `h` (data unchanged).
st_edit() {
  python3 - "$1" "$2" << 'EOF'
import json, struct, sys
path, code = sys.argv[1], sys.argv[2]
raw = open(path, "rb").read()
n = struct.unpack("<Q", raw[:8])[0]
h = json.loads(raw[8:8 + n]); data = raw[8 + n:]
exec(code)
hb = json.dumps(h).encode(); hb += b" " * (-len(hb) % 8)
open(path, "wb").write(struct.pack("<Q", len(hb)) + hb + data)
EOF
}
# json_edit FILE PYTHON: edits the JSON object `j` of FILE in place.
json_edit() {
  python3 - "$1" "$2" << 'EOF'
import json, sys
path, code = sys.argv[1], sys.argv[2]
j = json.load(open(path))
exec(code)
json.dump(j, open(path, "w"), indent=1)
EOF
}

$MK --out "$T/m" --seed 1 --init-std 0.3 > /dev/null || bad "mkckpt tiny"
$MK --out "$T/sh" --seed 1 --hidden 128 --intermediate 512 --vocab 4096 --shard-mb 1 --dtype f32 > /dev/null || bad "mkckpt sharded"

# 1. A sharded index whose later weight_map value is not a file name: refused before any shard opens
#    (it crashed in pn_ckpt_close when ck->nfiles ran ahead of ck->files).
for v in '""' '5' 'None' '"sub/model.safetensors"' '".."'; do
  rm -rf "$T/idx"; cp -r "$T/sh" "$T/idx"
  json_edit "$T/idx/model.safetensors.index.json" "j['weight_map'][sorted(j['weight_map'])[-1]] = $v"
  expect_error generate "model.safetensors.index.json: weight_map[" $GEN --model "$T/idx" --ids 1 --device cpu
done
rm -rf "$T/idx"; cp -r "$T/sh" "$T/idx"; echo '{"weight_map": []}' > "$T/idx/model.safetensors.index.json"
expect_error generate "model.safetensors.index.json: missing or empty \"weight_map\"" $GEN --model "$T/idx" --ids 1 --device cpu
echo '[1, 2]' > "$T/idx/model.safetensors.index.json"
expect_error generate "model.safetensors.index.json: missing or empty \"weight_map\"" $GEN --model "$T/idx" --ids 1 --device cpu

# 2. Tensors of 5 to 8 dimensions (the safetensors reader takes 8, the model 1 or 2): a shape mismatch,
#    not an internal error; 9 dimensions are refused by the reader.
for shape in '[1, 1, 1, 1, 64]' '[1, 1, 1, 1, 1, 1, 1, 64]'; do
  rm -rf "$T/dims"; cp -r "$T/m" "$T/dims"
  st_edit "$T/dims/model.safetensors" "h['model.norm.weight']['shape'] = $shape"
  expect_error generate "model.safetensors: tensor 'model.norm.weight' has shape $shape but config.json implies [64]" \
    $GEN --model "$T/dims" --ids 1 --device cpu
done
st_edit "$T/dims/model.safetensors" "h['model.norm.weight']['shape'] = [1] * 8 + [64]"
expect_error generate "model.safetensors: tensor 'model.norm.weight': 9 dimensions (at most 8 supported)" \
  $GEN --model "$T/dims" --ids 1 --device cpu
# A dtype the model cannot take.
rm -rf "$T/dt"; cp -r "$T/m" "$T/dt"
st_edit "$T/dt/model.safetensors" "h['model.norm.weight']['dtype'] = 'I16'"
expect_error generate "model.safetensors: tensor 'model.norm.weight' has dtype I16, expected a floating-point dtype" \
  $GEN --model "$T/dt" --ids 1 --device cpu

# 3. A config whose sizes contradict the weights names the first mismatch (it reported "could not
#    allocate 3072.00 GiB" before: parameters were allocated before any shape was checked).
rm -rf "$T/big"; cp -r "$T/m" "$T/big"
json_edit "$T/big/config.json" "j.update(hidden_size=1048576, intermediate_size=1048576, head_dim=16)"
expect_error generate "model.safetensors: tensor 'model.embed_tokens.weight' has shape [257, 64] but config.json implies [257, 1048576]" \
  $GEN --model "$T/big" --ids 1 --device cpu

# 4. A tied model's lm_head.weight: a wrong shape or dtype is an error; one equal to the embedding is
#    accepted silently; a different one is ignored with a warning (transformers uses the embedding).
tied() { # tied DIR KIND: a copy of the tiny model with an lm_head.weight of KIND (shape, dtype, same, other)
  rm -rf "$1"; cp -r "$T/m" "$1"
  python3 - "$1/model.safetensors" "$2" << 'EOF'
import json, struct, sys
p, kind = sys.argv[1], sys.argv[2]; raw = open(p, "rb").read(); n = struct.unpack("<Q", raw[:8])[0]
h = json.loads(raw[8:8 + n]); data = raw[8 + n:]
src = "model.norm.weight" if kind == "shape" else "model.embed_tokens.weight"
b, e = h[src]["data_offsets"]; body = bytearray(data[b:e])
if kind == "other": body[0] ^= 0x40
ent = dict(h[src]); ent["data_offsets"] = [len(data), len(data) + len(body)]
if kind == "dtype": ent["dtype"] = "I16"
h["lm_head.weight"] = ent; data += bytes(body)
hb = json.dumps(h).encode(); hb += b" " * (-len(hb) % 8)
open(p, "wb").write(struct.pack("<Q", len(hb)) + hb + data)
EOF
}
tied "$T/tied" shape
expect_error generate "model.safetensors: tensor 'lm_head.weight' has shape [64] but the embedding it is tied to (tie_word_embeddings) is [257, 64]" \
  $GEN --model "$T/tied" --ids 1 --device cpu
tied "$T/tied" dtype
expect_error generate "model.safetensors: tensor 'lm_head.weight' has dtype I16, expected a floating-point dtype" \
  $GEN --model "$T/tied" --ids 1 --device cpu
tied "$T/tied" same
expect_ok $GEN --model "$T/tied" --ids 1 --max-new-tokens 1 --device cpu
grep -q "lm_head" "$T/err" && bad "an lm_head equal to the embedding should load silently: $(cat "$T/err")" || ok
tied "$T/tied" other
expect_ok $GEN --model "$T/tied" --ids 1 --max-new-tokens 1 --device cpu
grep -q "ignoring 'lm_head.weight': it differs from 'model.embed_tokens.weight'" "$T/err" && ok || bad "no warning for a differing tied lm_head: $(cat "$T/err")"

# 5. Strict numbers on every flag: no overflow, no wrap, no silent 0 for an empty string, no clamping.
for v in 2147483647 4294967298 '' -1 ' 5' '+5' 5x 0x10 99999999999999999999999; do
  expect_error generate "--max-new-tokens: '$v' is not an integer in [0, 1073741824]" $GEN --model "$T/m" --ids 1 --max-new-tokens "$v"
done
expect_error generate "KV cache for 1 x 1073741825 tokens: out of cpu memory" $GEN --model "$T/m" --ids 1 --max-new-tokens 1073741824 --device cpu
for v in 123456789012345678901234567890 -1 '' 1.5; do
  expect_error generate "--seed: '$v' is not an integer in [0, 18446744073709551615]" $GEN --model "$T/m" --ids 1 --seed "$v"
done
for v in '' nan inf -1 1e400 0x1p3 ' 1'; do
  expect_error generate "--temperature: '$v' is not a number in [0, 1e+06]" $GEN --model "$T/m" --ids 1 --temperature "$v"
done
for v in '' nan -0.5 1.5 ' 1'; do
  expect_error generate "--top-p: '$v' is not a number in [0, 1]" $GEN --model "$T/m" --ids 1 --top-p "$v"
done
for v in '' -1 2147483648 1.5; do
  expect_error generate "--top-k: '$v' is not an integer in [0, 2147483647]" $GEN --model "$T/m" --ids 1 --top-k "$v"
done
for v in '1,,2' '1,' ',1' ' 1' '+1' '-1' '1 2' '2147483648' '99999999999'; do
  expect_error generate "--ids: '$v' is not a comma-separated list of token ids" $GEN --model "$T/m" --ids "$v"
done
expect_error data "--sample: '' is not a count in [0, 16777216]" $DATA inspect x.h5 --sample ''
expect_error data "--sample: ' 5' is not a count in [0, 16777216]" $DATA inspect x.h5 --sample ' 5'
expect_error data "--threads: '0' is not a count in [1, 1024]" $DATA tokenize --tokenizer "$T/m" --text x --out y --threads 0
expect_error data "--shard-tokens: '-5' is not a count" $DATA tokenize --tokenizer "$T/m" --text x --out y --shard-tokens=-5
expect_error data "--n: '4294967297' is not a count in [1, 4294967296]" $DATA synth --task mqar --n 4294967297 --out x
expect_error data "--seed: '123456789012345678901234567890' is not a count" $DATA synth --task mqar --n 1 --seed 123456789012345678901234567890 --out x
expect_error data "--first: '5Q' is not a count" $DATA synth --task mqar --n 1 --first 5Q --out x
expect_error mkckpt "--seed: '123456789012345678901234567890' is not an integer" $MK --out "$T/x" --seed 123456789012345678901234567890
[ ! -e "$T/x" ] && ok || bad "a refused mkckpt left $T/x behind"

# 6. Untrusted bytes in a message stay on one line (escaped).
expect_error generate "--ids: '1\\n2' is not a comma-separated list of token ids" $GEN --model "$T/m" --ids $'1\n2'
expect_error generate "no such checkpoint folder" $GEN --model $'no\nsuch\tdir\x1b[31m' --ids 1
rm -rf "$T/cj"; cp -r "$T/m" "$T/cj"; printf '{"model_type":\n\n\x01' > "$T/cj/config.json"
expect_error generate "config.json" $GEN --model "$T/cj" --ids 1 --device cpu
grep -q $'\x01' "$T/err" && bad "a control byte reached the terminal" || ok
rm -rf "$T/hj"; cp -r "$T/m" "$T/hj"; printf '\x0e\x00\x00\x00\x00\x00\x00\x00{"a\n":\x07 1}\n\n\n\n' > "$T/hj/model.safetensors"
expect_error generate "model.safetensors: header is not valid JSON" $GEN --model "$T/hj" --ids 1 --device cpu

# 7. Only regular files are opened: a FIFO where an input file should be is an error, not a hang.
mkfifo "$T/fifo.h5"
expect_error data "fifo.h5: not a regular file (a FIFO)" $DATA inspect "$T/fifo.h5"
expect_error data "fifo.h5: not a regular file" $DATA tokenize --tokenizer "$T/m" --text "$T/fifo.h5" --out "$T/d0"
[ ! -e "$T/d0" ] && ok || bad "a refused tokenize left $T/d0 behind"
rm -rf "$T/ff"; cp -r "$T/m" "$T/ff"; rm "$T/ff/model.safetensors"; mkfifo "$T/ff/model.safetensors"
expect_error generate "no model.safetensors or model.safetensors.index.json" $GEN --model "$T/ff" --ids 1 --device cpu
rm -rf "$T/ff"; cp -r "$T/sh" "$T/ff"; f=$(ls "$T/ff"/model-00002-*); rm "$f"; mkfifo "$f"
expect_error generate "model-00002-of-" $GEN --model "$T/ff" --ids 1 --device cpu
grep -q "not a regular file (a FIFO)" "$T/err" && ok || bad "FIFO shard: $(cat "$T/err")"
rm -rf "$T/ff"; cp -r "$T/sh" "$T/ff"; rm "$T/ff/model.safetensors.index.json"; mkfifo "$T/ff/model.safetensors.index.json"
expect_error generate "no model.safetensors or model.safetensors.index.json" $GEN --model "$T/ff" --ids 1 --device cpu
# merges.txt as a FIFO (read through pn_read_file, which opens regular files only).
rm -rf "$T/tk"; mkdir "$T/tk"; echo '{"a": 0}' > "$T/tk/vocab.json"; mkfifo "$T/tk/merges.txt"
echo hello > "$T/hello.txt"
expect_error data "merges.txt: not a regular file (a FIFO)" $DATA tokenize --tokenizer "$T/tk" --text "$T/hello.txt" --out "$T/d0"

# 8. Shards: malformed ones are refused at open (or by inspect's full scan) with a line naming the file.
shard_case() { # shard_case RECIPE NEEDLE
  "$BAD" "$1" "$T/$1.h5" || { bad "mkbadshard $1"; return; }
  expect_error data "$T/$1.h5: $2" $DATA inspect "$T/$1.h5"
}
"$BAD" good "$T/good.h5" && expect_ok $DATA inspect "$T/good.h5"
"$BAD" fletcher-only "$T/fl.h5" && expect_ok $DATA inspect "$T/fl.h5"
# sparse datasets of 2^36 elements in a ~12 KB file: refused at open instead of a scan of zeros for hours
shard_case sparse-tokens "dataset 'tokens' holds 68719476736 elements in chunks of 65536, but 1 of its 1048576 chunks are stored"
shard_case sparse-offsets "dataset 'doc_offsets' holds 68719476736 elements"
shard_case contiguous-unwritten "dataset 'tokens' holds 6 elements (24 bytes) but stores 0 bytes"
# data that lives elsewhere: a virtual dataset over a missing file read as zeros
shard_case virtual-tokens "dataset 'tokens' is a virtual dataset"
shard_case external-tokens "dataset 'tokens' is stored in external files"
shard_case external-link "'tokens' is a link to another object or file"
shard_case compact-tokens "dataset 'tokens' has compact storage"
shard_case huge-chunk "dataset 'tokens' has chunks of 16777216 elements"
# documents that do not end with eos, empty documents, an empty tokenizer identity
shard_case no-eos-last "document 1 does not end with eos id 256 (its last token is 33)"
shard_case no-eos-first "document 0 does not end with eos id 256 (token 106 at position 2)"
shard_case empty-doc "document 0 is empty"
shard_case empty-tokenizer "the 'tokenizer' attribute is empty"
shard_case wide-int-attr "attribute 'vocab_size' is not an integer"
shard_case float-attr "attribute 'eos_id' is not an integer"

# A damaged global heap (where the string attributes live): libhdf5 1.10.8 copied past its buffers
# (memcpy-param-overlap in H5T__conv_vlen); it is walked and refused before libhdf5 reads it.
"$BAD" good "$T/heap.h5" && python3 - "$T/heap.h5" << 'EOF'
import sys
p = sys.argv[1]; d = bytearray(open(p, "rb").read()); i = d.find(b"GCOL\x01\x00\x00\x00")
d[i + 24:i + 32] = (0xfd000000).to_bytes(8, "little"); open(p, "wb").write(d)
EOF
expect_error data "$T/heap.h5: corrupted HDF5 global heap at byte" $DATA inspect "$T/heap.h5"

# 9. Byte-damaged shards that crash libhdf5 1.10.8 itself (a global heap object past its buffer, a broken
#    object header; found by tests/fuzz/fuzz_shard_bytes.c): inspect opens the file in a child process, so
#    the crash is reported as one line. Sanitizer reports go to a file (ASAN_OPTIONS log_path) so the
#    sanitized build sees the same single line. A libhdf5 that does not crash on them (Ubuntu 24.04's
#    1.10.10 reads #3 and finds it is no shard) gives its own one-line error naming the file.
for i in 1 3; do
  cp "$(dirname "$0")/fuzz/crashes/shard_bytes-libhdf5-$i" "$T/hdf5crash$i.h5"
  ASAN_OPTIONS=log_path=$T/asan:abort_on_error=1:handle_segv=0:detect_leaks=0 expect_error data "$T/hdf5crash$i.h5: " \
    $DATA inspect "$T/hdf5crash$i.h5"
done

# 10. Configs that crash libfyaml 0.7.12 (found by tests/fuzz/fuzz_train_config.c, tests/fuzz/README.md):
#     an explicit key '? ' (refused before libfyaml parses) and a malformed key on a line of tabs (libfyaml's
#     excerpt printer crashed; errors are collected now): one line naming the file, line and column.
expect_error train "train_config-libfyaml-1:1:1: an explicit mapping key" \
  "$B/postnas-train" --config "$(dirname "$0")/fuzz/crashes/train_config-libfyaml-1" --check
expect_error train "train_config-libfyaml-3:2:58: YAML error: " \
  "$B/postnas-train" --config "$(dirname "$0")/fuzz/crashes/train_config-libfyaml-3" --check

echo "test_bad_input: $pass passed, $fail failed"
[ $fail -eq 0 ]
