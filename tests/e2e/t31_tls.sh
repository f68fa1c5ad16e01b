#!/bin/bash
# slurmrestd over HTTPS (the testbed's stunnel on NSH_TB_REST_TLS_PORT, its own CA): a wrong
# CA or a host name outside the certificate fails fast at the first request, says TLS
# verification failed for which host and what to check, and submits nothing; `nsh check`
# says the link is encrypted and with which CA, and warns when the token would cross plain
# HTTP to a host that is not loopback.
. "$(dirname "$0")/lib.sh"

{ prelude; cat <<'NIX'
mk { name = "tls"; requiredSystemFeatures = [ "nsh" ]; script = "echo x > $out"; }
NIX
} | put_file "$WORK/tls.nix"

# The newest job id Slurm knows (jobs stay listed for MinJobAge = 600 s after they end).
last_job() { on_submit squeue -h -t all -o %i | sort -n | tail -n1; }

check() { # NAME [NSH_CONFIG text]: nsh check on submit; output in $LOGS/NAME.log, RC, SECS
  local t0=$(date +%s%N)
  set +e
  on_submit env ${2:+NSH_CONFIG="$2"} timeout 120 /opt/nsh/bin/nsh check >"$LOGS/$1.log" 2>&1
  RC=$?
  set -e
  SECS=$(( ($(date +%s%N) - t0) / 1000000000 ))
}

# 1. The testbed's nsh.conf: https with the testbed's CA, every step passes.
check good
[ "$RC" = 0 ] || { cat "$LOGS/good.log" >&2; fail "nsh check failed over TLS"; }
assert_log good "accepts the token"
assert_log good "^ok +link to slurmrestd is encrypted \(https, certificate of $NSH_TB_SUBMIT_IP verified against slurm-api-ca-file $NSH_TB_CA_FILE\)"
assert_log good "slurmrestd at https://$NSH_TB_SUBMIT_IP:$NSH_TB_REST_TLS_PORT"
refute_log good '^warn'
assert_log good '^nsh check: all good'

# 2. The wrong CA: a build fails fast, no job is submitted.
before=$(last_job)
t0=$(date +%s%N)
BUILD_ENV=(NSH_CONFIG="slurm-api-ca-file = $NSH_TB_WRONG_CA_FILE")
BUILD_TIMEOUT=60 nsh_build wrong-ca "$WORK/tls.nix"
unset BUILD_ENV
secs=$(( ($(date +%s%N) - t0) / 1000000000 ))
[ "$BUILD_RC" != 0 ] || fail "wrong-ca: nix-build succeeded"
[ "$BUILD_RC" != 124 ] || fail "wrong-ca: nix-build hung"
[ "$secs" -lt 20 ] || fail "wrong-ca: took ${secs}s to fail (expected < 20 s)"
assert_log wrong-ca "TLS verification failed for host $NSH_TB_SUBMIT_IP"
assert_log wrong-ca "certificate"
assert_log wrong-ca "the token was not sent"
assert_log wrong-ca "slurm-api-ca-file \($NSH_TB_WRONG_CA_FILE\)"
refute_log wrong-ca 'as job'
refute_log wrong-ca 'eyJ[A-Za-z0-9_-]{20,}'
[ "$(last_job)" = "$before" ] || fail "wrong-ca: a job was submitted (last job $before, now $(last_job))"

# ... and nsh check stops at the API step, also fast and without a job.
check wrong-ca-check "slurm-api-ca-file = $NSH_TB_WRONG_CA_FILE"
[ "$RC" != 0 ] || fail "nsh check passed with the wrong CA"
[ "$SECS" -lt 20 ] || fail "wrong-ca-check: took ${SECS}s"
assert_log wrong-ca-check "^FAIL +TLS verification failed for host $NSH_TB_SUBMIT_IP"
refute_log wrong-ca-check 'submitted test job'
refute_log wrong-ca-check 'link to slurmrestd is encrypted'
[ "$(last_job)" = "$before" ] || fail "wrong-ca-check: a job was submitted"

# 3. A host name the certificate does not carry (stunnel also listens on 127.0.0.1).
check wrong-name "slurm-api-host = 127.0.0.1"
[ "$RC" != 0 ] || fail "nsh check passed with a host outside the certificate"
[ "$SECS" -lt 20 ] || fail "wrong-name: took ${SECS}s"
assert_log wrong-name "^FAIL +TLS verification failed for host 127\.0\.0\.1"
assert_log wrong-name "names \(subjectAltName\) include '127\.0\.0\.1'"
[ "$(last_job)" = "$before" ] || fail "wrong-name: a job was submitted"

# 4. A CA file that is not there: a config error naming the file and the setting.
check missing-ca "slurm-api-ca-file = /nonexistent/ca.pem"
[ "$RC" != 0 ] || fail "nsh check passed with a missing CA file"
assert_log missing-ca "slurm-api-ca-file = /nonexistent/ca.pem: the file does not exist"

# 5. Plain HTTP to submit's address (not loopback): it works, with a warning.
plain=$(printf 'slurm-api-scheme = http\nslurm-api-port = %s\nslurm-api-ca-file =\n' "$NSH_TB_REST_PORT")
check plain-remote "$plain"
[ "$RC" = 0 ] || { cat "$LOGS/plain-remote.log" >&2; fail "nsh check failed over plain HTTP"; }
assert_log plain-remote "^warn +link to slurmrestd is NOT encrypted: the token \(slurm-jwt-token\) crosses plain HTTP to $NSH_TB_SUBMIT_IP"
refute_log plain-remote 'is encrypted'

# 6. Plain HTTP on loopback: no warning.
check plain-loopback "$(printf '%s\nslurm-api-host = 127.0.0.1\n' "$plain")"
[ "$RC" = 0 ] || { cat "$LOGS/plain-loopback.log" >&2; fail "nsh check failed over HTTP on loopback"; }
assert_log plain-loopback "^ok +link to slurmrestd is plain HTTP to 127\.0\.0\.1, a loopback address"
refute_log plain-loopback '^warn'
assert_no_live_jobs
say "ok: wrong CA failed in ${secs}s: $(grep -m1 -o 'TLS verification failed[^;]*' "$LOGS/wrong-ca.log" | cut -c1-120)"
