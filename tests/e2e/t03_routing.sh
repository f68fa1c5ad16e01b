#!/bin/bash
# Routing: a feature the cluster lacks is not sent; with mandatory-system-features = nsh
# only derivations requiring `nsh` are sent; a foreign system is not sent.
. "$(dirname "$0")/lib.sh"

{ prelude; cat <<'NIX'
{
  gpu = mk { name = "wants-gpu"; requiredSystemFeatures = [ "gpu" ]; script = "echo gpu > $out"; };
  plain = mk { name = "plain"; script = "echo plain > $out"; };
  ours = mk { name = "ours"; requiredSystemFeatures = [ "nsh" ]; script = "echo ours > $out"; };
  arm = mk { name = "arm"; system = "aarch64-linux"; script = "echo arm > $out"; };
}
NIX
} | put_file "$WORK/routing.nix"

# A feature the cluster lacks: built locally (the local Nix is told it has `gpu`).
nsh_build gpu "$WORK/routing.nix" -A gpu --option system-features gpu
assert_rc 0 gpu
refute_log gpu 'as job'

# mandatory-system-features = nsh: `plain` stays local, `ours` goes to the cluster.
nsh_build_env() { local name=$1 file=$2 conf=$3; shift 3
  set +e
  on_submit env NSH_CONFIG="$conf" timeout 300 nix-build "$file" --no-out-link \
    --option build-hook /opt/nsh/bin/nsh "$@" >"$LOGS/$name.log" 2>&1
  BUILD_RC=$?; set -e; }
nsh_build_env mandatory "$WORK/routing.nix" 'mandatory-system-features = nsh' -A plain -A ours -j2
assert_rc 0 mandatory
[ "$(job_ids mandatory | wc -l)" = 1 ] || fail "expected exactly one job with mandatory features"
assert_log mandatory "submitted /nix/store/[a-z0-9]+-ours.drv as job"
refute_log mandatory "submitted /nix/store/[a-z0-9]+-plain.drv"

# A foreign system: not sent; Nix itself reports it cannot build it.
nsh_build arm "$WORK/routing.nix" -A arm
[ "$BUILD_RC" != 0 ] || fail "an aarch64 derivation built?"
refute_log arm 'as job'
assert_log arm 'aarch64-linux'
say "ok: gpu local, mandatory routing, foreign system declined"
assert_no_live_jobs
