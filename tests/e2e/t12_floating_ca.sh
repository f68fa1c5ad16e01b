#!/bin/bash
# A floating content-addressed derivation (outputs known only after the build) is not sent:
# Nix builds it locally. (Nix may not even offer it to the hook; if it does, nsh declines
# with a message.)
. "$(dirname "$0")/lib.sh"

{ prelude; cat <<'NIX'
mk { name = "floating"; __contentAddressed = true; outputHashMode = "recursive";
     outputHashAlgo = "sha256"; script = "echo floating > $out"; }
NIX
} | put_file "$WORK/ca.nix"

nsh_build ca "$WORK/ca.nix" --extra-experimental-features ca-derivations
assert_rc 0 ca
refute_log ca 'as job'
if grep -q 'not sending' "$LOGS/ca.log"; then
  say "ok: offered and declined: $(grep -m1 'not sending' "$LOGS/ca.log" | cut -c1-140)"
else
  say "ok: Nix did not offer it to the hook; built locally"
fi
