#!/bin/bash
# remote-store = /scratch/nsh-store (a chroot store on the node's local disk) with
# collect-garbage = true: the build works, the agent uses that store, and afterwards the
# output is gone from it (valid locally only).
. "$(dirname "$0")/lib.sh"

RSTORE=/scratch/nsh-store
{ prelude; cat <<'NIX'
mk { name = "remote-store-gc"; requiredSystemFeatures = [ "nsh" ];
     script = "echo built-in-a-chroot-store; echo gc > $out"; }
NIX
} | put_file "$WORK/gc.nix"

t0=$(date +%s%N)
BUILD_ENV=(NSH_CONFIG="$(printf 'remote-store = %s\ncollect-garbage = true' "$RSTORE")")
nsh_build gc "$WORK/gc.nix"
unset BUILD_ENV
t1=$(date +%s%N)
assert_rc 0 gc
assert_log gc "^built-in-a-chroot-store"
assert_log gc "store $RSTORE\)"
out=$(out_paths gc | tail -n1)
[ -n "$out" ] || fail "no output path printed"
on_submit nix-store --verify-path "$out" || fail "$out is not valid locally"
[ "$(on_submit cat "$out")" = gc ] || fail "wrong content in $out"
node=$(job_node gc)
[ -n "$node" ] || fail "the log does not say where the job ran"
jobs=$(job_ids gc)
# The collection runs before the agent says goodbye, so it is over when nix-build returns.
if on "$node" nix-store --store "$RSTORE" --check-validity "$out" 2>/dev/null; then
  fail "$out is still valid in $RSTORE on $node"
fi
if on "$node" test -e "$RSTORE$out"; then
  fail "$RSTORE$out still exists on $node"
fi
on "$node" test -d "$RSTORE/nix/store" || fail "$RSTORE on $node was never used"
say "ok: built $out on $node in $(( (t1 - t0) / 1000000 )) ms; gone from $RSTORE there"
assert_jobs_gone 10 $jobs
assert_no_live_jobs
