#!/bin/bash
# SSH to the job's node is refused (the node no longer accepts our key): nix-build fails with
# an error that names the host, and the job is cancelled. authorized_keys is moved aside on
# the rootfs all hosts share (restored on exit); NSH_RUNTIME_DIR gives this build a runtime
# dir of its own, so no SSH master another build left open is reused.
. "$(dirname "$0")/lib.sh"

KEYS=/root/.ssh/authorized_keys
ASIDE=$KEYS.t05-$NONCE
restore() { on_submit sh -c "[ ! -e '$ASIDE' ] || mv -f '$ASIDE' '$KEYS'" || true; }
trap restore EXIT
trap 'exit 130' INT TERM

{ prelude; cat <<'NIX'
mk { name = "ssh-refused"; requiredSystemFeatures = [ "nsh" ]; script = "echo x > $out"; }
NIX
} | put_file "$WORK/refused.nix"

on_submit mv "$KEYS" "$ASIDE"
t0=$(date +%s%N)
BUILD_ENV=(NSH_RUNTIME_DIR="$WORK/rt")
BUILD_TIMEOUT=120 nsh_build refused "$WORK/refused.nix"
unset BUILD_ENV
t1=$(date +%s%N)
restore
say "authorized_keys moved aside for $(( (t1 - t0) / 1000000 )) ms"

[ "$BUILD_RC" != 0 ] || fail "nix-build succeeded without SSH"
[ "$BUILD_RC" != 124 ] || fail "nix-build hung"
jobs=$(job_ids refused)
[ -n "$jobs" ] || fail "no job was submitted"
node=$(job_node refused)
[ -n "$node" ] || fail "the log does not say where the job ran"
assert_log refused "SSH connection to '$node'"
assert_log refused "Permission denied"
say "error: $(grep -m1 -E "SSH connection to" "$LOGS/refused.log" | cut -c1-200)"
assert_jobs_gone 10 $jobs
state=$(on_submit scontrol show job "$jobs" | grep -oE 'JobState=[A-Z_]+' || true)
say "ok: job $jobs on $node ended ($state)"
assert_no_live_jobs
