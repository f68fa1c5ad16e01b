#!/bin/bash
# Issue 8, deliver 2 and 4: six concurrent builds on one node share a 100 MB input, with
# collect-garbage = true and a chroot remote-store. All succeed, and the input crosses the
# link once: the builds' own "sent N of M paths (X bytes" lines add up to one copy of it
# (the others waited for the upload under the store's upload lock, then found it present).
# The builds end at different times, so goodbyes with collect-garbage run while others
# still need the input: only the last one out collects, which the end state shows (the
# input gone from that store). The test oversubscribes the partition and drains node2 for
# its run (restored on exit).
. "$(dirname "$0")/lib.sh"

RSTORE=/scratch/nsh-store-t35-$NONCE
restore() {
  on_submit scontrol update PartitionName=debug OverSubscribe=NO >/dev/null 2>&1 || true
  on_submit scontrol update NodeName=node2 State=RESUME >/dev/null 2>&1 || true
  on node1 rm -rf "$RSTORE" 2>/dev/null || true
}
trap restore EXIT
trap 'exit 130' INT TERM

{ prelude; cat <<'NIX'
let
  input = mk { name = "shared-input";
               script = "/bin/busybox dd if=/dev/urandom of=$out bs=65536 count=1600"; };
  use = n: mk { name = "use-shared-${toString n}"; requiredSystemFeatures = [ "nsh" ];
                script = "/bin/busybox sleep ${toString (2 * n)}; /bin/busybox wc -c < ${input} > $out"; };
in { six = map use [ 1 2 3 4 5 6 ];
     warm = mk { name = "warm-up"; requiredSystemFeatures = [ "nsh" ]; script = "echo > $out"; }; }
NIX
} | put_file "$WORK/shared.nix"

# The input is built on submit (no `nsh` feature): every build has to send it.
drv=$(on_submit nix-instantiate "$WORK/shared.nix" -A six 2>/dev/null | head -n1)
in_drv=$(on_submit nix-store -q --references "$drv" | grep -- '-shared-input.drv$') || fail "no input drv"
INPUT=$(on_submit nix-store --realise "$in_drv" 2>/dev/null | tail -n1)
size=$(on_submit nix-store -q --size "$INPUT")
[ "$size" -gt 100000000 ] || fail "input $INPUT is only $size bytes"

on_submit scontrol update PartitionName=debug OverSubscribe=FORCE:8 || fail "cannot oversubscribe"
on_submit scontrol update NodeName=node2 State=DRAIN Reason=t35 || fail "cannot drain node2"

BUILD_ENV=(NSH_CONFIG="$(printf 'remote-store = %s\ncollect-garbage = true' "$RSTORE")")
# One build first, so the six do not also upload the agent at once: until one node can
# take any number of builds (issue 8, deliver 1), sshd's MaxSessions (10) counts every
# session of the shared ControlMaster.
nsh_build warm "$WORK/shared.nix" -A warm
assert_rc 0 warm
nsh_build shared "$WORK/shared.nix" -A six -j6
unset BUILD_ENV
assert_rc 0 shared
[ "$(out_paths shared | wc -l)" = 6 ] || fail "expected 6 outputs"
for o in $(out_paths shared); do
  [ "$(on_submit cat "$o" | tr -d ' ')" = 104857600 ] || fail "$o does not hold the input's size"
done
[ "$(grep -oE 'is running on node[12]' "$LOGS/shared.log" | sort -u)" = "is running on node1" ] ||
  fail "not all jobs ran on node1: $(grep -oE 'is running on node[12]' "$LOGS/shared.log" | sort | uniq -c)"

lines=$(grep -oE 'nsh: sent [0-9]+ of [0-9]+ paths \([0-9]+ bytes' "$LOGS/shared.log")
[ "$(echo "$lines" | wc -l)" = 6 ] || fail "expected 6 transfer lines: $lines"
total=$(echo "$lines" | grep -oE "\\([0-9]+" | tr -d "(" | awk "{s += \$1} END {print s}")
big=$(echo "$lines" | grep -oE '\([0-9]+' | tr -d '(' | awk -v s="$size" '$1 >= s' | wc -l)
[ "$big" = 1 ] || fail "$big builds sent the input (want 1): $lines"
# Besides the input, each build sends only its own small .drv files.
[ "$total" -lt $(( size + 1000000 )) ] || fail "sent $total bytes in all for a $size-byte input"
waited=$(grep -c 'waiting for another job.s upload to the store on node1' "$LOGS/shared.log" || true)

# The last one out collected: the shared input is gone from the chroot store.
on node1 test -d "$RSTORE/nix/store" || fail "$RSTORE on node1 was never used"
! on node1 test -e "$RSTORE$INPUT" || fail "$RSTORE$INPUT is still there: nobody collected"
say "ok: 6 builds on node1, input ($size bytes) sent once ($total bytes in all), $waited waited for the upload; collected at the end"
assert_no_live_jobs
