# Shared by the quick-start scripts (source it): run a step with its output kept in a log, and when it fails
# say which step failed, with the failing tool's own message, instead of exiting silently.
#
#   pn_step "configure the build" meson setup build
#
# The step's output goes to $PN_LOG_DIR/<n>-<slug>.log (build/logs by default). On success one line is
# printed; on failure the step's name, its exit status, the last lines of its output and the log's path.

PN_LOG_DIR=${PN_LOG_DIR:-build/logs}
pn_step_n=0

pn_step() { # name command...
  local name=$1; shift
  pn_step_n=$((pn_step_n + 1))
  mkdir -p "$PN_LOG_DIR"
  local slug log rc t0
  slug=$(printf '%s' "$name" | tr -c 'A-Za-z0-9' '-' | tr -s '-' | sed 's/-$//')
  log="$PN_LOG_DIR/$(printf '%02d' $pn_step_n)-$slug.log"
  t0=$(date +%s)
  printf '[%d] %s ... ' "$pn_step_n" "$name"
  "$@" > "$log" 2>&1
  rc=$?
  if [ $rc -ne 0 ]; then
    printf 'FAILED (exit %d)\n' "$rc"
    echo "---- last lines of the output of: $* ----" >&2
    tail -n "${PN_TAIL_LINES:-40}" "$log" >&2
    echo "---- step '$name' failed; its whole output is in $log ----" >&2
    exit $rc
  fi
  printf 'ok (%d s)\n' $(( $(date +%s) - t0 ))
}

pn_show() { # name command... : like pn_step, but the output is the point of the step and is shown as it comes
  local name=$1; shift
  pn_step_n=$((pn_step_n + 1))
  echo "[$pn_step_n] $name"
  "$@"
  local rc=$?
  if [ $rc -ne 0 ]; then
    echo "---- step '$name' failed (exit $rc): $* ----" >&2
    exit $rc
  fi
}

# A pipeline stage (the demo): its command's results are reused when STAMP records the same command from a
# finished earlier run and no earlier stage ran again in this one (a stage that ran makes every later one
# run: its inputs changed). Says which it did; appends "name<TAB>seconds<TAB>ran|reused" to $PN_TIMES.
#
#   pn_stage "pretrain the teacher" runs/tiny-pretrain/.stage ./build/postnas-train --config ... --overwrite
PN_RAN=0
pn_stage() { # name stamp command...
  local name=$1 stamp=$2; shift 2
  local cmd="$*" t0
  if [ $PN_RAN -eq 0 ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$cmd" ]; then
    pn_step_n=$((pn_step_n + 1))
    echo "[$pn_step_n] $name: finished in an earlier run, reused (delete $stamp to redo it)"
    [ -n "${PN_TIMES:-}" ] && printf '%s\t%s\t%s\n' "$name" "$(cat "$stamp.seconds" 2> /dev/null || echo 0)" reused >> "$PN_TIMES"
    return 0
  fi
  PN_RAN=1
  rm -f "$stamp"
  t0=$(date +%s)
  pn_show "$name" "$@"
  mkdir -p "$(dirname "$stamp")"
  printf '%s' "$cmd" > "$stamp"
  echo $(( $(date +%s) - t0 )) > "$stamp.seconds"
  [ -n "${PN_TIMES:-}" ] && printf '%s\t%s\t%s\n' "$name" "$(cat "$stamp.seconds")" ran >> "$PN_TIMES"
  return 0
}
