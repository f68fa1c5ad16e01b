#!/bin/bash
# A derivation that prints a line and writes $out: the output is valid locally, the line is
# in nix-build's output and in `nix log`, and Nix's output names the job, the node and the
# https endpoint.
. "$(dirname "$0")/lib.sh"

{ prelude; cat <<'NIX'
mk { name = "simple"; requiredSystemFeatures = [ "nsh" ];
     script = "echo hello-from-the-cluster; echo done > $out"; }
NIX
} | put_file "$WORK/simple.nix"

t0=$(date +%s%N)
nsh_build simple "$WORK/simple.nix"
t1=$(date +%s%N)
assert_rc 0 simple
assert_log simple "^hello-from-the-cluster"
assert_log simple 'job [0-9]+ is running on node[12]'
# The testbed's nsh.conf goes through TLS (t29 is the one build over plain HTTP).
assert_log simple "to slurmrestd at https://$NSH_TB_SUBMIT_IP:$NSH_TB_REST_TLS_PORT "
out=$(out_paths simple | tail -n1)
[ -n "$out" ] || fail "no output path printed"
on_submit nix-store --verify-path "$out" || fail "$out is not valid"
[ "$(on_submit cat "$out")" = done ] || fail "wrong content in $out"
on_submit nix-store -l "$(on_submit nix-store -q --deriver "$out")" | grep -q hello-from-the-cluster ||
  fail "the build log is not in nix log"
say "ok: built $out in $(( (t1 - t0) / 1000000 )) ms"
assert_no_live_jobs
