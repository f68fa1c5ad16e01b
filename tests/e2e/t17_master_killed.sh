#!/bin/bash
# nsh's SSH ControlMaster on submit is SIGKILLed while the build runs: the channel to the
# agent breaks, nsh starts a new master, re-attaches to the running build, and the build
# completes with a valid output and its whole log, every line once. The build uses its own NSH_RUNTIME_DIR, so the master
# killed is this test's own, not one that concurrent tests share.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/lib_faults.sh"

BG="" job=""
cleanup() {
  stop_bg_and_job
  # Our private masters: ask each to exit (they would after their idle minute anyway).
  on_submit sh -c 'for s in "$1"/ssh/.ssh-connection*/master; do [ -S "$s" ] && ssh -S "$s" -O exit x 2>/dev/null; done; true' sh "$WORK/rt" || true
}
trap cleanup EXIT
trap 'exit 130' INT TERM

{ prelude; cat <<'NIX'
mk { name = "master-killed"; requiredSystemFeatures = [ "nsh" ];
     script = ''
       i=0
       while [ $i -lt 400 ]; do echo tick $i; /bin/busybox sleep 0.025; i=$((i + 1)); done
       echo done > $out
     ''; }
NIX
} | put_file "$WORK/master.nix"

BUILD_ENV=(NSH_RUNTIME_DIR="$WORK/rt")
bg_build master-killed "$WORK/master.nix"
unset BUILD_ENV
wait_log "^tick 40$" 60 0.05 || { tail -n 20 "$BG_LOG" >&2; fail "the build did not start"; }
job=$(grep -oE 'as job [0-9]+' "$BG_LOG" | awk '{print $3}' | tail -n1)
socks=$(on_submit sh -c 'ls "$1"/ssh/.ssh-connection*/master 2>/dev/null' sh "$WORK/rt" || true)
[ "$(wc -w <<<"$socks")" = 1 ] || fail "expected one master socket under $WORK/rt, found: '$socks'"
mpid=$(on_submit ssh -S "$socks" -O check x 2>&1 | grep -oE 'pid=[0-9]+' | cut -d= -f2)
[ -n "$mpid" ] || fail "cannot get the master's pid from $socks"
on_submit ps -o pid,args -p "$mpid" | tail -n1 | cut -c1-120 | sed 's/^/    master: /'
t_kill=$(date +%s%N)
on_submit kill -KILL "$mpid"
wait_log "reconnected to" 60 0.05 || { tail -n 20 "$BG_LOG" >&2; fail "nsh did not reconnect"; }
t_re=$(date +%s%N)
wait_bg 90
t_end=$(date +%s%N)
[ "$BUILD_RC" = 0 ] || { tail -n 20 "$BG_LOG" >&2; fail "nix-build exited $BUILD_RC after the master was killed"; }
out=$(grep -E '^/nix/store/[^ ]+$' "$BG_LOG" | tail -n1)
on_submit nix-store --verify-path "$out" || fail "$out is not valid"
[ "$(on_submit cat "$out")" = done ] || fail "wrong content in $out"
# Every line exactly once: what was in flight when the channel broke is sent again from
# where nsh's copy of the log ends, and nothing twice.
ticks=$(grep -cE '^tick [0-9]+$' "$BG_LOG")
missing=$(comm -23 <(seq 0 399 | sort) <(grep -oE '^tick [0-9]+$' "$BG_LOG" | awk '{print $2}' | sort -u) | sort -n | tr '\n' ' ')
[ -z "$missing" ] || fail "log lines lost across the reconnect: tick $missing"
[ "$ticks" = 400 ] || fail "log lines repeated across the reconnect: $ticks tick lines for 400 ticks"
grep -E 'reconnect' "$BG_LOG" | sed 's/^/    /'
assert_jobs_gone 30 "$job"
job=""
say "ok: master killed → reconnected after $(( (t_re - t_kill) / 1000000 )) ms, build done $(( (t_end - t_kill) / 1000000 )) ms after the kill: $out"
assert_no_live_jobs
