#!/bin/bash
# Per-derivation parameters ask for resources, never for control (spec: trust). With nsh as
# the nix-daemon's own build hook (nix.conf), the unprivileged user alice builds:
#  1. a derivation whose extraSlurmParams set one of nsh's own job fields (script,
#     environment, output paths, working directory, user/group) fails, names the key, submits
#     no job and creates no file;
#  2. a key outside the allowed set fails the same way and lists the allowed set;
#  3. an allowed key (cpus_per_task = 2) reaches the job (CPUs/Task=2 in scontrol show job).
. "$(dirname "$0")/lib.sh"

TAG=$(printf %s "$NONCE" | sha256sum | cut -c1-10)
AW=/home/alice/e2e-$TEST-$NONCE          # alice must read the expression
PWN=/var/lib/nsh-state/pwned-$TAG         # what a hijacked job would write (root's state dir)
on_submit sh -c "mkdir -p $AW && chown alice: $AW"

restore() { "${TB[@]}" daemon-hook off >/dev/null 2>&1 || true; on_submit rm -rf "$AW"; }
trap restore EXIT
"${TB[@]}" daemon-hook on >/dev/null

# as_alice NAME ATTR: nix-build -A ATTR as alice through the daemon (no --option: the daemon
# ignores build-hook from an untrusted client; its own nix.conf names nsh).
as_alice() {
  set +e
  on_submit timeout 120 su -s /bin/sh alice -c \
    "NIX_REMOTE=daemon nix-build $AW/params.nix --no-out-link -A $2" >"$LOGS/$1.log" 2>&1
  BUILD_RC=$?
  set -e
}

forbidden=(script environment standard_output standard_error current_working_directory user_id group_id)
{ prelude; cat <<NIX
let
  pwn = "#!/bin/sh\nid > $PWN\n";
  bad = key: value: mk { name = "jp-\${key}-$TAG"; requiredSystemFeatures = [ "nsh" ];
    extraSlurmParams = builtins.toJSON { cpus_per_task = 1; \${key} = value; };
    script = "echo should-not-build > \$out"; };
in {
  script = bad "script" pwn;
  environment = bad "environment" [ "LD_PRELOAD=$PWN.so" "PATH=/tmp" ];
  standard_output = bad "standard_output" "$PWN";
  standard_error = bad "standard_error" "$PWN";
  current_working_directory = bad "current_working_directory" "/var/lib/nsh-state";
  user_id = bad "user_id" "0";
  group_id = bad "group_id" "0";
  mail = bad "mail_user" "root@localhost";
  two = mk { name = "jp-two-$TAG"; requiredSystemFeatures = [ "nsh" ];
    extraSlurmParams = builtins.toJSON { cpus_per_task = 2; };
    script = "echo two > \$out"; };
}
NIX
} | put_file "$AW/params.nix"
on_submit chown alice: "$AW/params.nix"

submitted() { on_submit scontrol show job -o 2>/dev/null | grep -c "JobName=nsh-jp-$1-$TAG" || true; }

for key in "${forbidden[@]}"; do
  as_alice "$key" "$key"
  [ "$BUILD_RC" != 0 ] || fail "$key: alice's build succeeded"
  [ "$BUILD_RC" != 124 ] || fail "$key: nix-build hung"
  assert_log "$key" "extraSlurmParams' sets \`$key\`, which nsh sets itself"
  refute_log "$key" 'as job [0-9]'
  [ "$(submitted "$key")" = 0 ] || fail "$key: a job was submitted"
  say "ok: $key refused: $(grep -a -m1 -o "'extraSlurmParams' sets [^,]*" "$LOGS/$key.log")"
done

as_alice mail mail
[ "$BUILD_RC" != 0 ] || fail "mail: alice's build succeeded"
assert_log mail "sets \`mail_user\`, which derivations may not set"
assert_log mail 'Allowed: cpus_per_task, .*partition, qos, account'
[ "$(submitted mail_user)" = 0 ] || fail "mail_user: a job was submitted"
say "ok: mail_user refused, allowed set listed"

for n in submit node1 node2; do
  if on "$n" sh -c "ls $PWN* 2>/dev/null" | grep -q .; then fail "a hijacked job wrote $PWN on $n"; fi
done
say "ok: no $PWN* on any host"

as_alice two two
assert_rc 0 two
job=$(job_ids two | tail -n1)
[ -n "$job" ] || fail "two: no job id in the output"
c=$(on_submit scontrol show job "$job" | grep -oE 'CPUs/Task=[0-9]+' | head -n1 | cut -d= -f2)
[ "$c" = 2 ] || fail "two: job $job has CPUs/Task=$c, expected 2"
say "ok: cpus_per_task = 2 reached job $job as the daemon's hook for alice"
assert_no_live_jobs
