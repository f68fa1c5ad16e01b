#!/bin/bash
# docs/deploying.md, step by step, as far as the testbed allows: nodes without Nix (a
# relocatable Nix in a shared directory, a store alice owns on node-local /scratch), nsh in
# the nix-daemon's nix.conf (NIX_CONFIG on Nix 2.25-2.33), alice (not a trusted user) running nix-build through the daemon,
# root's ssh config logging in as alice with node2 reachable only through node1 (ProxyJump;
# `private-link on`: submit has no route to node2's address there), host keys gathered in bulk
# through the login host into root's known_hosts (the global one is not used), the job pinned
# to node2 by the admin's slurm-extra-submission-params. Asserts:
#  1. without the daemon's config, alice's `--option build-hook` is ignored (Nix >= 2.22 warns
#     so; 2.8 says nothing) and nothing is submitted;
#  2. before the bulk step, ssh to node2 fails on its host key; after it, it logs in as alice
#     on node2 through node1;
#  3. on Nix 2.25-2.33, build-hook in the daemon's nix.conf is ignored (nothing submitted),
#     so there the hook goes in the daemon's NIX_CONFIG (`daemon-hook env`). Alice's build
#     succeeds on node2 with the right content, and the CPUs and memory of the guide's example
#     shape for this REST version; her output is valid in the local store. The daemon does not
#     re-read nix.conf: after the line is removed, without a restart, builds still use nsh;
#  4. the same config without ProxyJump fails, naming the connection problem, and leaves no job;
#  5. a login host that takes no new logins (a stand-in for MFA: root's key is accepted there
#     only from node1's own private address, i.e. for the hop on to node2) works while a
#     ControlPersist master to it, opened by hand with ControlPath in root's config, is up (the
#     ProxyJump hop reuses it), and fails (cannot open an SSH connection) once that master is gone.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/lib_alice.sh"   # ALICE_STATE, ALICE_STORE, close_root_masters
. "$(dirname "$0")/lib_pbs.sh"     # all_job_ids, new_job_ids, job_field, cancel_new_jobs

PRIV=$NSH_TB_PRIVATE_NODE2_IP
RELOC=$NSH_TB_NIX_RELOC
DAEMON_DIR=/etc/nsh-testbed/daemon-hook
AWORK=/home/alice/e2e-$TEST-$NONCE
TAG=$(printf %s "$NONCE" | sha256sum | cut -c1-8)
JOBS_AT_START=$(all_job_ids)
SAVED=(/root/.ssh/config /root/.ssh/known_hosts /home/alice/.ssh/authorized_keys)
CM=/root/.ssh/cm-t50-%C   # the hand-opened master's socket (ssh expands %C)

# Pinning to node2: the admin's required_nodes; v0.0.38 (Slurm 22.05) refuses that key
# ("Disabled key"), so there node1 is drained for the test instead.
if [ "$NSH_TB_REST_VERSION" = v0.0.38 ]; then PIN=''; else PIN='slurm-extra-submission-params = {"required_nodes": ["node2"]}'; fi
cleanup() {
  cancel_new_jobs "$JOBS_AT_START"
  [ -n "$PIN" ] || on_submit scontrol update NodeName=node1 State=RESUME >/dev/null 2>&1 || true
  "${TB[@]}" daemon-hook off >/dev/null 2>&1 || echo "  [$TEST] WARNING: daemon-hook off failed" >&2
  close_root_masters
  on_submit sh -c 'for s in /root/.ssh/cm-t50-*; do [ -S "$s" ] && ssh -S "$s" -O exit x 2>/dev/null; done; true' || true
  local f
  for f in "${SAVED[@]}"; do
    # cat into place: the file keeps its owner and mode (authorized_keys is alice's)
    on_submit sh -c "if [ -e '$f.t50-saved' ]; then cat '$f.t50-saved' > '$f' && rm -f '$f.t50-saved'; else rm -f '$f'; fi" || true
  done
  "${TB[@]}" nix-on-nodes on >/dev/null 2>&1 || echo "  [$TEST] WARNING: nix-on-nodes on failed" >&2
  "${TB[@]}" private-link off >/dev/null 2>&1 || echo "  [$TEST] WARNING: private-link off failed" >&2
  on_submit rm -rf "$AWORK" || true
}
trap cleanup EXIT
trap 'exit 130' INT TERM
for f in "${SAVED[@]}"; do on_submit sh -c "[ ! -e '$f' ] || cp -p '$f' '$f.t50-saved'"; done

