# tests/e2e/lib_pbs.sh -- helpers for the PBS backend's tests (t39–t41), sourced after
# lib.sh. The testbed has no PBS: Debian's Torque-compatible wrappers (qsub, qstat, qdel
# over Slurm) stand in. They live in /opt/torque/bin, off every host's PATH; node1 also
# shows them at /opt/torque-login/bin, which is empty on submit (scripts/testbed), so a
# build that finds them there ran its commands on node1. Their jobs are Slurm jobs: squeue
# and scontrol on submit see them.

TORQUE_BIN=${NSH_TB_TORQUE_BIN:-}
TORQUE_LOGIN_BIN=${NSH_TB_TORQUE_LOGIN_BIN:-}
LOGIN_HOST=${NSH_TB_LOGIN_HOST:-}

# The testbed must have the layout above (a testbed brought up before it lacks the env
# names or the diversion: `scripts/testbed up` again updates it in place).
pbs_require_layout() {
  [ -n "$TORQUE_BIN" ] && [ -n "$TORQUE_LOGIN_BIN" ] && [ -n "$LOGIN_HOST" ] ||
    fail "the testbed's env has no NSH_TB_TORQUE_BIN/NSH_TB_TORQUE_LOGIN_BIN/NSH_TB_LOGIN_HOST: run scripts/testbed up again"
  on_submit test -x "$TORQUE_BIN/qsub" || fail "no $TORQUE_BIN/qsub on submit: run scripts/testbed up again"
  ! on_submit sh -c 'command -v qsub' >/dev/null ||
    fail "qsub is on submit's PATH ($(on_submit sh -c 'command -v qsub')): a local fallback could pass"
  ! on_submit test -e "$TORQUE_LOGIN_BIN/qsub" || fail "$TORQUE_LOGIN_BIN/qsub exists on submit"
  on "$LOGIN_HOST" test -x "$TORQUE_LOGIN_BIN/qsub" || fail "no $TORQUE_LOGIN_BIN/qsub on $LOGIN_HOST"
}

# pbs_env local|login|login-dir-only: sets BUILD_ENV (see nsh_build) to the PBS backend with
# the commands on submit, on the login host, or (a negative control) the login host's
# directory without a login host. NSH_CONFIG overrides the testbed's nsh.conf (REST).
pbs_env() {
  local conf
  conf=$(printf 'job-scheduler = pbs\nstate-dir = %s\n' "$NSH_TB_STATE_DIR")
  case $1 in
    # The hook runs as root and submits from submit: root jobs are meant here.
    local) conf+=$(printf '\nscheduler-bin-dir = %s\nallow-root-jobs = true' "$TORQUE_BIN") ;;
    login) conf+=$(printf '\nlogin-host = %s\nscheduler-bin-dir = %s' "$LOGIN_HOST" "$TORQUE_LOGIN_BIN") ;;
    login-dir-only) conf+=$(printf '\nscheduler-bin-dir = %s\nallow-root-jobs = true' "$TORQUE_LOGIN_BIN") ;;
    *) fail "pbs_env: unknown mode '$1'" ;;
  esac
  BUILD_ENV=(NSH_CONFIG="$conf")
}

# Every job id Slurm knows, pending, running or ended (ended ones stay for MinJobAge, 600 s
# on the testbed), one a line, sorted for comm.
all_job_ids() { on_submit scontrol show job -o 2>/dev/null | grep -oE '^JobId=[0-9]+' | cut -d= -f2 | sort || true; }

# new_job_ids BEFORE: ids in all_job_ids now that were not in BEFORE (the output of an
# earlier all_job_ids), i.e. jobs submitted since.
new_job_ids() { comm -13 <(printf '%s\n' "$1" | sed '/^$/d') <(all_job_ids); }

# job_field JOB KEY: KEY's value in `scontrol show job -o JOB` (empty if none).
job_field() { on_submit scontrol show job -o "$1" 2>/dev/null | grep -oE "(^| )$2=[^ ]*" | head -n1 | cut -d= -f2- || true; }

# assert_pbs_job NAME: NAME's log says its derivation went to PBS as a job; sets PBS_JOB to
# the (last) job's id.
assert_pbs_job() {
  assert_log "$1" 'nsh: submitted /nix/store/[^ ]+\.drv as job [0-9]+ to PBS'
  PBS_JOB=$(grep -oE 'as job [0-9]+ to PBS' "$LOGS/$1.log" | awk '{print $3}' | tail -n1)
  [ -n "$PBS_JOB" ] || fail "$1: no job id in the log"
}

# assert_line_has NAME WORD...: one line of NAME's log contains every WORD (fixed strings).
assert_line_has() {
  local name=$1 line w ok
  shift
  while IFS= read -r line; do
    ok=1
    for w in "$@"; do [[ $line == *"$w"* ]] || { ok=0; break; }; done
    [ $ok = 1 ] && return 0
  done <"$LOGS/$name.log"
  tail -n 20 "$LOGS/$name.log" >&2
  fail "$name: no line of the output names all of: $*"
}

# cancel_new_jobs BEFORE: cancels jobs submitted since BEFORE that are still pending or
# running (an EXIT trap's part: nothing of a failed test stays queued).
cancel_new_jobs() {
  local id
  for id in $(new_job_ids "$1"); do
    on_submit scancel "$id" 2>/dev/null || true
  done
}
