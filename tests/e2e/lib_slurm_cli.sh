# tests/e2e/lib_slurm_cli.sh -- helpers for job-scheduler = slurm-cli (t42–t44), sourced
# after lib.sh, lib_alice.sh and lib_pbs.sh (all_job_ids, new_job_ids, job_field, assert_line_has,
# cancel_new_jobs). Slurm's clients are on every host's PATH; the login directory
# (NSH_TB_TORQUE_LOGIN_BIN) also holds links to sbatch, squeue, scontrol and scancel on the
# login host only (scripts/testbed), so a build that finds them there ran its commands there.

CLI_LOGIN_BIN=${NSH_TB_TORQUE_LOGIN_BIN:-}
LOGIN_HOST=${NSH_TB_LOGIN_HOST:-}
slurm_cli_require_layout() {
  local c
  [ -n "$CLI_LOGIN_BIN" ] && [ -n "$LOGIN_HOST" ] ||
    fail "the testbed's env has no NSH_TB_TORQUE_LOGIN_BIN/NSH_TB_LOGIN_HOST: run scripts/testbed up again"
  for c in sbatch squeue scontrol scancel; do
    ! on_submit test -e "$CLI_LOGIN_BIN/$c" || fail "$CLI_LOGIN_BIN/$c exists on submit"
    on "$LOGIN_HOST" test -x "$CLI_LOGIN_BIN/$c" ||
      fail "no $CLI_LOGIN_BIN/$c on $LOGIN_HOST: run scripts/testbed up again"
  done
}

# slurm_cli_conf MODE: the nsh.conf text for MODE:
#   alice           commands on submit, job-user = alice, alice's state dir
#   no-job-user     commands on submit as root, neither job-user nor allow-root-jobs
#   login           login-host = the login host, scheduler-bin-dir = its directory
#   login-dir-only  that directory without login-host (allow-root-jobs, so only the
#                   missing commands can stop it)
slurm_cli_conf() {
  local conf
  conf=$(printf 'job-scheduler = slurm-cli\n')
  case $1 in
    alice) conf+=$(printf '\nstate-dir = %s\njob-user = alice\nremote-store = %s' "$ALICE_STATE" "$ALICE_STORE") ;;
    no-job-user) conf+=$(printf '\nstate-dir = %s' "$NSH_TB_STATE_DIR") ;;
    login) conf+=$(printf '\nstate-dir = %s\nlogin-host = %s\nscheduler-bin-dir = %s' \
      "$NSH_TB_STATE_DIR" "$LOGIN_HOST" "$CLI_LOGIN_BIN") ;;
    login-dir-only) conf+=$(printf '\nstate-dir = %s\nscheduler-bin-dir = %s\nallow-root-jobs = true' \
      "$NSH_TB_STATE_DIR" "$CLI_LOGIN_BIN") ;;
    *) fail "slurm_cli_conf: unknown mode '$1'" ;;
  esac
  printf '%s' "$conf"
}

# slurm_cli_env MODE: BUILD_ENV (see nsh_build) for MODE (slurm_cli_conf).
slurm_cli_env() {
  BUILD_ENV=(NSH_CONFIG="$(slurm_cli_conf "$1")")
  if [ "$1" = alice ]; then
    BUILD_ENV+=(NSH_RUNTIME_DIR="$ALICE_RT" NSH_E2E_SSH_USER=alice)
  fi
}

# assert_slurm_job NAME: NAME's log says its derivation went to Slurm as a job; sets
# CLI_JOB to the (last) job's id.
assert_slurm_job() {
  assert_log "$1" 'nsh: submitted /nix/store/[^ ]+\.drv as job [0-9]+ to Slurm'
  CLI_JOB=$(grep -oE 'as job [0-9]+ to Slurm' "$LOGS/$1.log" | awk '{print $3}' | tail -n1)
  [ -n "$CLI_JOB" ] || fail "$1: no job id in the log"
}

# nsh_check NAME MODE: `nsh check` on submit with MODE's config (and environment); output in
# $LOGS/NAME.log, exit status in CHECK_RC.
nsh_check() {
  slurm_cli_env "$2"
  set +e
  on_submit env "${BUILD_ENV[@]}" timeout 180 /opt/nsh/bin/nsh check >"$LOGS/$1.log" 2>&1
  CHECK_RC=$?
  set -e
  unset BUILD_ENV
}