# The build as alice, through the daemon (she cannot do otherwise: the store is root's).
alice_build() {
  local name=$1; shift
  set +e
  on_submit su alice -c "cd && timeout ${BUILD_TIMEOUT:-300} nix-build --no-out-link $*" \
    >"$LOGS/$name.log" 2>&1
  BUILD_RC=$?
  set -e
}

if [ "$NSH_TB_REST_VERSION" = v0.0.38 ]; then mem=1000; else mem='{ set = true; number = 1000; }'; fi
on_submit su alice -c "mkdir -p $AWORK && cat > $AWORK/guide.nix" <<NIX
$(prelude)
let job = name: mk { name = "\${name}-$TAG"; requiredSystemFeatures = [ "nsh" ];
  extraSlurmParams = builtins.toJSON { cpus_per_task = 2; memory_per_node = $mem; };
  script = "echo built-by-alice; echo guide > \$out"; };
in { ignored = job "ignored"; lost = job "lost"; ok = job "ok"; reread = job "reread"; direct = job "direct";
     mfa = job "mfa"; nomaster = job "nomaster"; badconf = job "badconf"; }
NIX

# 1. alice's --option build-hook, the daemon without nsh in its nix.conf
"${TB[@]}" daemon-hook off >/dev/null
before=$(all_job_ids)
BUILD_TIMEOUT=120 alice_build ignored "$AWORK/guide.nix" -A ignored --option build-hook /opt/nsh/bin/nsh
[ "$BUILD_RC" != 0 ] || fail "ignored: the build succeeded without nsh"
refute_log ignored 'as job [0-9]'
[ -z "$(new_job_ids "$before")" ] || fail "ignored: a job was submitted"
if [ "$(printf '%s\n' 2.22 "$NSH_TB_NIX_VERSION" | sort -V | head -n1)" = 2.22 ]; then  # Nix >= 2.22
  assert_log ignored "ignoring the client-specified setting 'build-hook', because it is a restricted setting and you are not a trusted user"
fi
say "ok: alice's --option build-hook ignored (Nix $NSH_TB_NIX_VERSION): $(grep -a -m1 -E "ignoring the client|required to build" "$LOGS/ignored.log" | cut -c1-140)"

# Nodes without Nix; node2 reachable only through node1; alice's dirs.
"${TB[@]}" nix-on-nodes off >/dev/null 2>&1
"${TB[@]}" private-link on >/dev/null 2>&1
on_submit sh -c "! timeout 5 bash -c 'exec 3<>/dev/tcp/$PRIV/22' 2>/dev/null" || fail "submit reaches $PRIV directly"
for n in node1 node2; do
  if on "$n" /usr/bin/nix --version >/dev/null 2>&1; then fail "the system Nix on $n is still usable"; fi
  on "$n" sh -c "mkdir -p $ALICE_STORE && chown -R alice:alice /scratch/alice"
done
on_submit sh -c "mkdir -p $ALICE_STATE && chown alice:alice $ALICE_STATE && chmod 0700 $ALICE_STATE"

# Root's ssh config (the guide's block; UserKnownHostsFile only, no global file).
ssh_config() {
  local jump=$1 master=${2:-}
  printf '%s\n' 'Host node1' '  User alice' '  IdentityFile /root/.ssh/id_ed25519' \
    ${master:+'  ControlMaster auto' "  ControlPath $CM" '  ControlPersist 600'} \
    '  UserKnownHostsFile /root/.ssh/known_hosts' '  GlobalKnownHostsFile /dev/null' \
    'Host node2' "  HostName $PRIV" '  HostKeyAlias node2' ${jump:+"  ProxyJump $jump"} \
    '  User alice' '  IdentityFile /root/.ssh/id_ed25519' \
    '  UserKnownHostsFile /root/.ssh/known_hosts' '  GlobalKnownHostsFile /dev/null'
}
ssh_config node1 | on_submit sh -c 'cat > /root/.ssh/config && chmod 0600 /root/.ssh/config'
on_submit rm -f /root/.ssh/known_hosts
close_root_masters

