#!/bin/bash
# An input whose local copy no longer matches its recorded hash (one byte changed in place):
# the remote Nix daemon refuses it while it streams in, nix-build fails with an error that
# names the path and says how to check it, nothing is added to the node's store and no job
# is left behind. Then the input is repaired locally and the same build succeeds.
. "$(dirname "$0")/lib.sh"

{ prelude; cat <<'NIX'
let input = mk { name = "damaged-input"; script = "echo intact-content > $out"; };
in mk { name = "damaged-use"; requiredSystemFeatures = [ "nsh" ]; script = "cat ${input} > $out"; }
NIX
} | put_file "$WORK/damaged.nix"

build_input_locally "$WORK/damaged.nix" damaged-input
input=$INPUT
# Same length, other bytes: only the hash can tell.
on_submit sh -c "chmod u+w '$input' && printf 'intact-c0ntent\n' > '$input' && chmod 0444 '$input'"

nsh_build damaged "$WORK/damaged.nix"
[ "$BUILD_RC" != 0 ] || fail "nix-build succeeded with a damaged input"
assert_log damaged "refused $input: hash mismatch"
assert_log damaged "nix-store --verify --check-contents"
node=$(job_node damaged)
! on "$node" nix-store --check-validity "$input" 2>/dev/null || fail "$input became valid on $node"
assert_no_live_jobs
say "ok: refused: $(grep -a -m1 -oE 'adding the inputs.*hash mismatch[^;]*' "$LOGS/damaged.log" | cut -c1-160)"

on_submit nix-store --repair-path "$input" >/dev/null 2>&1 || fail "cannot repair $input locally"
nsh_build repaired "$WORK/damaged.nix"
assert_rc 0 repaired
on "$node" nix-store --check-validity "$input" 2>/dev/null || say "note: the rebuild ran on the other node"
assert_no_live_jobs
say "ok: after 'nix-store --repair-path' the build succeeds"
