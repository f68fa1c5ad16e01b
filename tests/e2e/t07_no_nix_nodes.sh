#!/bin/bash
# Nodes without Nix: the system Nix on the nodes is hidden (restored on exit), nsh uses the
# relocatable Nix in a shared directory (remote-nix-bin-dir) and a chroot store on local
# disk (remote-store): the build works.
. "$(dirname "$0")/lib.sh"

RSTORE=/scratch/nsh-store
RELOC=${NSH_TB_NIX_RELOC:-/opt/nix-reloc/bin}
restore() { "${TB[@]}" nix-on-nodes on >/dev/null 2>&1 || echo "  [$TEST] WARNING: nix-on-nodes on failed" >&2; }
trap restore EXIT
trap 'exit 130' INT TERM

{ prelude; cat <<'NIX'
mk { name = "no-nix-nodes"; requiredSystemFeatures = [ "nsh" ];
     script = "echo built-without-system-nix; echo reloc > $out"; }
NIX
} | put_file "$WORK/nonix.nix"

"${TB[@]}" nix-on-nodes off >/dev/null 2>&1
w0=$(date +%s%N)
for n in node1 node2; do
  if on "$n" /usr/bin/nix --version >/dev/null 2>&1; then fail "the system Nix on $n is still usable"; fi
done
t0=$(date +%s%N)
BUILD_ENV=(NSH_CONFIG="$(printf 'remote-nix-bin-dir = %s\nremote-store = %s' "$RELOC" "$RSTORE")")
nsh_build nonix "$WORK/nonix.nix"
unset BUILD_ENV
t1=$(date +%s%N)
restore
say "system Nix hidden on the nodes for $(( ($(date +%s%N) - w0) / 1000000 )) ms"

assert_rc 0 nonix
assert_log nonix "^built-without-system-nix"
assert_log nonix "store $RSTORE\)"
out=$(out_paths nonix | tail -n1)
[ -n "$out" ] || fail "no output path printed"
on_submit nix-store --verify-path "$out" || fail "$out is not valid locally"
[ "$(on_submit cat "$out")" = reloc ] || fail "wrong content in $out"
node=$(job_node nonix)
say "ok: built $out on $node with $RELOC in $(( (t1 - t0) / 1000000 )) ms ($(grep -m1 -oE 'agent on .* ready \(Nix [^,]*' "$LOGS/nonix.log"))"
assert_jobs_gone 10 $(job_ids nonix)
assert_no_live_jobs
