#!/bin/bash
# The job's node drops off the network mid-build (its veth `eth0` down: SSH and slurmd are
# cut) and stays off past every grace period. Expected, and measured from the link going
# down:
#   - nsh's master notices after ServerAliveInterval 10 s x 3 (~30 s), nsh then tries to
#     reconnect for 45 s, cancels the job through slurmrestd on submit (which still works)
#     and resubmits the build, avoiding that node: it runs on the other node (~75-90 s);
#   - the agent, hearing no client for its 60 s lease, stops the build and exits;
#   - Slurm completes the job once it hears from the node again (link back) or declares
#     the node dead (SlurmdTimeout=60, KillWait=5).
# The link comes back once the second job runs, and nix-build is interrupted (Ctrl-C during
# a retry): then both jobs must be gone within 120 s, no agent may be left and the output is
# neither registered nor on disk.
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

# Past every grace period the build is lost to the infrastructure: 30 s (master) + 45 s
# (reconnect) + slack, then nsh cancels the job and resubmits it, avoiding this node.
other=node1; [ "$node" = node1 ] && other=node2
second_job=""
for i in $(seq 1 1500); do
  second_job=$(grep -oE "resubmitted /nix/store/[a-z0-9]+-link-down\.drv as job [0-9]+" "$BG_LOG" | awk '{print $NF}' | tail -n1 || true)
  [ -n "$second_job" ] && grep -qE "job $second_job is running on $other" "$BG_LOG" && break
  second_job=""
  kill -0 "$BG" 2>/dev/null || break
  sleep 0.1
done
t_resub=$(date +%s%N)
[ -n "$second_job" ] || { restore; tail -n 20 "$BG_LOG" >&2; fail "no resubmitted job running on $other 150 s after the link went down"; }
second_dir=$(job_dir "$second_job")
# Whichever gives up first names the loss: nsh's reconnect window, or Slurm marking the
# node failed (its SlurmdTimeout can end sooner on a loaded machine). Both are the
# infrastructure's, and both must resubmit.
msg=$(grep -E "nsh: job $job on $node(: could not reach the agent again within 45s| ended \(NODE_FAIL[^)]*\) while the build was running: the scheduler lost its node).*resubmitting \(attempt 2 of 3\)" "$BG_LOG" | head -n1 || true)
[ -n "$msg" ] || { tail -n 20 "$BG_LOG" >&2; fail "no resubmission message naming job $job, $node and the lost link (reconnect window or NODE_FAIL)"; }
say "message: $(cut -c1-220 <<<"$msg")"
say "resubmitted as job $second_job on $other after $(( (t_resub - t_down) / 1000000 )) ms"
wait_log "job $second_job is running on $other" 5 >/dev/null || true
t_up=$(date +%s%N)
restore
# A Ctrl-C during the retry ends everything: the second job (its reaper), and the first
# one (cancelled before the resubmission; Slurm completes it once the node is back).
stop_bg
say "link up again, nix-build interrupted"
for j in "$job" "$second_job"; do
  t_gone=$(ms_until_gone "$j" 120 "$t_up") || fail "job $j still in squeue 120 s after the link came back and the interrupt"
  say "job $j left squeue $t_gone ms after the link came back"
done
node_back
assert_clean "$job" "$dir" "${outs[@]}"
assert_clean "$second_job" "$second_dir"
on_submit test ! -e "$dir" || fail "job dir $dir left behind"
job=""
say "ok: link down → resubmitted on $other in $(( (t_resub - t_down) / 1000000 )) ms; interrupt → both jobs gone"
assert_no_live_jobs
