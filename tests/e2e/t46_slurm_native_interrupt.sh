#!/bin/bash
# job-scheduler = slurm-native, interrupted while the builder runs (a builder that ticks for
# 30 s), jobs submitted for alice by the root hook:
#  (a) Ctrl-C (SIGINT to nix-build); Nix < 2.35 SIGKILLs the hook, so nsh's reaper, loading
#      libslurm itself, must kill the job;
#  (b) SIGKILL of the hook alone: its reaper sees the pipe close without "done" and kills it.
# Each time, as for the REST backend (t14, t15): the job leaves the queue within 10 s,
# nix-build fails, no agent of the job is left, and the output is neither registered nor on
# disk. Reports the time from the signal to the job's end.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/lib_faults.sh"
. "$(dirname "$0")/lib_alice.sh"
. "$(dirname "$0")/lib_native.sh"
. "$(dirname "$0")/lib_pbs.sh"   # all_job_ids, new_job_ids, cancel_new_jobs

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

alice_setup
alice_ssh_always

SUBMITTED_TO="slurmctld through libslurm"   # for started (lib_faults.sh)
declare -A MS

# (a) SIGINT to nix-build
native_env
start_ticking_build native-sigint 30
unset BUILD_ENV
started native-sigint
pid=$(bg_pid)
t=$(date +%s%N)
on_submit kill -INT "$pid"
gone native-sigint SIGINT "$t"

# (b) SIGKILL of the hook: a child of nix-build running `nsh <verbosity>` (argv[0] "nsh")
native_env
start_ticking_build native-sigkill-hook 30
unset BUILD_ENV
started native-sigkill-hook
nb=$(bg_pid)
hooks=$(on_submit pgrep -P "$nb" -f '(^|/)nsh [0-9]+$' || true)
[ "$(wc -w <<<"$hooks")" = 1 ] || fail "expected one hook under nix-build $nb, found: '$hooks'"
t=$(date +%s%N)
on_submit kill -KILL "$hooks"
gone native-sigkill-hook "SIGKILL of the hook" "$t"

say "ok: libslurm job gone after SIGINT in ${MS[native-sigint]} ms, after SIGKILL of the hook in ${MS[native-sigkill-hook]} ms"
assert_no_live_jobs
