#!/bin/bash
# A multi-output derivation (out, dev; dev refers to out): both registered with correct
# references and deriver; `nix-store --verify --check-contents` is clean.
. "$(dirname "$0")/lib.sh"

{ prelude; cat <<'NIX'
mk { name = "multi"; outputs = [ "out" "dev" ]; requiredSystemFeatures = [ "nsh" ];
     script = "echo the-out > $out; echo the-dev refers to $out > $dev"; }
NIX
} | put_file "$WORK/multi.nix"

nsh_build multi "$WORK/multi.nix" -A dev -A out
assert_rc 0 multi
drv=$(on_submit nix-instantiate "$WORK/multi.nix" 2>/dev/null)
outs=$(on_submit nix-store -q --outputs "$drv")
out=$(echo "$outs" | grep -v -- '-dev$'); dev=$(echo "$outs" | grep -- '-dev$')
for p in $out $dev; do
  on_submit nix-store --check-validity "$p" || fail "$p not valid"
  [ "$(on_submit nix-store -q --deriver "$p")" = "$drv" ] || fail "$p: wrong deriver"
done
on_submit nix-store -q --references "$dev" | grep -qx "$out" || fail "dev does not refer to out"
on_submit nix-store -q --references "$out" | grep -q . && fail "out has references"
on_submit nix-store --verify --check-contents >"$LOGS/multi-verify.log" 2>&1 ||
  fail "nix-store --verify --check-contents failed: $(tail -n3 "$LOGS/multi-verify.log")"
grep -qiE 'corrupt|invalid|mismatch' "$LOGS/multi-verify.log" && fail "verify complained"
say "ok: out=$out dev=$dev"
assert_no_live_jobs
