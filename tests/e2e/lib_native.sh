# tests/e2e/lib_native.sh -- helpers for the slurm-native tests (t45, t46), sourced after
# lib.sh and lib_alice.sh. The hook runs as root and submits through libslurm for alice
# (job-user), as under nix-daemon.

# native_conf [EXTRA-LINES]: nsh.conf text for slurm-native as alice, plus EXTRA-LINES.
native_conf() {
  printf 'job-scheduler = slurm-native\nstate-dir = %s\nremote-store = %s\njob-user = alice\n%s' \
    "$ALICE_STATE" "$ALICE_STORE" "${1:-}"
}

# native_env [EXTRA-LINES]: BUILD_ENV (see nsh_build) for slurm-native.
native_env() { BUILD_ENV=(NSH_CONFIG="$(native_conf "${1:-}")" NSH_RUNTIME_DIR="$ALICE_RT"); }

# assert_native_job NAME: NAME's log says its derivation went to slurmctld through libslurm;
# sets NATIVE_JOB to the (last) job's id.
assert_native_job() {
  assert_log "$1" 'nsh: submitted /nix/store/[^ ]+\.drv as job [0-9]+ to slurmctld through libslurm \(Slurm [0-9]+\.[0-9]+\)'
  NATIVE_JOB=$(grep -oE 'as job [0-9]+ to slurmctld' "$LOGS/$1.log" | awk '{print $3}' | tail -n1)
  [ -n "$NATIVE_JOB" ] || fail "$1: no job id in the log"
}
