#!/bin/bash
# The job's node drops off the network mid-build (its veth `eth0` down: SSH and slurmd are
# cut) and stays off past every grace period. Expected, and measured from the link going
# down:
#   - nsh's master notices after ServerAliveInterval 10 s x 3 (~30 s), nsh then tries to
#     reconnect for 45 s and fails with a message naming the job and the node (~75-90 s);
#     it cancels the job through slurmrestd on submit, which still works;
#   - the agent, hearing no client for its 60 s lease, stops the build and exits;
#   - Slurm completes the job once it hears from the node again (link back) or declares
#     the node dead (SlurmdTimeout=60, KillWait=5).
# The link comes back right after nix-build failed; then the job must be gone within 120 s,
# no agent may be left and the output is neither registered nor on disk.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/lib_faults.sh"

BG="" job="" ns="" node=""
restore() {
  [ -n "$ns" ] || return 0
  ip -n "$ns" link set eth0 up 2>/dev/null || true
}
node_back() {
  # ReturnToService=2 brings a node that was marked DOWN back when its slurmd registers;
  # wait for that, then resume it by hand if it did not.
  local i st
  for i in $(seq 1 60); do
    st=$(on_submit sinfo -h -n "$node" -o '%T' 2>/dev/null | head -n1)
    case $st in idle | mixed | allocated | completing) return 0 ;; esac
    sleep 1
  done
  say "node $node is '$st' 60 s after the link came back; resuming it"
  on_submit scontrol update nodename="$node" state=resume 2>/dev/null || true
}
cleanup() {
  restore
  stop_bg_and_job
  [ -z "$node" ] || node_back
}
trap cleanup EXIT
trap 'exit 130' INT TERM

start_ticking_build link-down 600
[ -n "$dir" ] || fail "cannot find the dir of job $job"
nsvar=NSH_TB_NETNS_${node^^}
ns=${!nsvar:-nshtb-$GEN-$node}
ip -n "$ns" link show eth0 >/dev/null || fail "no eth0 in netns $ns"
t_down=$(date +%s%N)
ip -n "$ns" link set eth0 down
say "link of $node down (job $job)"

# nix-build must fail by itself: 30 s (master) + 45 s (reconnect) + slack.
t_fail="" t_gone=""
for i in $(seq 1 1500); do
  [ -n "$t_gone" ] || job_live "$job" || t_gone=$(date +%s%N)
  kill -0 "$BG" 2>/dev/null || { t_fail=$(date +%s%N); break; }
  sleep 0.1
done
[ -n "$t_fail" ] || { restore; fail "nix-build still running 150 s after the link went down"; }
state_at_fail=$(on_submit squeue -h -j "$job" -o '%T' 2>/dev/null || true)
t_up=$(date +%s%N)
restore
say "nix-build failed after $(( (t_fail - t_down) / 1000000 )) ms; job then '${state_at_fail:-gone}'; link up again"
wait_bg 1
[ "$BUILD_RC" != 0 ] || fail "nix-build succeeded with the node cut off"
msg=$(grep -E "^error: nsh: job $job on $node" "$BG_LOG" | head -n1 || true)
[ -n "$msg" ] || { tail -n 20 "$BG_LOG" >&2; fail "no failure message naming job $job and $node"; }
say "message: $msg"
grep -E 'reconnecting' "$BG_LOG" | head -n1 | sed 's/^/    /'
if [ -z "$t_gone" ]; then
  for i in $(seq 1 1200); do job_live "$job" || { t_gone=$(date +%s%N); break; }; sleep 0.1; done
  [ -n "$t_gone" ] || fail "job $job still in squeue 120 s after the link came back"
fi
say "job $job ($(on_submit scontrol show job "$job" 2>/dev/null | grep -oE 'JobState=[A-Z_]+' || true)) left squeue $(( (t_gone - t_down) / 1000000 )) ms after the link went down ($(( (t_gone - t_up) / 1000000 )) ms after it came back)"
node_back
assert_clean "$job" "$dir" "${outs[@]}"
on_submit test ! -e "$dir" || fail "job dir $dir left behind"
job=""
say "ok: link down → nix-build failed in $(( (t_fail - t_down) / 1000000 )) ms, job gone in $(( (t_gone - t_down) / 1000000 )) ms"
assert_no_live_jobs
