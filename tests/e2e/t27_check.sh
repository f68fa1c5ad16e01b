#!/bin/bash
# `nsh check` on the testbed: with the testbed's nsh.conf every step passes (config, agent
# binary, token, a test job, SSH, agent upload, the agent's self-check on the node including
# nix-daemon); with a broken setting it stops at the step that fails, names it and exits
# non-zero. No job of ours is left behind either way.
. "$(dirname "$0")/lib.sh"

check() { # NAME [NSH_CONFIG text]: runs nsh check on submit; output in $LOGS/NAME.log, rc in RC
  set +e
  on_submit env ${2:+NSH_CONFIG="$2"} timeout 120 /opt/nsh/bin/nsh check >"$LOGS/$1.log" 2>&1
  RC=$?
  set -e
}

check good
[ "$RC" = 0 ] || { cat "$LOGS/good.log" >&2; fail "nsh check failed on a working testbed"; }
for step in 'accepts the token' 'submitted test job' 'started on node[12]' '^ok +ssh node[12]' \
  'nix-daemon --stdio answers' '^ok +self-check on node[12]' '^nsh check: all good'; do
  assert_log good "$step"
done
assert_no_live_jobs

check bad-token "slurm-jwt-token = not-a-jwt"
[ "$RC" != 0 ] || fail "nsh check passed with a bogus token"
assert_log bad-token '^FAIL +`slurm-jwt-token`'
refute_log bad-token 'submitted test job'

check expired-token "slurm-jwt-token = eyJhbGciOiJIUzI1NiJ9.eyJleHAiOjEsInN1YiI6InJvb3QifQ.c2lnbmF0dXJl"
[ "$RC" != 0 ] || fail "nsh check passed with a token slurmrestd rejects"
# 26.05 rejects it at the token's own check (HTTP 511), 22.05 already at the OpenAPI read (401).
assert_log expired-token '^FAIL +slurmrestd at https?://[^ ]+ .*rejected the JWT while .*check `slurm-jwt-token` and whether it has expired'
refute_log expired-token 'submitted test job'

# The node refuses a store under /tmp: the check gets as far as the agent's self-check.
check tmp-store "remote-store = /tmp/nsh-store"
[ "$RC" != 0 ] || fail "nsh check passed with remote-store under /tmp"
assert_log tmp-store '^FAIL +store /tmp/nsh-store is under a world-writable temp dir'
assert_log tmp-store 'self-check on node[12] failed'
assert_no_live_jobs
say "ok: all good on the testbed; bad token: $(grep -m1 '^FAIL' "$LOGS/expired-token.log" | cut -c1-100)"