# 2. host keys: none yet; the login host's, then every node's through it
set +e
msg=$(on_submit ssh -o BatchMode=yes node2 true 2>&1)
rc=$?
set -e
[ $rc != 0 ] || fail "ssh node2 worked before any host key was recorded"
[[ $msg == *"Host key verification failed"* ]] || fail "ssh node2 without known hosts: $msg"
on_submit sh -c 'ssh-keyscan -t ed25519 node1 2>/dev/null >> /root/.ssh/known_hosts'
on_submit sh -c 'echo node2 > /root/nodes.txt && ssh node1 ssh-keyscan -t ed25519 -f - < /root/nodes.txt 2>/dev/null >> /root/.ssh/known_hosts; rm -f /root/nodes.txt'
[ "$(on_submit grep -c '^node2 ssh-ed25519 ' /root/.ssh/known_hosts)" = 1 ] || fail "no key for node2 gathered through node1"
who=$(on_submit ssh -o BatchMode=yes node2 'echo $(id -un)@$(cat /proc/sys/kernel/hostname)')
[ "$who" = alice@node2 ] || fail "ssh node2 through node1 is '$who', expected alice@node2"
say "ok: host keys gathered through node1; ssh node2 (via $PRIV) is $who"

# 3. the daemon's nix.conf and nsh.conf, alice's build on node2. Nix 2.25-2.33 lose
# nix.conf's build-hook (checked first), so there the guide puts it in the daemon's NIX_CONFIG.
daemon_nsh_conf() {
  { on_submit cat /etc/nix/nsh.conf | grep -v '^slurm-jwt-token'
    printf '%s\n' "slurm-jwt-token = $(on_submit cat "$NSH_TB_TOKEN_ALICE")" \
      "state-dir = $ALICE_STATE" "remote-store = $ALICE_STORE" "remote-nix-bin-dir = $RELOC" \
      'mandatory-system-features = nsh' "$PIN"
  } | on_submit sh -c "rm -f $DAEMON_DIR/nsh.conf && umask 077 && cat > $DAEMON_DIR/nsh.conf"
}
[ -n "$PIN" ] || on_submit scontrol update NodeName=node1 State=DRAIN Reason=t50-pin
nix_at_least() { [ "$(printf '%s\n' "$1" "$NSH_TB_NIX_VERSION" | sort -V | head -n1)" = "$1" ]; }
MODE=on
if nix_at_least 2.25 && ! nix_at_least 2.34; then
  MODE=env
  "${TB[@]}" daemon-hook on >/dev/null
  daemon_nsh_conf
  before=$(all_job_ids)
  BUILD_TIMEOUT=120 alice_build lost "$AWORK/guide.nix" -A lost
  [ "$BUILD_RC" != 0 ] || fail "lost: built without nsh?"
  refute_log lost 'as job [0-9]'
  [ -z "$(new_job_ids "$before")" ] || fail "lost: a job was submitted"
  say "ok: Nix $NSH_TB_NIX_VERSION ignores build-hook in the daemon's nix.conf: $(grep -a -m1 'required to build' "$LOGS/lost.log" | cut -c1-100)"
fi
"${TB[@]}" daemon-hook $MODE >/dev/null
daemon_nsh_conf
alice_build ok "$AWORK/guide.nix" -A ok
assert_rc 0 ok
assert_log ok '^built-by-alice'
assert_log ok 'job [0-9]+ is running on node2'
job=$(job_ids ok | tail -n1)
out=$(out_paths ok | tail -n1)
[ -n "$out" ] || fail "ok: no output path printed"
on_submit nix-store --verify-path "$out" || fail "$out is not valid"
[ "$(on_submit cat "$out")" = guide ] || fail "wrong content in $out"
user=$(job_field "$job" UserId); cpus=$(job_field "$job" NumCPUs); mem=$(job_field "$job" MinMemoryNode)
[[ $user == alice* ]] || fail "job $job runs as '$user', expected alice"
[ "$cpus" = 2 ] || fail "job $job has NumCPUs=$cpus, expected 2"
[ "$mem" = 1000M ] || fail "job $job has MinMemoryNode=$mem, expected 1000M"
[ "$(job_field "$job" NodeList)" = node2 ] || fail "job $job ran on $(job_field "$job" NodeList), expected node2"
say "ok: alice's build $out through the daemon, job $job on node2 (UserId=$user NumCPUs=$cpus MinMemoryNode=$mem)"

