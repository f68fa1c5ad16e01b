#!/bin/bash
# A floating content-addressed derivation (outputs known only after the build) is not sent
# to the cluster.
#  1. Offered to nsh (the hook protocol written by hand, since Nix 2.34 does not offer these
#     to a hook at all): nsh answers `# decline` with a message and submits nothing.
#  2. Through nix-build: it builds locally, no job.
. "$(dirname "$0")/lib.sh"

{ prelude; cat <<'NIX'
mk { name = "floating"; __contentAddressed = true; outputHashMode = "recursive";
     outputHashAlgo = "sha256";
     script = "echo floating > $out"; }
NIX
} | put_file "$WORK/ca.nix"

drv=$(on_submit nix-instantiate --extra-experimental-features ca-derivations "$WORK/ca.nix" 2>/dev/null | tail -n1)
[ -n "$drv" ] || fail "cannot instantiate $WORK/ca.nix"
hook_offer "$drv" nsh >"$LOGS/ca-offer.in"
set +e
on_submit sh -c 'timeout 30 /opt/nsh/bin/nsh 1 2>&1 >/dev/null' <"$LOGS/ca-offer.in" >"$LOGS/ca-offer.log"
rc=$?
set -e
[ "$rc" = 0 ] || { cat "$LOGS/ca-offer.log" >&2; fail "nsh exited $rc on the offer"; }
assert_log ca-offer '^# decline$'
refute_log ca-offer '^# accept'
assert_log ca-offer "not sending $drv to the cluster: it is a floating content-addressed"
say "ok: offered by hand → $(grep -m1 '^# ' "$LOGS/ca-offer.log"): $(grep -m1 'not sending' "$LOGS/ca-offer.log" | cut -c1-120)"

nsh_build ca "$WORK/ca.nix" --extra-experimental-features ca-derivations
assert_rc 0 ca
refute_log ca 'as job'
say "ok: nix-build built it without a job$(grep -q 'not sending' "$LOGS/ca.log" && echo ' (offered and declined)')"
assert_no_live_jobs
