#!/bin/bash
# job-scheduler = pbs with the commands on a login host: `login-host = node1` and
# `scheduler-bin-dir = /opt/torque-login/bin`, a directory that holds the Torque wrappers on
# node1 only (empty on submit, and no qsub on submit's PATH).
#  1. the build succeeds, its pbsResources reach the job, and the hook says its commands ran
#     on login host node1;
#  2. negative control: the same directory without login-host fails the build with a
#     message naming the missing command, and submits nothing; so the local path cannot
#     pass test 1 by accident.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/lib_pbs.sh"

TAG=$(printf %s "$NONCE" | sha256sum | cut -c1-8)
JOBS_AT_START=$(all_job_ids)
cleanup() {
  cancel_new_jobs "$JOBS_AT_START"
  on_submit rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

pbs_require_layout

{ prelude; cat <<NIX
{
  login = mk { name = "pbs-login-$TAG"; requiredSystemFeatures = [ "nsh" ];
    pbsResources = builtins.toJSON { ncpus = "2"; };
    script = "echo hello-via-$LOGIN_HOST; echo done > \$out"; };
  local = mk { name = "pbs-no-login-$TAG"; requiredSystemFeatures = [ "nsh" ];
    pbsResources = builtins.toJSON { ncpus = "2"; };
    script = "echo should-not-build > \$out"; };
}
NIX
} | put_file "$WORK/login.nix"

# 1. through the login host
pbs_env login
nsh_build login "$WORK/login.nix" -A login
unset BUILD_ENV
assert_rc 0 login
assert_pbs_job login
job=$PBS_JOB
assert_line_has login "as job $job to PBS" "login host $LOGIN_HOST"
assert_log login "^hello-via-$LOGIN_HOST"
assert_log login "job $job is running on node[12]"
out=$(out_paths login | tail -n1)
[ -n "$out" ] || fail "login: no output path printed"
on_submit nix-store --verify-path "$out" || fail "$out is not valid"
[ "$(on_submit cat "$out")" = done ] || fail "wrong content in $out"
on_submit nix-store -l "$(on_submit nix-store -q --deriver "$out")" | grep -q "hello-via-$LOGIN_HOST" ||
  fail "the build log is not in nix log"
cpus=$(job_field "$job" NumCPUs)
[ "$cpus" = 2 ] || fail "job $job has NumCPUs=$cpus, expected 2"
say "ok: built $out through PBS job $job, commands on login host $LOGIN_HOST (NumCPUs=$cpus)"

# 2. the login host's directory, but no login host
before=$(all_job_ids)
pbs_env login-dir-only
BUILD_TIMEOUT=120 nsh_build no-login "$WORK/login.nix" -A local
unset BUILD_ENV
[ "$BUILD_RC" != 0 ] || fail "no-login: the build succeeded without the login host"
[ "$BUILD_RC" != 124 ] || fail "no-login: nix-build hung"
assert_log no-login "$TORQUE_LOGIN_BIN/q(sub|stat|del)"
assert_log no-login 'not found'
refute_log no-login 'as job [0-9]'
new=$(new_job_ids "$before")
[ -z "$new" ] || fail "no-login: job(s) submitted: $(echo $new)"
say "ok: without login-host: $(grep -a -m1 -E "$TORQUE_LOGIN_BIN/q(sub|stat|del)" "$LOGS/no-login.log" | cut -c1-160)"

assert_no_live_jobs
