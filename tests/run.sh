#!/usr/bin/env bash
# The whole test suite: a release build (with the CUDA backend compiled when nvcc is found) runs the CPU
# tests, then a build with AddressSanitizer + UndefinedBehaviorSanitizer (CPU backend) runs them again,
# then the libFuzzer targets run for 30 s each (tests/fuzz/run.sh, clang).
# The GPU suite needs a GPU: tests/gpu/run.sh.
set -uo pipefail
cd "$(dirname "$0")/.."
for tool in meson ninja; do
  command -v $tool > /dev/null || { echo "tests/run.sh: '$tool' not found: run 'bash scripts/install-deps.sh' (or the quick start's first command) first" >&2; exit 1; }
done
jobs=$(nproc)
total_ok=0 total_fail=0
run_suite() { # build_dir meson_setup_args...
  local dir=$1; shift
  if [ ! -f "$dir/build.ninja" ]; then
    if ! meson setup "$dir" "$@" > "$dir.setup.log" 2>&1; then
      tail -n 40 "$dir.setup.log"
      echo "step failed: configure $dir (meson setup $dir $*); whole output in $dir.setup.log"
      total_fail=$((total_fail + 1)); return
    fi
  fi
  if ! ninja -C "$dir" -j "$jobs" > "$dir.build.log" 2>&1; then
    tail -n 60 "$dir.build.log"
    echo "step failed: compile $dir (ninja -C $dir); whole output in $dir.build.log"
    total_fail=$((total_fail + 1)); return
  fi
  meson test -C "$dir" --print-errorlogs --num-processes 1 | tee "$dir.test.log"
  local ok fail
  ok=$(grep -E '^Ok:' "$dir.test.log" | awk '{print $2}')
  fail=$(grep -E '^(Fail|Timeout|Unexpected Pass):' "$dir.test.log" | awk '{s += $NF} END {print s + 0}')
  total_ok=$((total_ok + ${ok:-0})); total_fail=$((total_fail + fail))
  [ -n "$ok" ] || { echo "step failed: meson test -C $dir printed no result"; total_fail=$((total_fail + 1)); }
}
echo "== release build =="
run_suite build
echo "== ASan + UBSan build =="
export ASAN_OPTIONS=detect_leaks=1:abort_on_error=0 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
export PN_TEST_QUICK=1 # the sanitized run skips the largest parity inputs (the release run covers them)
# ... and runs every CPU op on the thread pool, whatever its size (kernels/cpu/threads.c keeps small ops on
# the calling thread otherwise, so the suite's small shapes would never run two threads at once).
export PN_CPU_MIN_WORK=0 PN_CPU_ADAPT=0 OMP_NUM_THREADS=3
run_suite build-asan -Dcuda=disabled -Dbuildtype=debug -Db_sanitize=address,undefined -Db_lundef=false
# Fuzzing: every libFuzzer target of tests/fuzz/ for PN_FUZZ_SECONDS (default 30) each, in build-fuzz/
# (clang; about 4 minutes in all on 2 cores). Skipped, and said so, where clang has no libFuzzer.
echo "== fuzzing (tests/fuzz/run.sh, ${PN_FUZZ_SECONDS:-30} s per target) =="
bash tests/fuzz/run.sh "${PN_FUZZ_SECONDS:-30}"
case $? in
  0) total_ok=$((total_ok + 1)) ;;
  77) echo "fuzzing skipped (see above)" ;;
  *) echo "step failed: tests/fuzz/run.sh"; total_fail=$((total_fail + 1)) ;;
esac
echo "tests: $total_ok passed, $total_fail failed"
[ "$total_fail" -eq 0 ]
