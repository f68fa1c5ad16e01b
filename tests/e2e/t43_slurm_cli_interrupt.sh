#!/bin/bash
# job-scheduler = slurm-cli, interrupted while the builder runs (a builder that ticks for
# 30 s), the commands on submit with job-user = alice:
#  (a) Ctrl-C (SIGINT to nix-build); Nix < 2.35 SIGKILLs the hook, so nsh's reaper must
#      scancel (as alice);
#  (b) SIGKILL of the hook alone: its reaper sees the pipe close without "done" and scancels;
#  (c) Ctrl-C again, with the commands on the login host (login-host = node1): the reaper's
#      scancel goes there too.
# Each time, as for the REST backend (t14, t15): the job leaves the queue within 10 s, nix-build
# fails, no agent of the job is left on the nodes, and the output is neither registered nor on
# disk. Reports the time from the signal to the job's end.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/lib_faults.sh"
. "$(dirname "$0")/lib_pbs.sh"
. "$(dirname "$0")/lib_alice.sh"
. "$(dirname "$0")/lib_slurm_cli.sh"

BG="" job=""
JOBS_AT_START=$(all_job_ids)
cleanup() {
  stop_bg_and_job
  cancel_new_jobs "$JOBS_AT_START"
  alice_teardown
  on_submit rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

slurm_cli_require_layout
alice_setup

SUBMITTED_TO="Slurm's commands"   # for started (lib_faults.sh)
declare -A MS

# (a) SIGINT to nix-build
slurm_cli_env alice
start_ticking_build cli-sigint 30
unset BUILD_ENV
started cli-sigint
pid=$(bg_pid)
t=$(date +%s%N)
on_submit kill -INT "$pid"
gone cli-sigint SIGINT "$t"

# (b) SIGKILL of the hook: a child of nix-build running `nsh <verbosity>` (argv[0] "nsh")
slurm_cli_env alice
start_ticking_build cli-sigkill-hook 30
unset BUILD_ENV
started cli-sigkill-hook
nb=$(bg_pid)
hooks=$(on_submit pgrep -P "$nb" -f '(^|/)nsh [0-9]+$' || true)
[ "$(wc -w <<<"$hooks")" = 1 ] || fail "expected one hook under nix-build $nb, found: '$hooks'"
t=$(date +%s%N)
on_submit kill -KILL "$hooks"
gone cli-sigkill-hook "SIGKILL of the hook" "$t"

# (c) SIGINT, commands on the login host
slurm_cli_env login
start_ticking_build cli-sigint-login 30
unset BUILD_ENV
started cli-sigint-login
assert_line_has cli-sigint-login "as job $job to Slurm's commands" "login host $LOGIN_HOST"
pid=$(bg_pid)
t=$(date +%s%N)
on_submit kill -INT "$pid"
gone cli-sigint-login "SIGINT (login host)" "$t"

say "ok: sbatch job gone after SIGINT in ${MS[cli-sigint]} ms, after SIGKILL of the hook in ${MS[cli-sigkill-hook]} ms, after SIGINT with the login host in ${MS[cli-sigint-login]} ms"
assert_no_live_jobs
