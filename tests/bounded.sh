#!/bin/sh
# bounded.sh: run one test suite so that a hang fails within minutes and names itself.
#
#   tests/bounded.sh PROGRAM [ARGS...]      (make check's LOG_COMPILER and SH_LOG_COMPILER)
#   tests/bounded.sh qemu-aarch64 PROGRAM   (scripts/check-neon.sh)
#
# The suite runs in a session of its own. It fails, with its name, the processes still running and
# (natively) every thread's backtrace, when
#   - its processes together use no CPU for SASP_TEST_IDLE seconds (default 120): every thread asleep,
#     a deadlock or a lost wake-up (what a hung thread pool looks like), or
#   - it runs longer than its limit: SASP_TEST_TIMEOUT seconds (default 900), times
#     SASP_TEST_TIMEOUT_SCALE (check-sanitizers.sh and check-neon.sh set it for their slower builds).
# Then the whole session is killed (the servers a suite started included) and the exit status is 124.
set -u
[ $# -ge 1 ] || { echo "usage: bounded.sh PROGRAM [ARGS...]" >&2; exit 2; }
scale=${SASP_TEST_TIMEOUT_SCALE:-1}
limit=$(( ${SASP_TEST_TIMEOUT:-900} * scale ))
idle_limit=${SASP_TEST_IDLE:-120}
name=$*

marker=$(mktemp /tmp/sasp-bounded-XXXXXX)
trap 'rm -f "$marker"' EXIT
setsid "$@" &
pid=$!

# CPU ticks used so far by every process of the suite's session (its sid is its pid)
session_ticks() {
  cat /proc/[0-9]*/stat 2>/dev/null | awk -v sid="$pid" '
    { sub(/^.*\) /, ""); if ($4 == sid) t += $12 + $13 } END { print t + 0 }'
}

report_hang() {
  echo hang > "$marker"
  echo "bounded.sh: HANG: '$name' $1; killing it" >&2
  ps -s "$pid" -o pid,ppid,stat,etime,time,wchan:20,args >&2 2>/dev/null || true
  if command -v gdb >/dev/null 2>&1; then
    for p in $(ps -s "$pid" -o pid= 2>/dev/null); do
      case $(cat /proc/"$p"/comm 2>/dev/null) in qemu-*|sh|bash|timeout|sleep) continue ;; esac
      echo "---- backtraces of $p ($(cat /proc/"$p"/comm 2>/dev/null))" >&2
      gdb -q -batch -p "$p" -ex 'thread apply all bt 12' 2>/dev/null | grep -E '^(Thread|#)' | head -80 >&2
    done
  fi
  kill -TERM -"$pid" 2>/dev/null
  sleep 5
  kill -KILL -"$pid" 2>/dev/null
}

(
  start=$(date +%s) last_ticks=-1 idle_since=$start
  while kill -0 "$pid" 2>/dev/null; do
    sleep 2
    now=$(date +%s) ticks=$(session_ticks)
    if [ "$ticks" != "$last_ticks" ]; then last_ticks=$ticks idle_since=$now; fi
    if [ $((now - idle_since)) -ge "$idle_limit" ]; then
      report_hang "used no CPU for $idle_limit s (all of its threads asleep)"; exit 0
    fi
    if [ $((now - start)) -ge "$limit" ]; then
      report_hang "ran past its limit of $limit s"; exit 0
    fi
  done
) &
watchdog=$!

wait "$pid"
status=$?
if [ -s "$marker" ]; then
  wait "$watchdog" 2>/dev/null   # it kills what is left of the session, then ends
  status=124
else
  kill "$watchdog" 2>/dev/null
  wait "$watchdog" 2>/dev/null
fi
exit $status
