#!/bin/bash
# The one build over plain HTTP (the reference tool's transport): the testbed's nsh.conf
# says https, so this overrides scheme and port; the build succeeds and says where it went.
. "$(dirname "$0")/lib.sh"

{ prelude; cat <<'NIX'
mk { name = "plain-http"; requiredSystemFeatures = [ "nsh" ];
     script = "echo over-plain-http; echo done > $out"; }
NIX
} | put_file "$WORK/plain.nix"

BUILD_ENV=(NSH_CONFIG="$(printf 'slurm-api-scheme = http\nslurm-api-port = %s\nslurm-api-ca-file =\n' "$NSH_TB_REST_PORT")")
nsh_build plain-http "$WORK/plain.nix"
unset BUILD_ENV
assert_rc 0 plain-http
assert_log plain-http "to slurmrestd at http://$NSH_TB_SUBMIT_IP:$NSH_TB_REST_PORT "
assert_log plain-http "^over-plain-http"
out=$(out_paths plain-http | tail -n1)
[ -n "$out" ] || fail "no output path printed"
on_submit nix-store --verify-path "$out" || fail "$out is not valid"
[ "$(on_submit cat "$out")" = done ] || fail "wrong content in $out"
say "ok: built $out over http://$NSH_TB_SUBMIT_IP:$NSH_TB_REST_PORT"
assert_no_live_jobs
