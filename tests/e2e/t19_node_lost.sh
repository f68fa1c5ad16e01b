#!/bin/bash
# The job's node is lost mid-build: every process in its network namespace (slurmd, sshd,
# nix-daemon, the agent, the build) is SIGKILLed, as `scripts/testbed down` finds them
# (`ip netns pids`). nsh must not hang: its channel and master break, reconnecting is
# refused for its 45 s window (or Slurm declares the node dead first: SlurmdTimeout=60),
# and nix-build fails with a message naming the job and the node. Then `scripts/testbed up`
# restarts what is not running (checked), and the job must leave squeue. Reports the times.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/lib_faults.sh"

BG="" job="" node="" lost=""
revive() {
  [ -n "$lost" ] || return 0
  lost=""
  "${TB[@]}" up >"$LOGS/t19-testbed-up.log" 2>&1 || { cat "$LOGS/t19-testbed-up.log" >&2; return 1; }
}
cleanup() {
  revive || true
  stop_bg_and_job
}
trap cleanup EXIT
trap 'exit 130' INT TERM

start_ticking_build node-lost 600
nsvar=NSH_TB_NETNS_${node^^}
ns=${!nsvar:-nshtb-$GEN-$node}
[ -e "/run/netns/$ns" ] || fail "no netns $ns"
pids=$(ip netns pids "$ns")
[ -n "$pids" ] || fail "no processes in $ns"
lost=1
t_lost=$(date +%s%N)
# shellcheck disable=SC2086
kill -KILL $pids 2>/dev/null || true
say "$node lost: killed $(wc -w <<<"$pids") processes of netns $ns (job $job)"

t_fail="" t_gone=""
for i in $(seq 1 1500); do
  [ -n "$t_gone" ] || job_live "$job" || t_gone=$(date +%s%N)
  kill -0 "$BG" 2>/dev/null || { t_fail=$(date +%s%N); break; }
  sleep 0.1
done
state_at_fail=$(on_submit squeue -h -j "$job" -o '%T' 2>/dev/null || true)
[ -n "$t_fail" ] || { revive; fail "nix-build still running 150 s after $node was lost"; }
say "nix-build failed after $(( (t_fail - t_lost) / 1000000 )) ms; job then '${state_at_fail:-gone}'"
wait_bg 1
[ "$BUILD_RC" != 0 ] || fail "nix-build succeeded with its node lost"
msg=$(grep -E "^error: nsh: job $job on $node" "$BG_LOG" | head -n1 || true)
[ -n "$msg" ] || { tail -n 20 "$BG_LOG" >&2; fail "no failure message naming job $job and $node"; }
say "message: $msg"

t_up=$(date +%s%N)
revive || fail "scripts/testbed up failed"
grep -E 'started ' "$LOGS/t19-testbed-up.log" | sed 's/^.*started /    restarted /'
grep -qE "started slurmd-$node" "$LOGS/t19-testbed-up.log" || fail "testbed up did not restart slurmd-$node"
grep -qE "started sshd-$node" "$LOGS/t19-testbed-up.log" || fail "testbed up did not restart sshd-$node"
"${TB[@]}" status | grep -q DEAD && { "${TB[@]}" status >&2; fail "testbed status shows dead daemons"; }
if [ -z "$t_gone" ]; then
  for i in $(seq 1 1200); do job_live "$job" || { t_gone=$(date +%s%N); break; }; sleep 0.1; done
  [ -n "$t_gone" ] || fail "job $job still in squeue 120 s after $node came back"
fi
say "job $job ($(on_submit scontrol show job "$job" 2>/dev/null | grep -oE 'JobState=[A-Z_]+' || true)) left squeue $(( (t_gone - t_lost) / 1000000 )) ms after the loss"
# The node serves again (ReturnToService=2), else resume it.
for i in $(seq 1 60); do
  st=$(on_submit sinfo -h -n "$node" -o '%T' | head -n1)
  case $st in idle | mixed | allocated) break ;; esac
  sleep 1
done
case $st in idle | mixed | allocated) ;; *) on_submit scontrol update nodename="$node" state=resume || true ;; esac
say "$node is $(on_submit sinfo -h -n "$node" -o '%T' | head -n1) again"
assert_clean "$job" "" "${outs[@]}"
[ -z "$(agent_pids "$dir")" ] || fail "an agent of job $job runs again?"
# A SIGKILLed agent leaves its job dir: ours only.
case $dir in */jobs/[0-9a-f]*) on_submit rm -rf "$dir" ;; esac
job=""
say "ok: node lost → nix-build failed in $(( (t_fail - t_lost) / 1000000 )) ms, job gone $(( (t_gone - t_lost) / 1000000 )) ms after the loss"
assert_no_live_jobs
