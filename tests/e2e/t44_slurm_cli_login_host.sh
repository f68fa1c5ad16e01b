#!/bin/bash
# job-scheduler = slurm-cli with the commands on a login host: `login-host = node1` and
# `scheduler-bin-dir` = a directory that holds links to sbatch, squeue, scontrol and scancel
# on node1 only (scripts/testbed; it does not exist on submit).
#  1. the build succeeds, its extraSlurmParams reach the job, and the hook says its
#     commands ran on login host node1;
#  2. negative control: the same directory without login-host fails the build naming the
#     missing command, and submits nothing; so the local path cannot pass 1 by accident;
#  3. `nsh check` passes through the login host, and stops at the commands without it.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/lib_pbs.sh"
. "$(dirname "$0")/lib_alice.sh"
. "$(dirname "$0")/lib_slurm_cli.sh"

TAG=$(printf %s "$NONCE" | sha256sum | cut -c1-8)
JOBS_AT_START=$(all_job_ids)
cleanup() {
  cancel_new_jobs "$JOBS_AT_START"
  on_submit rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

slurm_cli_require_layout

{ prelude; cat <<NIX
{
  login = mk { name = "cli-login-$TAG"; requiredSystemFeatures = [ "nsh" ];
    extraSlurmParams = builtins.toJSON { cpus_per_task = 2; };
    script = "echo hello-via-$LOGIN_HOST; echo done > \$out"; };
  local = mk { name = "cli-no-login-$TAG"; requiredSystemFeatures = [ "nsh" ];
    script = "echo should-not-build > \$out"; };
}
NIX
} | put_file "$WORK/login.nix"

# 1. through the login host
slurm_cli_env login
nsh_build login "$WORK/login.nix" -A login
unset BUILD_ENV
assert_rc 0 login
assert_slurm_job login
job=$CLI_JOB
assert_line_has login "as job $job to Slurm's commands on login host $LOGIN_HOST"
assert_log login "^hello-via-$LOGIN_HOST"
assert_log login "job $job is running on node[12]"
out=$(out_paths login | tail -n1)
[ -n "$out" ] || fail "login: no output path printed"
on_submit nix-store --verify-path "$out" || fail "$out is not valid"
[ "$(on_submit cat "$out")" = done ] || fail "wrong content in $out"
cpus=$(job_field "$job" NumCPUs)
[ "$cpus" = 2 ] || fail "job $job has NumCPUs=$cpus, expected 2"
# (AllocNode says submit whatever ran sbatch: the testbed's hosts share one munged.)
# SubmitLine exists from 23.02; on 22.05 the negative control (2) shows the path is needed.
if on_submit scontrol show job -o "$job" | grep -q ' SubmitLine='; then
  cmd=$(job_field "$job" SubmitLine)
  [ "$cmd" = "$CLI_LOGIN_BIN/sbatch" ] || fail "job $job was submitted by '$cmd', expected $CLI_LOGIN_BIN/sbatch"
else
  cmd="sbatch (no SubmitLine on Slurm $NSH_TB_SLURM_VERSION)"
fi
say "ok: built $out through sbatch job $job, submitted by $cmd on $LOGIN_HOST (NumCPUs=$cpus)"

# 2. the login host's directory, but no login host
before=$(all_job_ids)
slurm_cli_env login-dir-only
BUILD_TIMEOUT=120 nsh_build no-login "$WORK/login.nix" -A local
unset BUILD_ENV
[ "$BUILD_RC" != 0 ] || fail "no-login: the build succeeded without the login host"
[ "$BUILD_RC" != 124 ] || fail "no-login: nix-build hung"
assert_log no-login "$CLI_LOGIN_BIN/sbatch"
assert_log no-login 'not found'
refute_log no-login 'as job [0-9]'
new=$(new_job_ids "$before")
[ -z "$new" ] || fail "no-login: job(s) submitted: $(echo $new)"
say "ok: without login-host: $(grep -a -m1 -F "$CLI_LOGIN_BIN/sbatch" "$LOGS/no-login.log" | cut -c1-160)"

# 3. nsh check, with and without the login host
nsh_check check-login login
[ "$CHECK_RC" = 0 ] || { cat "$LOGS/check-login.log" >&2; fail "nsh check failed through the login host"; }
assert_log check-login "^ok +Slurm's commands on login host $LOGIN_HOST \\(slurm-wlm [0-9.]+\\): sbatch and squeue answer"
assert_log check-login '^nsh check: all good'
nsh_check check-no-login login-dir-only
[ "$CHECK_RC" != 0 ] || { cat "$LOGS/check-no-login.log" >&2; fail "nsh check passed without the login host"; }
assert_log check-no-login "$CLI_LOGIN_BIN/sbatch not found"
refute_log check-no-login 'sbatch and squeue answer'
refute_log check-no-login 'all good'
say "ok: nsh check through $LOGIN_HOST passes; without it: $(grep -a -m1 -F "$CLI_LOGIN_BIN/sbatch" "$LOGS/check-no-login.log" | cut -c1-160)"

assert_no_live_jobs