# 3b. the daemon read nix.conf when it started and does not again: with the build-hook line
# gone but no restart, alice's next build still goes through nsh
if [ $MODE = on ]; then
  on_submit sed -i '/^build-hook/d' "$DAEMON_DIR/nix.conf"
  alice_build reread "$AWORK/guide.nix" -A reread
  assert_rc 0 reread
  assert_log reread 'as job [0-9]+'
  say "ok: build-hook removed from the daemon's nix.conf, no restart: still built through nsh (job $(job_ids reread | tail -n1))"
fi

# 3c. an error before nsh takes the build (here: the daemon's nsh.conf) reaches alice's
# nix-build, not only the daemon's stderr (nsh sends it as an @nix message)
on_submit sh -c "echo 'slurm-api-hots = x' >> $DAEMON_DIR/nsh.conf"
before=$(all_job_ids)
BUILD_TIMEOUT=120 alice_build badconf "$AWORK/guide.nix" -A badconf
[ "$BUILD_RC" != 0 ] || fail "badconf: built with a broken nsh.conf"
assert_log badconf "unknown setting 'slurm-api-hots' \\(did you mean 'slurm-api-host'\\?\\)"
[ -z "$(new_job_ids "$before")" ] || fail "badconf: a job was submitted"
daemon_nsh_conf
say "ok: a config error under the daemon shows in alice's nix-build: $(grep -a -m1 -F "slurm-api-hots" "$LOGS/badconf.log" | cut -c1-160)"

# 4. negative control: no ProxyJump
ssh_config "" | on_submit sh -c 'cat > /root/.ssh/config'
close_root_masters
before=$(all_job_ids)
BUILD_TIMEOUT=180 alice_build direct "$AWORK/guide.nix" -A direct
[ "$BUILD_RC" != 0 ] || fail "direct: built without ProxyJump"
[ "$BUILD_RC" != 124 ] || fail "direct: nix-build hung"
assert_log direct "node2"
assert_log direct "Network is unreachable"
new=$(new_job_ids "$before")
[ -n "$new" ] || fail "direct: no job was submitted (expected one, then cancelled)"
assert_jobs_gone 30 $new
say "ok: without ProxyJump: $(grep -a -m1 -E 'Network is unreachable' "$LOGS/direct.log" | cut -c1-160)"

# 5. the login host takes no new logins; a master opened by hand (while it still did) carries
# the ProxyJump hop
ssh_config node1 master | on_submit sh -c 'cat > /root/.ssh/config'
close_root_masters
on_submit ssh -o BatchMode=yes -fN node1
on_submit ssh -O check node1 2>/dev/null || fail "no master to node1 after ssh -fN"
pub=$(on_submit cut -d' ' -f2 /root/.ssh/id_ed25519.pub)
on_submit sh -c "sed 's|^ssh-ed25519 $pub|from=\"$NSH_TB_PRIVATE_NODE1_IP\" &|' /home/alice/.ssh/authorized_keys.t50-saved > /home/alice/.ssh/authorized_keys"
if on_submit ssh -o BatchMode=yes -o ControlPath=none node1 true 2>/dev/null; then fail "node1 still takes new logins"; fi
alice_build mfa "$AWORK/guide.nix" -A mfa
assert_rc 0 mfa
assert_log mfa 'job [0-9]+ is running on node2'
say "ok: login host refusing new logins: built through the hand-opened master (job $(job_ids mfa | tail -n1))"
on_submit ssh -O exit node1 2>/dev/null
close_root_masters
before=$(all_job_ids)
BUILD_TIMEOUT=180 alice_build nomaster "$AWORK/guide.nix" -A nomaster
[ "$BUILD_RC" != 0 ] || fail "nomaster: built with no master and node1 refusing logins"
assert_log nomaster "cannot open an SSH connection to 'node2'"
new=$(new_job_ids "$before")
[ -z "$new" ] || assert_jobs_gone 30 $new
say "ok: once the master is gone: $(grep -a -m1 -F "cannot open an SSH connection to 'node2'" "$LOGS/nomaster.log" | cut -c1-200)"
assert_no_live_jobs
