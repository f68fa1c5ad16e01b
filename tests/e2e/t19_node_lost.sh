#!/bin/bash
# The job's node is lost mid-build: every process in its network namespace (slurmd, sshd,
# nix-daemon, the agent, the build) is SIGKILLed, as `scripts/testbed down` finds them
# (`ip netns pids`). That is the infrastructure's failure, not the build's:
#  1. one node lost: nsh's channel breaks, reconnecting fails for its 45 s window (or Slurm
#     declares the node dead first), nsh cancels the job and resubmits the build as a fresh
#     job avoiding that node; it runs on the other node and succeeds. No job is left.
#  2. both nodes lost: every attempt is lost; nix-build exits 1 (not 100) within
#     BOTH_BOUND seconds with a message saying it was the infrastructure, the attempts and
#     the nodes. No job is left.
# The nodes are restored (`scripts/testbed up`, resumed in Slurm) at the end, also on failure.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/lib_faults.sh"

# Both nodes gone: the 45 s reconnect window, then the resubmission's wait (at most 60 s
# pending after Slurm called its nodes unavailable, or a launch on a node Slurm still
# believes alive).
BOTH_BOUND=${BOTH_BOUND:-180}

BG="" job="" lost_nodes=()
revive() {
  [ ${#lost_nodes[@]} -gt 0 ] || return 0
  lost_nodes=()
  "${TB[@]}" up >"$LOGS/t19-testbed-up.log" 2>&1 || { cat "$LOGS/t19-testbed-up.log" >&2; return 1; }
  local n st i
  for n in node1 node2; do
    # The node serves again (ReturnToService=2), else resume it.
    for i in $(seq 1 60); do
      st=$(on_submit sinfo -h -n "$n" -o '%T' | head -n1)
      case $st in idle | mixed | allocated) break ;; esac
      [ "$i" = 20 ] && { on_submit scontrol update nodename="$n" state=resume || true; }
      sleep 1
    done
    say "$n is $(on_submit sinfo -h -n "$n" -o '%T' | head -n1) again"
  done
}
cleanup() {
  revive || true
  stop_bg_and_job
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# lose NODE: SIGKILLs every process in NODE's network namespace.
lose() {
  local nsvar=NSH_TB_NETNS_${1^^} ns pids
  ns=${!nsvar:-nshtb-$GEN-$1}
  [ -e "/run/netns/$ns" ] || fail "no netns $ns"
  pids=$(ip netns pids "$ns")
  [ -n "$pids" ] || fail "no processes in $ns"
  lost_nodes+=("$1")
  # shellcheck disable=SC2086
  kill -KILL $pids 2>/dev/null || true
  say "$1 lost: killed $(wc -w <<<"$pids") processes of netns $ns"
}

# wait_build SECONDS: polls until nix-build ends; sets t_end (ns) or fails.
wait_build() {
  local i
  t_end=""
  for i in $(seq 1 $(( $1 * 10 ))); do
    kill -0 "$BG" 2>/dev/null || { t_end=$(date +%s%N); break; }
    sleep 0.1
  done
  [ -n "$t_end" ] || fail "nix-build still running $1 s after the loss"
  wait_bg 1
}

# --- 1. one node lost: resubmitted, succeeds on the other node -------------------------------
start_ticking_build node-lost 20
first_job=$job first_node=$node first_dir=$dir
other=node1; [ "$first_node" = node1 ] && other=node2
t_lost=$(date +%s%N)
lose "$first_node"
wait_build 150
say "nix-build ended $(( (t_end - t_lost) / 1000000 )) ms after the loss (exit $BUILD_RC)"
[ "$BUILD_RC" = 0 ] || { tail -n 30 "$BG_LOG" >&2; fail "the build failed although $other was healthy"; }
grep -qE "job $first_job on $first_node.*resubmitting \(attempt 2 of 3\)" "$BG_LOG" ||
  { tail -n 30 "$BG_LOG" >&2; fail "no resubmission message naming job $first_job on $first_node"; }
second_job=$(grep -oE "resubmitted /nix/store/[a-z0-9]+-node-lost\.drv as job [0-9]+" "$BG_LOG" | awk '{print $NF}' | tail -n1 || true)
[ -n "$second_job" ] && [ "$second_job" != "$first_job" ] || fail "no second job in the log"
second_node=$(grep -oE "job $second_job is running on [^ ]+" "$BG_LOG" | awk '{print $NF}' | tail -n1)
[ "$second_node" = "$other" ] || fail "job $second_job ran on '${second_node}', expected $other"
grep -qE "^tick 19$" "$BG_LOG" || fail "the resubmitted build's log did not reach the end"
for p in "${outs[@]}"; do on_submit nix-store --check-validity "$p" || fail "$p is not valid"; done
say "message: $(grep -m1 -oE "nsh: job $first_job .*resubmitting.*" "$BG_LOG" | cut -c1-200)"
say "job $second_job ran on $second_node and built ${outs[*]}"
job=""
revive || fail "scripts/testbed up failed"
"${TB[@]}" status | grep -q DEAD && { "${TB[@]}" status >&2; fail "testbed status shows dead daemons"; }
assert_jobs_gone 120 "$first_job" "$second_job"
# A SIGKILLed agent leaves its job dir: ours only.
case $first_dir in */jobs/[0-9a-f]*) on_submit rm -rf "$first_dir" ;; esac
say "ok (one node): resubmitted as job $second_job on $second_node, done $(( (t_end - t_lost) / 1000000 )) ms after the loss"

# --- 2. both nodes lost: exit 1 within the bound, saying it was the infrastructure ----------
start_ticking_build both-lost 600
t_lost=$(date +%s%N)
lose node1
lose node2
wait_build "$BOTH_BOUND"
ms=$(( (t_end - t_lost) / 1000000 ))
say "nix-build ended $ms ms after both nodes were lost (exit $BUILD_RC)"
[ "$BUILD_RC" = 1 ] || { tail -n 30 "$BG_LOG" >&2; fail "nix-build exited $BUILD_RC, expected 1 (misc failure)"; }
grep -qE 'failed with exit code 1($|\.)' "$BG_LOG" || fail "Nix does not report the hook's exit status 1"
msg=$(grep -E "infrastructure lost this build, not the builder: [0-9]+ attempt\(s\) on node" "$BG_LOG" | head -n1 || true)
[ -n "$msg" ] || { tail -n 30 "$BG_LOG" >&2; fail "no message saying the infrastructure lost the build"; }
say "message: $msg"
refute_log both-lost "nsh: .*the builder failed \("
jobs=$(grep -oE "(as|resubmitted /nix/store/[a-z0-9]+-both-lost\.drv as) job [0-9]+" "$BG_LOG" | awk '{print $NF}' | sort -u)
revive || fail "scripts/testbed up failed"
"${TB[@]}" status | grep -q DEAD && { "${TB[@]}" status >&2; fail "testbed status shows dead daemons"; }
# shellcheck disable=SC2086
assert_jobs_gone 120 $jobs
case $dir in */jobs/[0-9a-f]*) on_submit rm -rf "$dir" ;; esac
for p in "${outs[@]}"; do
  ! on_submit nix-store --check-validity "$p" 2>/dev/null || fail "$p is registered in the local store"
done
job=""
say "ok (both nodes): exit 1 after $ms ms (bound ${BOTH_BOUND} s), jobs $(echo $jobs) gone"
assert_no_live_jobs
