#!/usr/bin/env bash
# The GPU suite, for a CUDA machine (an H100 here): builds with the CUDA backend, runs the CPU suite, the
# CUDA-vs-CPU op tests, the model parity goldens on CUDA (bf16, tolerance 2e-2), compute-sanitizer on the
# op tests, and the forward benchmark at the Qwen2.5-1.5B shape (ANCHORS.md: 127,207 tok/s teacher
# forward, B 2 x T 4096). Logs go to OUTDIR.
#
# Missing -dev packages can be carried as Debian .deb files in .debs/ (jansson's headers are the usual
# one): they are unpacked into /tmp/pn-deps and found through pkg-config.
set -uo pipefail
OUTDIR=${1:-/tmp/pn-gpu}
mkdir -p "$OUTDIR"
cd "$(dirname "$0")/../.."
export PATH=$PATH:/opt/torch/.venv/bin:/usr/local/cuda/bin
log() { echo "== $* ==" | tee -a "$OUTDIR/summary.txt"; }

have_blas() { pkg-config --exists openblas || [ -f /usr/include/x86_64-linux-gnu/cblas.h ] || [ -f /usr/include/cblas.h ]; }
if { ! pkg-config --exists jansson || ! have_blas; } && ls .debs/*.deb > /dev/null 2>&1; then
  echo "unpacking carried packages: $(ls .debs)"
  P=/tmp/pn-deps
  for f in .debs/*.deb; do dpkg -x "$f" $P; done
  mkdir -p $P/pc $P/rt
  for pc in $(find $P -name '*.pc'); do
    sed -E "s#^(prefix|libdir|includedir)=/usr#\1=$P/usr#" "$pc" > "$P/pc/$(basename "$pc")"
  done
  # -dev symlinks whose runtime library the system holds (libjansson.so -> libjansson.so.4.14.0).
  for l in $(find $P -xtype l -name '*.so'); do
    t=$(basename "$(readlink "$l")")
    [ -e "/usr/lib/x86_64-linux-gnu/$t" ] && ln -sf "/usr/lib/x86_64-linux-gnu/$t" "$l"
  done
  # Runtime libraries the system lacks (libopenblas.so.0, maybe libgfortran.so.5) are found through rt/.
  for so in $(find $P -name '*.so.[0-9]*'); do
    b=$(basename "$so")
    ldconfig -p | grep -q " $b " || ln -sf "$so" "$P/rt/$b"
  done
  export PKG_CONFIG_PATH=$P/pc${PKG_CONFIG_PATH:+:$PKG_CONFIG_PATH}
  export LD_LIBRARY_PATH=$P/rt${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
fi

log "build"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | tee -a "$OUTDIR/summary.txt"
if [ ! -f build-gpu/build.ninja ]; then
  meson setup build-gpu -Dcuda=enabled -Dsm="${PN_SM:-90}" > "$OUTDIR/setup.log" 2>&1 || { tail -30 "$OUTDIR/setup.log"; exit 1; }
fi
ninja -C build-gpu > "$OUTDIR/build.log" 2>&1 || { tail -40 "$OUTDIR/build.log"; exit 1; }

log "CPU suite"
meson test -C build-gpu --print-errorlogs > "$OUTDIR/cpu-tests.log" 2>&1
grep -E '^(Ok|Fail):' "$OUTDIR/cpu-tests.log" | tee -a "$OUTDIR/summary.txt"

log "CUDA ops vs CPU"
build-gpu/tests/test_ops_cuda 2>&1 | tee "$OUTDIR/ops.log" | grep -E 'FAIL|passed|ms' | tee -a "$OUTDIR/summary.txt"

log "parity on CUDA (bf16 vs transformers fp32)"
build-gpu/tests/test_parity tests/goldens build-gpu/postnas-mkckpt --device cuda --tol 2e-2 2>&1 | tee -a "$OUTDIR/summary.txt"

if [ "${PN_SANITIZE:-1}" = 1 ] && command -v compute-sanitizer > /dev/null; then
  log "compute-sanitizer (memcheck) on the op tests and the CUDA parity run"
  PN_TEST_NO_BENCH=1 compute-sanitizer --tool memcheck --error-exitcode 9 build-gpu/tests/test_ops_cuda > "$OUTDIR/sanitizer.log" 2>&1
  echo "compute-sanitizer test_ops_cuda exit $?" | tee -a "$OUTDIR/summary.txt"
  tail -3 "$OUTDIR/sanitizer.log" | tee -a "$OUTDIR/summary.txt"
fi

log "forward benchmark, Qwen2.5-1.5B shape, bf16"
build-gpu/postnas-mkckpt --preset qwen2.5-1.5b --seed 1 --out /tmp/pn-q15 | tee -a "$OUTDIR/summary.txt"
build-gpu/tests/bench_forward /tmp/pn-q15 --device cuda --batch 2 --seq 4096 --iters 10 2>&1 | tee -a "$OUTDIR/summary.txt"
build-gpu/tests/bench_forward /tmp/pn-q15 --device cuda --batch 8 --seq 1024 --iters 10 2>&1 | tee -a "$OUTDIR/summary.txt"
ids=$(seq -s, 1 512)
build-gpu/postnas-generate --model /tmp/pn-q15 --ids "$ids" --max-new-tokens 128 --device cuda 2>&1 > /dev/null | tee -a "$OUTDIR/summary.txt"
log "done"
