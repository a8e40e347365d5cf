#!/usr/bin/env bash
# A/B of changes on the GPU machine in one device call: the working tree as it is ("base") and each variant,
# built and timed in alternation, ROUNDS times over, so that the GPU's drift (clocks, another tenant) falls
# on every variant alike. A variant is a patch file (git apply; reverted after its runs) or env:NAME=VALUE
# (comma-separated pairs: the base build run with them, e.g. env:PN_NO_PDL=1). Timed per variant:
#   - the GDN kernels' benchmarks (tests/gpu/test_gdn_cuda, test_gdn_bwd_cuda under PN_GDN_PROFILE=1: the
#     B 8 and B 2 forward and forward + backward times and each kernel's, their tests' pass counts);
#   - with --step N, the distillation step (scripts/bench-distill.sh --loss mse --repeat N, the teacher and
#     corpus made once and reused).
# Everything goes to one file, OUTDIR/summary.txt (the device tool brings back only a few files); logs stay
# in /tmp/pn-ab.
#
# usage: tests/gpu/ab.sh OUTDIR [--rounds R] [--step N] [--no-gdn] VARIANT...
# e.g.   tests/gpu/ab.sh "$OUT" --rounds 2 --step 3 my-change.patch env:PN_GDN_RECOMPUTE=1
set -uo pipefail
die() { echo "ab.sh: error: $*" >&2; exit 1; }
[ $# -ge 1 ] || die "usage: tests/gpu/ab.sh OUTDIR [--rounds R] [--step N] [--no-gdn] VARIANT..."
OUTDIR=$1
shift
ROUNDS=2 STEP=0 GDN=1 VARIANTS=()
while [ $# -gt 0 ]; do
  case $1 in
    --rounds) ROUNDS=${2:-}; shift ;;
    --step) STEP=${2:-}; shift ;;
    --no-gdn) GDN=0 ;;
    -*) die "unknown option $1" ;;
    *) VARIANTS+=("$1") ;;
  esac
  shift
done
[[ "$ROUNDS" =~ ^[1-9][0-9]*$ ]] || die "--rounds '$ROUNDS' is not a positive integer"
[[ "$STEP" =~ ^[0-9]+$ ]] || die "--step '$STEP' is not a number of runs"
for i in "${!VARIANTS[@]}"; do # patch files by absolute path: the work below runs in the repository root
  v=${VARIANTS[$i]}
  if [[ "$v" != env:* ]]; then
    [ -f "$v" ] || die "no patch file $v"
    VARIANTS[$i]=$(realpath "$v")
  fi
done
cd "$(dirname "$0")/../.."
for v in "${VARIANTS[@]}"; do
  case $v in
    env:*) [[ "${v#env:}" =~ ^[A-Za-z_][A-Za-z0-9_]*=[^,]*(,[A-Za-z_][A-Za-z0-9_]*=[^,]*)*$ ]] ||
             die "'$v' is not env:NAME=VALUE[,NAME=VALUE...]" ;;
    *) git apply --check "$v" 2> /dev/null || die "$v does not apply to the working tree" ;;
  esac
done
mkdir -p "$OUTDIR" /tmp/pn-ab || die "cannot make $OUTDIR"
S=$OUTDIR/summary.txt
T0=$(date +%s)
say() { echo "$*" | tee -a "$S"; }
stamp() { say "[t+$(($(date +%s) - T0))s] $*"; }

TARGETS=""
[ "$GDN" = 1 ] && TARGETS+="tests/test_gdn_cuda tests/test_gdn_bwd_cuda "
[ "$STEP" -gt 0 ] && TARGETS+="postnas-train postnas-mkckpt postnas-data"
[ -n "$TARGETS" ] || die "nothing to time (--no-gdn without --step)"
# configure and build through the GPU suite (no stage), then its environment for running
PN_GPU_TARGETS="$TARGETS" bash tests/gpu/run.sh /tmp/pn-ab/build none > /tmp/pn-ab/build.log 2>&1 ||
  { tail -20 /tmp/pn-ab/build.log >> "$S"; die "the build failed (tail in $S)"; }
source tests/gpu/env.sh
say "$(nvidia-smi --query-gpu=name,driver_version --format=csv,noheader | head -1); variants: base ${VARIANTS[*]}"
stamp "built"

# the GDN benchmarks' lines and the per-kernel split of the anchor (B 8) and step (B 2) shapes
gdn_times() {
  PN_GDN_PROFILE=1 build-gpu/tests/test_gdn_cuda > /tmp/pn-ab/gdn.log 2>&1
  PN_GDN_PROFILE=1 build-gpu/tests/test_gdn_bwd_cuda > /tmp/pn-ab/gdnb.log 2>&1
  say "  tests: $(grep -h 'passed' /tmp/pn-ab/gdn.log /tmp/pn-ab/gdnb.log | tr '\n' ' ')$(grep -h FAIL /tmp/pn-ab/gdn.log /tmp/pn-ab/gdnb.log | head -3)"
  grep -h '^bench' /tmp/pn-ab/gdn.log /tmp/pn-ab/gdnb.log | sed 's/^/  /' | tee -a "$S"
  for b in 8 2; do
    grep -h "gdn fwd (cuda) B $b T 4096" /tmp/pn-ab/gdn.log | tail -1 | sed 's/^/  /' | tee -a "$S"
    grep -h "gdn bwd (cuda) B $b T 4096" /tmp/pn-ab/gdnb.log | tail -1 | sed 's/^/  /' | tee -a "$S"
  done
}
run_variant() { # the timings of the tree as it is now, under the variant's environment
  if [ "$GDN" = 1 ]; then gdn_times; fi
  if [ "$STEP" -gt 0 ]; then
    bash scripts/bench-distill.sh --build build-gpu --loss mse --repeat "$STEP" --work /tmp/pn-ab/step \
      > /tmp/pn-ab/step.log 2>&1 || say "  bench-distill: $(tail -1 /tmp/pn-ab/step.log)"
    grep '^mse' /tmp/pn-ab/step.log | sed 's/^/  /' | tee -a "$S"
  fi
}

for ((r = 1; r <= ROUNDS; r++)); do
  for v in base "${VARIANTS[@]}"; do
    say "== round $r: $v"
    case $v in
      base) run_variant ;;
      env:*) (IFS=, && for kv in ${v#env:}; do export "$kv"; done && run_variant) ;;
      *) if git apply "$v"; then
           if ninja -C build-gpu $TARGETS > /tmp/pn-ab/variant-build.log 2>&1; then run_variant
           else say "  build failed: $(grep -m1 -i error /tmp/pn-ab/variant-build.log)"; fi
           git apply -R "$v" || die "$v does not revert: the working tree needs a look"
         else say "  does not apply"; fi
         ninja -C build-gpu $TARGETS > /tmp/pn-ab/variant-build.log 2>&1 || die "the base no longer builds" ;;
    esac
    stamp "$v done"
  done
done
