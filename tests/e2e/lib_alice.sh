# tests/e2e/lib_alice.sh -- jobs for alice while the hook runs as root (job-user = alice, as
# under nix-daemon), sourced after lib.sh by the slurm-cli and slurm-native tests: a state dir
# and a store she owns (the nodes' daemons do not trust her unsigned inputs, as in t26), and
# nsh's SSH to the nodes as alice (root's ssh config: a `Match exec` block that applies while a
# flag file exists, so it holds for a hook under nix-daemon too, whose environment a test
# cannot set), with her masters in their own runtime dir.

ALICE_STATE=/home/alice/nsh-state   # /home is the same directory on every testbed host
ALICE_STORE=/scratch/alice/nix
SSH_FLAG=/run/nsh-e2e-ssh-as-alice
# nsh's SSH masters as alice, apart from root's own (short: a socket path has ~100 bytes)
ALICE_RT=/run/nsh-e2e-rt-alice

# alice_setup: alice's state dir and stores, and root's ssh config logging in to the nodes as
# alice when the hook's environment has NSH_E2E_SSH_USER=alice (as t26 does) or, for a hook
# under nix-daemon, while the flag file exists (alice_ssh_always).
alice_setup() {
  on_submit sh -c "mkdir -p $ALICE_STATE && chown alice:alice $ALICE_STATE && chmod 0700 $ALICE_STATE"
  for n in node1 node2; do on "$n" sh -c "mkdir -p $ALICE_STORE && chown -R alice:alice /scratch/alice"; done
  # Scripts: OpenSSH 9.2 (bookworm) cannot parse quotes inside `Match exec`.
  on_submit sh -c "printf '#!/bin/sh\ntest -e $SSH_FLAG || test \"\$NSH_E2E_SSH_USER\" = alice\n' > /root/.ssh/nsh-e2e-flag-as-alice &&
    chmod 0755 /root/.ssh/nsh-e2e-flag-as-alice &&
    { grep -q nsh-e2e-flag-as-alice /root/.ssh/config 2>/dev/null ||
      printf 'Match exec /root/.ssh/nsh-e2e-flag-as-alice\n  User alice\n' >> /root/.ssh/config; }"
  [ "$(on_submit env NSH_E2E_SSH_USER=alice ssh -o BatchMode=yes node1 id -un)" = alice ] ||
    fail "root's ssh to node1 does not log in as alice"
}

# alice_ssh_always: root's SSH to the nodes logs in as alice whatever the environment (until
# alice_teardown).
alice_ssh_always() {
  on_submit touch "$SSH_FLAG"
  [ "$(on_submit ssh -o BatchMode=yes node1 id -un)" = alice ] || fail "root's ssh to node1 does not log in as alice"
}

# alice_teardown: root's SSH to the nodes as itself again; alice's masters closed.
alice_teardown() {
  on_submit rm -f "$SSH_FLAG" || true
  on_submit sh -c 'for s in "$1"/ssh/.ssh-connection*/master*; do [ -S "$s" ] && ssh -S "$s" -O exit x 2>/dev/null; done; rm -rf "$1"' sh "$ALICE_RT" || true
}

# close_root_masters: ends the masters in root's default runtime dir, which a hook under
# nix-daemon (no NSH_RUNTIME_DIR) used while root's ssh logged in as alice; later tests must
# not reuse them.
close_root_masters() {
  on_submit sh -c 'for d in /root/.cache/nsh /run/user/0/nsh; do for s in "$d"/ssh/.ssh-connection*/master*; do [ -S "$s" ] && ssh -S "$s" -O exit x 2>/dev/null; done; done; true' || true
}

