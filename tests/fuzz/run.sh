#!/usr/bin/env bash
# tests/fuzz/run.sh [SECONDS_PER_TARGET]: builds the libFuzzer targets (clang, -fsanitize=fuzzer with
# AddressSanitizer + UndefinedBehaviorSanitizer, in build-fuzz/), makes seed corpora from the project's own
# tools (make_seeds.sh) and runs every target for the given time (default 30 s). A crash, a sanitizer
# report, a leak, a timeout (an input taking over 10 s: a hang is a failure), or a single allocation or
# resident size over 2 GB fails the run; the input that did it is saved under build-fuzz/fuzz-artifacts/.
# New interesting inputs accumulate in build-fuzz/fuzz-corpus/<target>/ from run to run.
#
#   bash tests/fuzz/run.sh 300                          # five minutes per target
#   FUZZ_TARGETS="shard config" bash tests/fuzz/run.sh  # some targets only
#   build-fuzz/tests/fuzz/fuzz_shard CRASH_FILE          # replay one input
#
# Exit 0: all clean; 1: a target failed (named, with the tail of its log); 77: skipped (no clang with
# libFuzzer: bash scripts/install-deps.sh installs clang and libclang-rt-dev).
set -uo pipefail
cd "$(dirname "$0")/../.."
secs=${1:-30}
B=${PN_FUZZ_BUILD:-build-fuzz}
targets=${FUZZ_TARGETS:-safetensors config tokenizer shard cli_generate cli_data gguf train_config}
declare -A max_len=([safetensors]=65536 [config]=8192 [tokenizer]=32768 [shard]=512 [cli_generate]=1024
                    [cli_data]=1024 [shard_bytes]=65536 [gguf]=262144 [train_config]=8192)

probe=$(mktemp -d /tmp/pn_fuzz_probe.XXXXXX)
trap 'rm -rf "$probe"' EXIT
echo 'int LLVMFuzzerTestOneInput(const unsigned char *d, unsigned long n) { (void)d; (void)n; return 0; }' > "$probe/p.c"
if ! command -v clang > /dev/null || ! clang -fsanitize=fuzzer,address,undefined "$probe/p.c" -o "$probe/p" > "$probe/log" 2>&1; then
  echo "fuzz: skipped: no clang with libFuzzer ($(command -v clang > /dev/null && tail -n 1 "$probe/log" || echo 'clang not found'));" \
       "bash scripts/install-deps.sh installs clang and libclang-rt-dev"
  exit 77
fi

# Warnings are the gcc builds' business (-Werror there); this build only fuzzes.
if [ ! -f "$B/build.ninja" ]; then
  if ! CC=clang meson setup "$B" -Dfuzz=true -Dcuda=disabled -Db_sanitize=address,undefined -Db_lundef=false \
      -Dbuildtype=debugoptimized -Dwerror=false > "$B.setup.log" 2>&1; then
    tail -n 30 "$B.setup.log"; echo "fuzz: step failed: configure $B (whole output in $B.setup.log)"; exit 1
  fi
fi
build=(postnas-mkckpt postnas-data postnas-train)
for t in $targets; do build+=("tests/fuzz/fuzz_$t"); done
if ! ninja -C "$B" -j "$(nproc)" "${build[@]}" > "$B.build.log" 2>&1; then
  tail -n 40 "$B.build.log"; echo "fuzz: step failed: compile $B (whole output in $B.build.log)"; exit 1
fi
# The fuzz build's compiler, libraries and headers come from install-deps.sh's packages too (a fresh machine
# has nothing else): the same check as the suite's `deps` test.
python3 tests/check_deps.py "$B" > "$B/deps.log" 2>&1
case $? in
  0 | 77) ;;
  *) cat "$B/deps.log"; echo "fuzz: step failed: the fuzz build uses what scripts/install-deps.sh does not install"; exit 1 ;;
esac
rm -rf "$B/fuzz-seeds"
if ! bash tests/fuzz/make_seeds.sh "$B" "$B/fuzz-seeds" > "$B/fuzz-seeds.log" 2>&1; then
  cat "$B/fuzz-seeds.log"; echo "fuzz: step failed: tests/fuzz/make_seeds.sh"; exit 1
fi

# halt_on_error: a UBSan finding stops the run like an ASan one. The suppressions cover libhdf5's
# process-lifetime caches, which LeakSanitizer would otherwise report at exit.
export ASAN_OPTIONS=detect_leaks=1:abort_on_error=0:handle_abort=1
export UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1
export LSAN_OPTIONS=suppressions=$PWD/tests/fuzz/lsan.supp:print_suppressions=0
mkdir -p "$B/fuzz-artifacts" "$B/fuzz-logs"
pass=0 fail=0
for t in $targets; do
  corpus=$B/fuzz-corpus/$t
  mkdir -p "$corpus"
  log=$B/fuzz-logs/$t.log
  start=$(date +%s)
  "$B/tests/fuzz/fuzz_$t" -max_total_time="$secs" -max_len="${max_len[$t]}" -timeout=10 -rss_limit_mb=2048 \
    -artifact_prefix="$B/fuzz-artifacts/$t-" -print_final_stats=1 "$corpus" "$B/fuzz-seeds/$t" > "$log" 2>&1
  rc=$?
  runs=$(grep -m1 '^stat::number_of_executed_units' "$log" | awk '{print $2}')
  rate=$(grep -m1 '^stat::average_exec_per_sec' "$log" | awk '{print $2}')
  if [ $rc -eq 0 ]; then
    pass=$((pass + 1))
    echo "fuzz: $t ok: ${runs:-?} inputs in $(($(date +%s) - start)) s (${rate:-?}/s), corpus $(ls "$corpus" | wc -l) files"
  else
    fail=$((fail + 1))
    grep -E 'ERROR|SUMMARY|runtime error|internal error|Test unit written' "$log" | head -n 12
    tail -n 25 "$log"
    echo "fuzz: $t FAILED (exit $rc) after ${runs:-?} inputs; log $log; reproduce: $B/tests/fuzz/fuzz_$t FILE"
  fi
done
echo "fuzz: $pass passed, $fail failed"
[ $fail -eq 0 ]
