#!/bin/bash
# The agent (`nsh-remote … serve --dir <this job's dir>`) is SIGKILLed on the node while its
# build runs. The job script exec'd it, so the job ends; nsh loses its channel, sees the
# job has ended, and — a killed agent being the infrastructure's failure, not the
# builder's —
#  1. resubmits the build as a fresh job, which succeeds; the killed job is gone at once;
#  2. with max-resubmits = 0, fails at once with exit 1 and a message saying the
#     infrastructure lost the build (1 attempt), naming the job and the node.
# Reports the time from the kill to the job's end and to nix-build's end.
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

# kill_agent: SIGKILLs the agent of $job, then polls every 100 ms until nix-build ended
# (sets t_fail) and the job left squeue (t_gone); BOUND seconds at most.
kill_agent() {
  local agent i
  [ -n "$dir" ] || fail "cannot find the dir of job $job"
  agent=$(agent_pids "$dir")
  [ "$(wc -w <<<"$agent")" = 1 ] || fail "expected one agent serving $dir, found: '$agent'"
  t_kill=$(date +%s%N)
  on "$node" kill -KILL "$agent"
  t_fail="" t_gone=""
  for i in $(seq 1 $(( BOUND * 10 ))); do
    [ -n "$t_fail" ] || kill -0 "$BG" 2>/dev/null || t_fail=$(date +%s%N)
    [ -n "$t_gone" ] || job_live "$job" || t_gone=$(date +%s%N)
    [ -n "$t_fail" ] && [ -n "$t_gone" ] && break
    sleep 0.1
  done
  [ -n "$t_gone" ] || fail "job $job still in squeue $BOUND s after its agent was killed"
  [ -n "$t_fail" ] || fail "nix-build still running $BOUND s after the agent was killed"
  wait_bg 1
}

# --- 1. resubmitted, and the fresh job builds it ---------------------------------------------
BOUND=90
start_ticking_build agent-killed 12
first_job=$job first_dir=$dir
kill_agent
[ "$BUILD_RC" = 0 ] || { tail -n 20 "$BG_LOG" >&2; fail "nix-build failed ($BUILD_RC) though the build was resubmitted"; }
msg=$(grep -E "nsh: job $first_job on $node .*agent died or was killed.*resubmitting \(attempt 2 of 3\)" "$BG_LOG" | head -n1 || true)
[ -n "$msg" ] || { tail -n 20 "$BG_LOG" >&2; fail "no resubmission message naming job $first_job, $node and the killed agent"; }
second_job=$(grep -oE "resubmitted /nix/store/[a-z0-9]+-agent-killed\.drv as job [0-9]+" "$BG_LOG" | awk '{print $NF}' | tail -n1 || true)
[ -n "$second_job" ] && [ "$second_job" != "$first_job" ] || fail "no second job in the log"
grep -qE "job $second_job is running on node[12]" "$BG_LOG" || fail "job $second_job never ran"
for p in "${outs[@]}"; do on_submit nix-store --check-validity "$p" || fail "$p is not valid"; done
say "message: $(cut -c1-200 <<<"$msg")"
assert_clean "$first_job" "$first_dir"
assert_jobs_gone 30 "$second_job"
job=""
case $first_dir in */jobs/[0-9a-f]*) on_submit rm -rf "$first_dir" ;; esac
dir=""
say "ok: agent killed → job $first_job gone after $(( (t_gone - t_kill) / 1000000 )) ms, resubmitted as job $second_job, nix-build done after $(( (t_fail - t_kill) / 1000000 )) ms"

# --- 2. max-resubmits = 0: exit 1, saying it was the infrastructure --------------------------
BOUND=60
BUILD_ENV=(NSH_CONFIG="max-resubmits = 0")
start_ticking_build agent-killed-once 30
unset BUILD_ENV
kill_agent
[ "$BUILD_RC" = 1 ] || { tail -n 20 "$BG_LOG" >&2; fail "nix-build exited $BUILD_RC, expected 1 (misc failure)"; }
grep -qE 'failed with exit code 1($|\.)' "$BG_LOG" || fail "Nix does not report the hook's exit status 1"
msg=$(grep -E "infrastructure lost this build, not the builder: 1 attempt\(s\) on $node" "$BG_LOG" | head -n1 || true)
[ -n "$msg" ] || { tail -n 20 "$BG_LOG" >&2; fail "no message saying the infrastructure lost the build on $node"; }
grep -qE "job $job on $node ended .*agent died or was killed" "$BG_LOG" || fail "the message does not name job $job, $node and the killed agent"
! grep -q "resubmitted" "$BG_LOG" || fail "resubmitted although max-resubmits = 0"
say "message: $msg"
assert_clean "$job" "$dir" "${outs[@]}"
job=""
say "ok: max-resubmits = 0 → exit 1 after $(( (t_fail - t_kill) / 1000000 )) ms, job gone after $(( (t_gone - t_kill) / 1000000 )) ms"
assert_no_live_jobs
