#!/bin/bash
# The agent (`nsh-remote … serve --dir <this job's dir>`) is SIGKILLed on the node while its
# build runs. The job script exec'd it, so the job ends; nsh loses its channel, tries to
# reconnect, sees the job has ended and fails at once with a message naming the job and the
# node. Reports the time from the kill to nix-build's failure and to the job's end.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/lib_faults.sh"

BG="" job="" dir=""
cleanup() {
  stop_bg_and_job
  # A SIGKILLed agent cannot remove its job dir (socket, job.log): ours only.
  case $dir in */jobs/[0-9a-f]*) on_submit rm -rf "$dir" ;; esac
}
trap cleanup EXIT
trap 'exit 130' INT TERM

start_ticking_build agent-killed 30
[ -n "$dir" ] || fail "cannot find the dir of job $job"
agent=$(agent_pids "$dir")
[ "$(wc -w <<<"$agent")" = 1 ] || fail "expected one agent serving $dir, found: '$agent'"
t_kill=$(date +%s%N)
on "$node" kill -KILL "$agent"
# Poll both every 100 ms: when nix-build fails, when the job leaves squeue.
t_fail="" t_gone=""
for i in $(seq 1 600); do
  [ -n "$t_fail" ] || kill -0 "$BG" 2>/dev/null || t_fail=$(date +%s%N)
  [ -n "$t_gone" ] || job_live "$job" || t_gone=$(date +%s%N)
  [ -n "$t_fail" ] && [ -n "$t_gone" ] && break
  sleep 0.1
done
[ -n "$t_fail" ] || fail "nix-build still running 60 s after the agent was killed"
[ -n "$t_gone" ] || fail "job $job still in squeue 60 s after its agent was killed"
wait_bg 1
[ "$BUILD_RC" != 0 ] || fail "nix-build succeeded though the agent was killed"
ms_fail=$(( (t_fail - t_kill) / 1000000 )) ms_gone=$(( (t_gone - t_kill) / 1000000 ))
msg=$(grep -E "job $job.*$node|$node.*job $job" "$BG_LOG" | grep -vE 'is running on|reconnecting' | head -n3 || true)
[ -n "$msg" ] || { tail -n 20 "$BG_LOG" >&2; fail "no failure message naming job $job and $node"; }
say "message: $msg"
assert_clean "$job" "$dir" "${outs[@]}"
job=""
say "ok: agent killed → job gone after $ms_gone ms, nix-build failed after $ms_fail ms (exit $BUILD_RC)"
assert_no_live_jobs
