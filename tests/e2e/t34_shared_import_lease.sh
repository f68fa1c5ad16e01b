#!/bin/bash
# Issue 8, deliver 2 and 3: waits longer than the agent's lease do not kill a build.
#  1. Two jobs on node1 need the same 100 MB input over a link shaped to 40 Mbit/s: one
#     uploads it, the other says it waits for that upload, waits longer than the lease,
#     then finds the input present. Both succeed.
#  2. An import (40 MB: more chunks than the agent's queue holds) that stalls on the node (the worker waits 12 s before it reads on, as when
#     the node's nix-daemon waits on a lock another job holds) longer than the lease: the
#     upload's flow control keeps the agent reading pings, and the build succeeds.
# The lease is 4 s here, not 60 s: the fault-injection agent (scripts/build --faulty)
# reads `lease-ms=4000` from the state dir's fault-injection file (crates/nsh-remote/src/
# fault.rs); nsh pings at a quarter of the lease the agent announces. The test drains
# node2 and oversubscribes the partition for its run (restored on exit).
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/lib_hostile.sh"

LEASE_S=4
shape() { # shape replace RATE | shape del: submit <-> node1, both directions, as scripts/bench
  tc -n "$NSH_TB_NETNS_SUBMIT" qdisc "$1" dev vnode1 root ${2:+tbf rate "$2" burst 256kb latency 100ms}
  tc -n "$NSH_TB_NETNS_NODE1" qdisc "$1" dev eth0 root ${2:+tbf rate "$2" burst 256kb latency 100ms}
}
restore() {
  shape del 2>/dev/null || true
  on_submit rm -f "$FAULT_FILE"
  on_submit scontrol update PartitionName=debug OverSubscribe=NO >/dev/null 2>&1 || true
  on_submit scontrol update NodeName=node2 State=RESUME >/dev/null 2>&1 || true
}
trap restore EXIT
trap 'exit 130' INT TERM

{ prelude; cat <<'NIX'
let
  rand = name: mb: mk { inherit name;
    script = "/bin/busybox dd if=/dev/urandom of=$out bs=65536 count=${toString (mb * 16)}"; };
  big = rand "lease-big-input" 100;
  small = rand "lease-stall-input" 40;
  use = input: n: mk { name = "use-${input.name}-${toString n}"; requiredSystemFeatures = [ "nsh" ];
                       script = "/bin/busybox wc -c < ${input} > $out"; };
in { both = [ (use big 1) (use big 2) ]; stall = use small 1; }
NIX
} | put_file "$WORK/lease.nix"

# The inputs are built on submit (no `nsh` feature), so the cluster builds must send them.
for attr in both stall; do
  for d in $(on_submit nix-instantiate "$WORK/lease.nix" -A "$attr" 2>/dev/null); do
    in_drv=$(on_submit nix-store -q --references "$d" | grep -- '-input.drv$') || fail "no input of $d"
    on_submit nix-store --realise "$in_drv" >/dev/null 2>&1 || fail "cannot build $in_drv"
  done
done
on_submit scontrol update PartitionName=debug OverSubscribe=FORCE:4 || fail "cannot oversubscribe"
on_submit scontrol update NodeName=node2 State=DRAIN Reason=t34 || fail "cannot drain node2"

secs() { grep -oE "nsh: sent [0-9]+ of [0-9]+ paths \([0-9]+ bytes.* in [0-9.]+s" "$LOGS/$1.log" | sed -n "$2p" | grep -oE '[0-9.]+s$' | tr -d s; }

# 1: one upload, one wait past the lease.
set_fault "lease-ms=$((LEASE_S * 1000))"
shape replace 40mbit
BUILD_ENV=(NSH_REMOTE_BINARY="$FAULTY")
nsh_build both "$WORK/lease.nix" -A both -j2
shape del
assert_rc 0 both
[ "$(out_paths both | wc -l)" = 2 ] || fail "both: expected 2 outputs"
[ "$(grep -oE 'is running on node[12]' "$LOGS/both.log" | sort -u)" = "is running on node1" ] ||
  fail "both: the jobs did not both run on node1"
assert_log both "waiting for another job.s upload to the store on node1"
lines=$(grep -oE 'nsh: sent [0-9]+ of [0-9]+ paths \([0-9]+ bytes.* in [0-9.]+s' "$LOGS/both.log")
sizes=$(echo "$lines" | grep -oE '\([0-9]+' | tr -d '(' | sort -n | paste -sd' ')
set -- $sizes
[ "$#" = 2 ] && [ "$1" -lt 1000000 ] && [ "$2" -gt 100000000 ] ||
  fail "both: want one build to send the input and the other not: $lines"
# Each line's time covers its query, so the waiter's includes its wait.
uploader=$(echo "$lines" | grep -E '\([0-9]{9,} bytes' | grep -oE '[0-9.]+s$' | tr -d s)
waiter=$(echo "$lines" | grep -vE '\([0-9]{9,} bytes' | grep -oE '[0-9.]+s$' | tr -d s)
awk -v w="$waiter" -v l="$LEASE_S" 'BEGIN { exit !(w > 2 * l) }' ||
  fail "both: the waiting build waited ${waiter}s, not more than twice the ${LEASE_S}s lease"
say "ok: 1: one upload (${uploader}s at 40mbit), the other waited ${waiter}s (lease ${LEASE_S}s); both built"

# 2: an import that stalls for three leases.
set_fault "lease-ms=$((LEASE_S * 1000)),stall-import-ms=$((LEASE_S * 3000))"
nsh_build stall "$WORK/lease.nix" -A stall
unset BUILD_ENV
assert_rc 0 stall
t=$(secs stall 1)
[ -n "$t" ] || fail "stall: no transfer line"
awk -v t="$t" -v l="$LEASE_S" 'BEGIN { exit !(t >= 3 * l) }' ||
  fail "stall: the upload took ${t}s: the stall of $((LEASE_S * 3))s did not happen"
say "ok: 2: an import stalled for $((LEASE_S * 3))s (upload ${t}s) with a ${LEASE_S}s lease; built"
assert_no_live_jobs
