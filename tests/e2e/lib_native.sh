# tests/e2e/lib_native.sh -- helpers for the slurm-native tests (t45, t46), sourced after
# lib.sh. The hook runs as root and submits through libslurm for alice (job-user), as under
# nix-daemon; alice's jobs need a state dir and a store she owns, and nsh's SSH to the
# nodes as alice (root's ssh config: a `Match exec` block that applies while the flag file
# exists, so it holds for a hook under nix-daemon too, whose environment the test cannot set).

NATIVE_STATE=/home/alice/nsh-state   # /home is the same directory on every testbed host
NATIVE_STORE=/scratch/alice/nix
SSH_FLAG=/run/nsh-e2e-ssh-as-alice
# nsh's SSH masters as alice, apart from root's own (short: a socket path has ~100 bytes)
NATIVE_RT=/run/nsh-e2e-rt-alice

# native_setup: alice's state dir and stores, and root's SSH to the nodes as alice.
native_setup() {
  on_submit sh -c "mkdir -p $NATIVE_STATE && chown alice:alice $NATIVE_STATE && chmod 0700 $NATIVE_STATE"
  for n in node1 node2; do on "$n" sh -c "mkdir -p $NATIVE_STORE && chown -R alice:alice /scratch/alice"; done
  # A script: OpenSSH 9.2 (bookworm) cannot parse quotes inside `Match exec`.
  on_submit sh -c "printf '#!/bin/sh\ntest -e $SSH_FLAG\n' > /root/.ssh/nsh-e2e-flag-as-alice &&
    chmod 0755 /root/.ssh/nsh-e2e-flag-as-alice &&
    { grep -q nsh-e2e-flag-as-alice /root/.ssh/config 2>/dev/null ||
      printf 'Match exec /root/.ssh/nsh-e2e-flag-as-alice\n  User alice\n' >> /root/.ssh/config; }"
  on_submit touch "$SSH_FLAG"
  [ "$(on_submit ssh -o BatchMode=yes node1 id -un)" = alice ] || fail "root's ssh to node1 does not log in as alice"
}

# native_teardown: root's SSH to the nodes as itself again; alice's masters closed.
native_teardown() {
  on_submit rm -f "$SSH_FLAG" || true
  on_submit sh -c 'for s in "$1"/ssh/.ssh-connection*/master*; do [ -S "$s" ] && ssh -S "$s" -O exit x 2>/dev/null; done; rm -rf "$1"' sh "$NATIVE_RT" || true
}

# close_root_masters: ends the masters in root's default runtime dir, which a hook under
# nix-daemon (no NSH_RUNTIME_DIR) used while root's ssh logged in as alice; later tests must
# not reuse them.
close_root_masters() {
  on_submit sh -c 'for d in /root/.cache/nsh /run/user/0/nsh; do for s in "$d"/ssh/.ssh-connection*/master*; do [ -S "$s" ] && ssh -S "$s" -O exit x 2>/dev/null; done; done; true' || true
}

# native_conf [EXTRA-LINES]: nsh.conf text for slurm-native as alice, plus EXTRA-LINES.
native_conf() {
  printf 'job-scheduler = slurm-native\nstate-dir = %s\nremote-store = %s\njob-user = alice\n%s' \
    "$NATIVE_STATE" "$NATIVE_STORE" "${1:-}"
}

# native_env [EXTRA-LINES]: BUILD_ENV (see nsh_build) for slurm-native.
native_env() { BUILD_ENV=(NSH_CONFIG="$(native_conf "${1:-}")" NSH_RUNTIME_DIR="$NATIVE_RT"); }

# assert_native_job NAME: NAME's log says its derivation went to slurmctld through libslurm;
# sets NATIVE_JOB to the (last) job's id.
assert_native_job() {
  assert_log "$1" 'nsh: submitted /nix/store/[^ ]+\.drv as job [0-9]+ to slurmctld through libslurm \(Slurm [0-9]+\.[0-9]+\)'
  NATIVE_JOB=$(grep -oE 'as job [0-9]+ to slurmctld' "$LOGS/$1.log" | awk '{print $3}' | tail -n1)
  [ -n "$NATIVE_JOB" ] || fail "$1: no job id in the log"
}
