#!/usr/bin/env bash
# make_seeds.sh BUILD_DIR OUT_DIR: seed corpora for the fuzz targets, made at fuzz time from files the
# project's own tools write (postnas-mkckpt checkpoints and tokenizers, a shard from postnas-data), a
# small cut of the real Qwen2 tokenizer in ../shared/data, and the command lines tests/test_cli.sh uses.
# Multi-file seeds use the archive format of tests/fuzz/fuzz_common.h (pieces joined by "\0##\0").
# Nothing here is committed: the seeds are a few hundred KB and cheap to remake.
set -euo pipefail
B=${1:?usage: make_seeds.sh BUILD_DIR OUT_DIR}
O=${2:?usage: make_seeds.sh BUILD_DIR OUT_DIR}
HERE=$(cd "$(dirname "$0")" && pwd)
SHARED=$HERE/../../../shared/data
MK=$B/postnas-mkckpt
DATA=$B/postnas-data
export PN_LOG=error ASAN_OPTIONS=detect_leaks=0
T=$(mktemp -d /tmp/pn_seeds.XXXXXX)
trap 'rm -rf "$T"' EXIT
for t in safetensors config tokenizer shard shard_bytes cli_generate cli_data gguf train_config; do mkdir -p "$O/$t"; done
# GGUF: the gguf-py files of the goldens (every tensor type; Llama, Qwen2, Qwen3).
for g in "$HERE"/../goldens/gguf/*/model.gguf; do cp "$g" "$O/gguf/$(basename "$(dirname "$g")").gguf"; done

# archive OUT FILE...: the files (or empty pieces for "-") joined by the separator.
archive() {
  local out=$1; shift
  python3 - "$out" "$@" << 'EOF'
import sys
out, files = sys.argv[1], sys.argv[2:]
parts = [b"" if f == "-" else open(f, "rb").read() for f in files]
open(out, "wb").write(b"\0##\0".join(parts))
EOF
}

# Checkpoints: every family, tied and untied, bf16 and f32, and a hybrid with every block type.
small="--hidden 16 --intermediate 32 --layers 1 --heads 2 --kv-heads 1 --vocab 260 --seed 1"
i=0
for args in "--arch qwen2" "--arch qwen3" "--arch llama --tie 0" "--arch qwen2 --dtype f32" \
            "--arch qwen2 --sliding-window 4 --layers 2" \
            "--layers 5 --layer-types attn,swa,jet,gdn,deltanet --lin-heads 2 --lin-head-dim 8"; do
  i=$((i + 1))
  # shellcheck disable=SC2086
  $MK --out "$T/ck$i" $small $args > /dev/null
  archive "$O/safetensors/ckpt$i" "$T/ck$i/model.safetensors" - - - "$T/ck$i/config.json"
  cp "$T/ck$i/config.json" "$O/config/config$i.json"
done
# A sharded checkpoint: ck1's tensors split over two files with an index (what --shard-mb writes for
# larger models).
python3 - "$T/ck1" << 'EOF'
import json, struct, sys
d = sys.argv[1]
raw = open(f"{d}/model.safetensors", "rb").read()
n = struct.unpack("<Q", raw[:8])[0]
hdr = json.loads(raw[8:8 + n]); data = raw[8 + n:]
names = sorted(k for k in hdr if k != "__metadata__")
wm = {}
for part, sel in enumerate([names[::2], names[1::2]]):
    h, off, body = {}, 0, b""
    for k in sel:
        b, e = hdr[k]["data_offsets"]
        h[k] = {"dtype": hdr[k]["dtype"], "shape": hdr[k]["shape"], "data_offsets": [off, off + e - b]}
        body += data[b:e]; off += e - b
        wm[k] = f"model-0000{part + 1}-of-00002.safetensors"
    hb = json.dumps(h).encode(); hb += b" " * (-len(hb) % 8)
    open(f"{d}/model-0000{part + 1}-of-00002.safetensors", "wb").write(struct.pack("<Q", len(hb)) + hb + body)
json.dump({"metadata": {"total_size": len(data)}, "weight_map": wm}, open(f"{d}/model.safetensors.index.json", "w"))
EOF
archive "$O/safetensors/sharded" - "$T/ck1/model.safetensors.index.json" "$T/ck1/model-00001-of-00002.safetensors" \
  "$T/ck1/model-00002-of-00002.safetensors" "$T/ck1/config.json"
# Configs as transformers writes them for the real models (sizes only matter to the parser here).
$MK --out "$T/real" --preset qwen2.5-1.5b --layers 1 --vocab 300 --hidden 16 --heads 2 --kv-heads 2 --head-dim 8 \
  --intermediate 16 > /dev/null
cp "$T/real/config.json" "$O/config/qwen25.json"

# Tokenizers: the project's byte-level tokenizer.json (+ tokenizer_config.json), and a cut of the real
# Qwen2 vocab.json + merges.txt + tokenizer_config.json, also as a Qwen2-style tokenizer.json (NFC,
# Split regex, ByteLevel).
archive "$O/tokenizer/bytes" "$T/ck1/tokenizer.json" - - "$T/ck1/tokenizer_config.json" <(printf 'Hello world <|endoftext|>')
if [ -f "$SHARED/tokenizers/qwen2/vocab.json" ]; then
  python3 - "$SHARED/tokenizers/qwen2" "$T" << 'EOF'
import json, sys
src, out = sys.argv[1], sys.argv[2]
vocab = {k: v for k, v in json.load(open(f"{src}/vocab.json", encoding="utf-8")).items() if v < 600}
merges = []
for line in open(f"{src}/merges.txt", encoding="utf-8"):
    p = line.rstrip("\n").split(" ")
    if len(p) == 2 and p[0] in vocab and p[1] in vocab and p[0] + p[1] in vocab:
        merges.append(" ".join(p))
    if len(merges) >= 300:
        break
json.dump(vocab, open(f"{out}/vocab.json", "w", encoding="utf-8"), ensure_ascii=False)
open(f"{out}/merges.txt", "w", encoding="utf-8").write("#version: 0.2\n" + "\n".join(merges) + "\n")
regex = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")
bl = {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": False, "use_regex": False}
tj = {"version": "1.0",
      "added_tokens": [{"id": 151643, "content": "<|endoftext|>", "single_word": False, "lstrip": False,
                        "rstrip": False, "normalized": False, "special": True}],
      "normalizer": {"type": "NFC"},
      "pre_tokenizer": {"type": "Sequence", "pretokenizers": [
          {"type": "Split", "pattern": {"Regex": regex}, "behavior": "Isolated", "invert": False}, bl]},
      "decoder": bl, "model": {"type": "BPE", "vocab": vocab, "merges": merges, "ignore_merges": False}}
json.dump(tj, open(f"{out}/qwen_tokenizer.json", "w", encoding="utf-8"), ensure_ascii=False)
EOF
  text=$(mktemp "$T/text.XXXX"); printf "Héllo, wörld! It's 2025.\n\tcafe\xcc\x81 <|endoftext|>" > "$text"
  archive "$O/tokenizer/qwen_files" - "$T/vocab.json" "$T/merges.txt" "$SHARED/tokenizers/qwen2/tokenizer_config.json" "$text"
  archive "$O/tokenizer/qwen_json" "$T/qwen_tokenizer.json" - - "$SHARED/tokenizers/qwen2/tokenizer_config.json" "$text"
  archive "$O/tokenizer/gpt2_files" - "$T/vocab.json" "$T/merges.txt" - "$text"
fi

# Shards: the shard target is structure-aware (its input chooses the file's properties), so its seeds are
# byte strings: a good shard's choices (all zero), and a few that pick each layout and odd attributes.
printf '\x20\x04\x00\x03\x04\x05\x06\x07' > "$O/shard/docs"
head -c 64 /dev/zero > "$O/shard/zeros"
for b in 05 06 07 0c 10 40 80 ff; do printf "\x20\x08\x00\x03\x03\x03\x03\x03\x03\x03\x03\x$b\x$b\x04\x$b\x$b\x04" > "$O/shard/pick$b"; done

# Whole shard files for the opt-in byte-level target: what postnas-data tokenize writes.
printf 'one document\n' > "$T/d1.txt"; printf 'and another, a little longer \xe2\x80\x94 with UTF-8\n' > "$T/d2.txt"
$DATA tokenize --tokenizer "$T/ck1" --text "$T/d1.txt" "$T/d2.txt" --out "$T/shards" --threads 1 > /dev/null 2>&1
cp "$T/shards/shard-00000.h5" "$O/shard_bytes/two_docs.h5"

# Command lines (NUL-separated arguments), from tests/test_cli.sh's runs.
cmd() { local out=$1; shift; printf '%s\0' "$@" | head -c -1 > "$out"; }
cmd "$O/cli_generate/ids" --model m --ids 1,2,3,4 --max-new-tokens 8 --device cpu --print-ids
cmd "$O/cli_generate/sample" --model m --ids 5,6 --max-new-tokens 16 --temperature 1.5 --seed 7 --device cpu
cmd "$O/cli_generate/prompt" --model=m --prompt "Hi!" --max-new-tokens 4 --dump-logits p.safetensors
cmd "$O/cli_generate/help" --help
cmd "$O/cli_data/tokenize" tokenize --tokenizer m --jsonl b.jsonl c.jsonl --field text --out d1 --shard-tokens 10M --threads 2 --on-bad-line fail
cmd "$O/cli_data/tokenize_dir" tokenize --tokenizer=m --dir in --out=d3 --progress
cmd "$O/cli_data/inspect" inspect d1/shard-00000.h5 --tokenizer m --sample 16
cmd "$O/cli_data/synth" synth --task corpus --n 50 --seed 3 --first 2 --entities 100 --out c.jsonl
# Training configs: the example configs, the golden cases and the written-back form of one.
for f in "$HERE"/../../configs/*.yaml "$HERE"/../goldens/trainer/*.yaml; do cp "$f" "$O/train_config/$(basename "$f")"; done
"$B/postnas-train" --print-schema yaml > "$O/train_config/defaults.yaml" 2> /dev/null || true
echo "make_seeds: $(find "$O" -type f | wc -l) seeds in $O"
