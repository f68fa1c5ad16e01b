#!/bin/bash
# The state dir on the cluster is checked before it is trusted: if others can write to it
# (or it is someone else's), the build fails with what to fix, no agent is uploaded and no
# job is left.
#  1. a group-writable slurm-state-dir (0770);
#  2. a group-writable agents/ inside an otherwise good one;
#  3. a state dir that belongs to another user (alice) while the jobs run as root.
. "$(dirname "$0")/lib.sh"

TAG=$(printf %s "$NONCE" | sha256sum | cut -c1-10)
BASE=/var/lib/nsh-e2e-$TAG       # /var/lib is the same directory on every testbed host
trap 'on_submit rm -rf "$BASE" || true' EXIT

{ prelude; cat <<NIX
mk { name = "state-dir-$TAG"; requiredSystemFeatures = [ "nsh" ]; script = "echo hi > \$out"; }
NIX
} | put_file "$WORK/sd.nix"

# refused NAME STATE PATTERN: the build with slurm-state-dir = STATE fails saying PATTERN,
# nothing is uploaded, no job stays.
refused() {
  local name=$1 state=$2 pattern=$3
  BUILD_ENV=(NSH_CONFIG="slurm-state-dir = $state")
  BUILD_TIMEOUT=120 nsh_build "$name" "$WORK/sd.nix"
  unset BUILD_ENV
  [ "$BUILD_RC" != 0 ] || fail "$name: the build succeeded"
  [ "$BUILD_RC" != 124 ] || fail "$name: nix-build hung"
  assert_log "$name" "$pattern"
  assert_log "$name" 'nothing was uploaded'
  job_ids "$name" | grep -q . || fail "$name: no job was submitted (the check runs on the job's host)"
  if on_submit sh -c "ls -A '$state/agents' 2>/dev/null" | grep -q .; then
    fail "$name: something was uploaded to $state/agents"
  fi
  assert_no_live_jobs
  say "ok: $name: $(grep -a -m1 -o 'the state dir on .*' "$LOGS/$name.log" | cut -c1-160)"
}

on_submit sh -c "mkdir -p $BASE/gw && chmod 0770 $BASE/gw"
refused group-writable "$BASE/gw" "$BASE/gw is writable by group or others \\(drwxrwx---\\): run 'chmod go-w $BASE/gw'"

on_submit sh -c "mkdir -p $BASE/agw/agents $BASE/agw/jobs && chmod 0700 $BASE/agw $BASE/agw/jobs && chmod 0775 $BASE/agw/agents"
refused agents-writable "$BASE/agw" "$BASE/agw/agents is writable by group or others"

on_submit sh -c "mkdir -p $BASE/alice && chown alice: $BASE/alice && chmod 0700 $BASE/alice"
refused not-mine "$BASE/alice" "$BASE/alice belongs to uid 1000, not to uid 0 who runs the job"

# And a good one works (the check passes on a fresh dir nsh creates itself).
BUILD_ENV=(NSH_CONFIG="slurm-state-dir = $BASE/fresh")
nsh_build fresh "$WORK/sd.nix"
unset BUILD_ENV
assert_rc 0 fresh
[ "$(on_submit stat -c %a "$BASE/fresh")" = 700 ] || fail "fresh: $BASE/fresh is not 0700"
say "ok: a fresh state dir is created 0700 and used"
