#!/bin/bash
# Jobs as a normal user, as on a real cluster: alice's token, a state dir alice owns, SSH to
# the nodes as alice. (nsh runs as root here, so root's ssh config names the user; the
# `Match exec` block below applies only when the hook's environment asks for it.)
#  1. remote-store = auto: the node's Nix daemon does not trust alice and refuses unsigned
#     inputs; nix-build fails with that reason and what to do about it, no job is left.
#  2. remote-store = a store alice owns on the node's disk: the build works.
. "$(dirname "$0")/lib.sh"

STATE=/home/alice/nsh-state   # /home is the same directory on every testbed host
RSTORE=/scratch/alice/nix
on_submit sh -c "mkdir -p $STATE && chown alice:alice $STATE && chmod 0700 $STATE"
for n in node1 node2; do on "$n" sh -c "mkdir -p $RSTORE && chown -R alice:alice /scratch/alice"; done
# The test in a script: OpenSSH 9.2 (bookworm) cannot parse quotes inside `Match exec`.
on_submit sh -c 'printf "#!/bin/sh\ntest \"\$NSH_E2E_SSH_USER\" = alice\n" > /root/.ssh/nsh-e2e-as-alice &&
  chmod 0755 /root/.ssh/nsh-e2e-as-alice &&
  { grep -q nsh-e2e-as-alice /root/.ssh/config 2>/dev/null ||
    printf "Match exec /root/.ssh/nsh-e2e-as-alice\n  User alice\n" >> /root/.ssh/config; }'
on_submit ssh -o BatchMode=yes node1 true || fail "root's ssh config is broken"

{ prelude; cat <<'NIX'
let input = mk { name = "user-input"; script = "echo from-submit > $out"; };
in mk { name = "user-job"; requiredSystemFeatures = [ "nsh" ];
        script = "read x < ${input}; echo \"$x, built on the node\" > $out"; }
NIX
} | put_file "$WORK/user.nix"
build_input_locally "$WORK/user.nix" user-input

conf() { printf 'slurm-jwt-token = %s\nslurm-state-dir = %s\n%s' \
  "$(on_submit cat "$NSH_TB_TOKEN_ALICE")" "$STATE" "$1"; }

BUILD_ENV=(NSH_CONFIG="$(conf '')" NSH_RUNTIME_DIR="$WORK/rt" NSH_E2E_SSH_USER=alice)
nsh_build untrusted "$WORK/user.nix"
unset BUILD_ENV
[ "$BUILD_RC" != 0 ] || fail "alice's inputs were accepted by a daemon that does not trust her"
assert_log untrusted "lacks a (valid )?signature"
assert_log untrusted "add that user to trusted-users"
assert_no_live_jobs
say "ok: untrusted user: $(grep -a -m1 -oE 'the Nix daemon refused [^ ]+' "$LOGS/untrusted.log")"

BUILD_ENV=(NSH_CONFIG="$(conf "remote-store = $RSTORE")" NSH_RUNTIME_DIR="$WORK/rt" NSH_E2E_SSH_USER=alice)
nsh_build owned "$WORK/user.nix"
unset BUILD_ENV
assert_rc 0 owned
out=$(out_paths owned | tail -n1)
on_submit nix-store --verify-path "$out" || fail "$out is not valid locally"
content=$(on_submit cat "$out")
[ "$content" = "from-submit, built on the node" ] || fail "wrong content in $out: $content"
[ "$(on_submit stat -c %U "$STATE/agents")" = alice ] || fail "the agent was not uploaded as alice"
node=$(job_node owned)
on "$node" nix-store --store "$RSTORE" --check-validity "$out" 2>/dev/null || fail "$out is not in $RSTORE on $node"
assert_no_live_jobs
on_submit sh -c 'for s in "$1"/ssh/.ssh-connection*/master; do [ -S "$s" ] && ssh -S "$s" -O exit x 2>/dev/null; done; true' sh "$WORK/rt" || true
say "ok: alice's job on $node with her own store: $out ($content)"
