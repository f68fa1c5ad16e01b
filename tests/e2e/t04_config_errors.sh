#!/bin/bash
# Configuration errors: a clear error naming the setting, no job, and nix-build does not
# hang (nsh declines permanently; the derivation needs `nsh`, so Nix then fails).
. "$(dirname "$0")/lib.sh"

{ prelude; cat <<'NIX'
mk { name = "cfg"; requiredSystemFeatures = [ "nsh" ]; script = "echo x > $out"; }
NIX
} | put_file "$WORK/cfg.nix"

check_case() { local name=$1 conf=$2 want=$3
  local t0=$(date +%s)
  set +e
  on_submit env NSH_CONFIG="$conf" timeout 60 nix-build "$WORK/cfg.nix" --no-out-link \
    --option build-hook /opt/nsh/bin/nsh >"$LOGS/$name.log" 2>&1
  BUILD_RC=$?; set -e
  [ "$BUILD_RC" != 0 ] || fail "$name: nix-build succeeded"
  [ "$BUILD_RC" != 124 ] || fail "$name: nix-build hung"
  assert_log "$name" "$want"
  refute_log "$name" 'as job'
  refute_log "$name" 'eyJ[A-Za-z0-9_-]{20,}'   # the token never shows
  say "ok: $name → $(grep -m1 -E "$want" "$LOGS/$name.log" | cut -c1-150) ($(( $(date +%s) - t0 ))s)"
}
check_case invalid-scheduler 'job-scheduler = invalid' "bad value 'invalid' for 'job-scheduler': expected one of slurm,"
# The old name sets the same setting; the error names it by its name, state-dir.
check_case no-state-dir 'slurm-state-dir =' "'state-dir' is required"
check_case no-token 'slurm-jwt-token =' "'slurm-jwt-token' is required when job-scheduler = slurm"
check_case bad-token 'slurm-jwt-token = eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdW4iOiJyb290In0.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA' \
  "cannot submit the job for /nix/store/[a-z0-9]{32}-cfg.drv .*(probably )?rejected the JWT while submitting .*check \`slurm-jwt-token\`"
check_case unreachable 'slurm-api-port = 1' \
  "no answer from slurmrestd at https?://[^ ]+:1 while .*is slurmrestd running and reachable\?"
check_case unknown-key 'slurm-api-hots = x' "unknown setting 'slurm-api-hots' \(did you mean 'slurm-api-host'\?\)"
assert_no_live_jobs
