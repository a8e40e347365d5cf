# tests/test_lib.sh: what the shell tests share (sourced after they set T, their temporary folder): pass/fail
# counters, and expect_error for the project's rule that bad input ends with one error line and exit 1.
pass=0 fail=0
ok() { pass=$((pass + 1)); }
bad() { fail=$((fail + 1)); echo "FAIL: $*" >&2; }

# expect_error NEEDLE CMD...: exit 1, exactly one stderr line, containing the needle (no crash, no noise).
expect_error() {
  local needle=$1; shift
  "$@" > "$T/out" 2> "$T/err"
  local rc=$?
  local lines; lines=$(grep -c . "$T/err")
  if [ $rc -eq 1 ] && [ "$lines" -eq 1 ] && grep -qF -- "$needle" "$T/err"; then ok
  else bad "$* -> rc=$rc, stderr: $(cat "$T/err")  (wanted one line containing '$needle')"; fi
}

# tiny_model_and_shards BUILD MODEL_DIR DATA_DIR SEED N: a random tiny model (postnas-mkckpt --preset tiny) and
# N synthetic corpus items tokenized with its tokenizer into DATA_DIR/shards.
tiny_model_and_shards() {
  local b=$1 model=$2 data=$3 seed=$4 n=$5
  mkdir -p "$data"
  "$b/postnas-data" synth --task corpus --n "$n" --out "$data/c.jsonl" > /dev/null || bad "synth"
  "$b/postnas-mkckpt" --preset tiny --seed "$seed" --out "$model" > /dev/null || bad "mkckpt"
  "$b/postnas-data" tokenize --tokenizer "$model" --jsonl "$data/c.jsonl" --field text --out "$data/shards" \
    --threads 1 > /dev/null 2>&1 || bad "tokenize"
}
