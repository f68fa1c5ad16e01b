#!/bin/bash
# SIGKILL to the nsh hook process alone (not nix-build) while its build runs: nothing tells
# the job, except nsh's reaper, which sees its pipe close without "done" and cancels the
# job through the REST API. The job must leave squeue well inside the agent's 60 s lease
# (the reaper makes it about a second); no agent of it stays on the nodes and the output is
# neither registered nor on disk. Reports the time from the SIGKILL to the job's end.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/lib_faults.sh"

BG="" job=""
cleanup() {
  stop_bg_and_job
}
trap cleanup EXIT
trap 'exit 130' INT TERM

start_ticking_build sigkill-hook 30
nb=$(bg_pid)
# The hook: a child of our nix-build running `nsh <verbosity>` (argv[0] is "nsh").
hooks=$(on_submit pgrep -P "$nb" -f '(^|/)nsh [0-9]+$' || true)
[ "$(wc -w <<<"$hooks")" = 1 ] || fail "expected one hook under nix-build $nb, found: '$hooks'"
on_submit ps -o pid,ppid,args -p "$hooks" | tail -n1 | sed 's/^/    hook: /'
t_kill=$(date +%s%N)
on_submit kill -KILL "$hooks"
ms=$(ms_until_gone "$job" 60 "$t_kill") ||
  fail "job $job still in squeue 60 s after the hook was killed: $(on_submit squeue -h -j "$job" -o '%T %r' || true)"
say "job $job left squeue $ms ms after SIGKILL of the hook ($(on_submit scontrol show job "$job" | grep -oE 'JobState=[A-Z_]+' || true))"
[ "$ms" -lt 10000 ] || fail "job $job took $ms ms to end: the reaper did not cancel it (lease instead?)"
wait_bg 30
[ "$BUILD_RC" != 0 ] || fail "nix-build succeeded though its hook was killed"
[ "$BUILD_RC" != 124 ] || fail "nix-build still running 30 s after its hook was killed"
say "nix-build exited $BUILD_RC: $(grep -E '^error' "$BG_LOG" | head -n1)"
assert_clean "$job" "$dir" "${outs[@]}"
job=""
say "ok: hook SIGKILLed → job gone in $ms ms"
assert_no_live_jobs
