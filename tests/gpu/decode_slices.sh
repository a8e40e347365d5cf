#!/usr/bin/env bash
# Batch-1 decode over the decode-attention kernel's slice settings (PN_DECODE_MIN_SLICE: keys per slice at
# least, PN_DECODE_PER_SM: blocks per SM the slices aim for) at the 4K context of issue 19's batch-1 bar, at
# 640 keys and at 64K, Qwen2.5-1.5B shape. usage (after tests/gpu/run.sh built build-gpu, e.g. as its
# PN_GPU_EXTRA): bash tests/gpu/decode_slices.sh
set -uo pipefail
ck=/tmp/pn-q15
[ -f $ck/config.json ] || build-gpu/postnas-mkckpt --preset qwen2.5-1.5b --seed 1 --out $ck > /dev/null
bench() { # context new-tokens -> "N tok/s reached P%"
  build-gpu/postnas-bench --model $ck --context "$1" --batch 1 --new-tokens "$2" --device cuda 2>&1 |
    grep -E 'decode:|reached' | grep -o -E '[0-9.]+ tok/s|reached [0-9]+%' | tr '\n' ' '
}
for ctx in ${PN_SLICE_CONTEXTS:-4096 640}; do
  for ms in ${PN_SLICE_MINS:-64 128 256 512 1024}; do
    for ps in 2 1; do echo "context $ctx, min slice $ms, per SM $ps: $(PN_DECODE_MIN_SLICE=$ms PN_DECODE_PER_SM=$ps bench $ctx 256)"; done
  done
done
for ms in ${PN_SLICE_LONG:-64 256 1024}; do echo "context 65536, min slice $ms: $(PN_DECODE_MIN_SLICE=$ms bench 65536 64)"; done
