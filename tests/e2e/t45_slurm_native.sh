#!/bin/bash
# job-scheduler = slurm-native: libslurm, loaded at run time, for alice (job-user) while the
# hook runs as root:
#  1. a build succeeds; `slurmNativeConstraints` reach the job (cpus → NumCPUs, memPerNode →
#     MinMemoryNode, memPerCPU → MinMemoryCPU) and the job is alice's (UserId);
#  2. bad constraints (unknown key, both memory keys, a string, 0, too many CPUs) fail the
#     build, name the attribute, and submit nothing;
#  3. a root hook without job-user (or allow-root-jobs) refuses, naming job-user, no job;
#  4. `nsh check` passes, and stops at the library step when slurm-library names no file;
#  5. through nix-daemon (nsh in its nix.conf, the daemon's own nsh.conf), alice's job again.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/lib_alice.sh"
. "$(dirname "$0")/lib_native.sh"
. "$(dirname "$0")/lib_pbs.sh"   # all_job_ids, new_job_ids, job_field, cancel_new_jobs, assert_line_has

TAG=$(printf %s "$NONCE" | sha256sum | cut -c1-8)
JOBS_AT_START=$(all_job_ids)
DAEMON_DIR=/etc/nsh-testbed/daemon-hook
cleanup() {
  cancel_new_jobs "$JOBS_AT_START"
  "${TB[@]}" daemon-hook off >/dev/null 2>&1 || true
  alice_teardown
  close_root_masters
  on_submit rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

alice_setup
alice_ssh_always

{ prelude; cat <<NIX
let
  bad = key: c: mk { name = "native-bad-\${key}-$TAG"; requiredSystemFeatures = [ "nsh" ];
    slurmNativeConstraints = builtins.toJSON c;
    script = "echo should-not-build > \$out"; };
in {
  node = mk { name = "native-node-$TAG"; requiredSystemFeatures = [ "nsh" ];
    slurmNativeConstraints = builtins.toJSON { cpus = 2; memPerNode = 200; };
    script = "echo hello-from-libslurm; echo done > \$out"; };
  cpu = mk { name = "native-cpu-$TAG"; requiredSystemFeatures = [ "nsh" ];
    slurmNativeConstraints = builtins.toJSON { memPerCPU = 100; };
    script = "echo per-cpu > \$out"; };
  daemon = mk { name = "native-daemon-$TAG"; requiredSystemFeatures = [ "nsh" ];
    slurmNativeConstraints = builtins.toJSON { cpus = 1; };
    script = "echo via-daemon > \$out"; };
  unknown = bad "unknown" { cpus = 1; script = "/tmp/x"; };
  both = bad "both" { memPerNode = 100; memPerCPU = 100; };
  string = bad "string" { cpus = "2"; };
  zero = bad "zero" { memPerNode = 0; };
  many = bad "many" { cpus = 70000; };
}
NIX
} | put_file "$WORK/native.nix"

# 1. builds, and what reached the job
native_env
nsh_build node "$WORK/native.nix" -A node
unset BUILD_ENV
assert_rc 0 node
assert_native_job node
job=$NATIVE_JOB
assert_log node '^hello-from-libslurm'
assert_log node "job $job is running on node[12]"
out=$(out_paths node | tail -n1)
[ -n "$out" ] || fail "node: no output path printed"
on_submit nix-store --verify-path "$out" || fail "$out is not valid"
[ "$(on_submit cat "$out")" = done ] || fail "wrong content in $out"
user=$(job_field "$job" UserId)
[[ $user == alice* ]] || fail "job $job runs as '$user', expected alice (job-user)"
cpus=$(job_field "$job" NumCPUs)
[ "$cpus" = 2 ] || fail "job $job has NumCPUs=$cpus, expected 2 (cpus = 2)"
mem=$(job_field "$job" MinMemoryNode)
[ "$mem" = 200M ] || fail "job $job has MinMemoryNode=$mem, expected 200M (memPerNode = 200)"
say "ok: built $out through libslurm job $job (UserId=$user NumCPUs=$cpus MinMemoryNode=$mem)"

native_env "slurm-conf = /etc/slurm/slurm.conf"
nsh_build cpu "$WORK/native.nix" -A cpu
unset BUILD_ENV
assert_rc 0 cpu
assert_native_job cpu
mem=$(job_field "$NATIVE_JOB" MinMemoryCPU)
[ "$mem" = 100M ] || fail "job $NATIVE_JOB has MinMemoryCPU=$mem, expected 100M (memPerCPU = 100)"
say "ok: memPerCPU reached job $NATIVE_JOB (MinMemoryCPU=$mem), slurm-conf given"

# 2. bad constraints: CASE WORDS (fixed strings one line of the log must hold)
bad_case() {
  local case=$1 before new; shift
  before=$(all_job_ids)
  native_env
  BUILD_TIMEOUT=120 nsh_build "bad-$case" "$WORK/native.nix" -A "$case"
  unset BUILD_ENV
  [ "$BUILD_RC" != 0 ] || fail "bad-$case: the build succeeded"
  [ "$BUILD_RC" != 124 ] || fail "bad-$case: nix-build hung"
  assert_line_has "bad-$case" slurmNativeConstraints "$@" "nothing was submitted"
  refute_log "bad-$case" 'as job [0-9]'
  new=$(new_job_ids "$before")
  [ -z "$new" ] || fail "bad-$case: job(s) submitted: $(echo $new)"
  say "ok: $case refused: $(grep -a -m1 -F slurmNativeConstraints "$LOGS/bad-$case.log" | cut -c1-150)"
}
bad_case unknown "unknown key 'script'"
bad_case both "exclude each other"
bad_case string "not a whole number"
bad_case zero "memPerNode = 0, outside"
bad_case many "cpus = 70000, outside"

# 3. root without job-user
before=$(all_job_ids)
BUILD_ENV=(NSH_CONFIG="$(printf 'job-scheduler = slurm-native\nstate-dir = %s\n' "$ALICE_STATE")")
BUILD_TIMEOUT=120 nsh_build rootjob "$WORK/native.nix" -A daemon
unset BUILD_ENV
[ "$BUILD_RC" != 0 ] || fail "rootjob: a root hook without job-user built"
assert_line_has rootjob "set job-user" "allow-root-jobs"
[ -z "$(new_job_ids "$before")" ] || fail "rootjob: a job was submitted"
say "ok: a root hook without job-user refuses: $(grep -a -m1 -F 'set job-user' "$LOGS/rootjob.log" | cut -c1-120)"

# 4. nsh check
set +e
on_submit env NSH_CONFIG="$(native_conf)" NSH_RUNTIME_DIR="$ALICE_RT" timeout 180 /opt/nsh/bin/nsh check >"$LOGS/check.log" 2>&1
rc=$?
on_submit env NSH_CONFIG="$(native_conf 'slurm-library = /nonexistent/libslurm.so.45')" \
  NSH_RUNTIME_DIR="$ALICE_RT" timeout 60 /opt/nsh/bin/nsh check >"$LOGS/check-nolib.log" 2>&1
rc_nolib=$?
set -e
[ "$rc" = 0 ] || { cat "$LOGS/check.log" >&2; fail "nsh check failed ($rc) with slurm-native"; }
assert_log check '^ok +libslurm of Slurm [0-9]+\.[0-9]+ \(.*libslurm\.so.*\) loaded'
assert_log check '^ok +slurmctld answers libslurm'
assert_log check '^ok +jobs are submitted for job-user alice'
assert_log check '^nsh check: all good'
[ "$rc_nolib" != 0 ] || fail "nsh check passed with a missing slurm-library"
assert_log check-nolib '/nonexistent/libslurm.so.45'
refute_log check-nolib 'slurmctld answers'
say "ok: nsh check passes ($(grep -c '^ok' "$LOGS/check.log") ok lines) and stops at a missing library: $(grep -a -m1 -F /nonexistent "$LOGS/check-nolib.log" | cut -c1-120)"

# 5. under nix-daemon: the daemon's own nsh.conf says slurm-native for alice. The hook then
# uses root's default runtime dir, where earlier tests may have left masters logged in as
# root; close them so its SSH logs in as alice (the Match block above).
close_root_masters
"${TB[@]}" daemon-hook on >/dev/null
on_submit sh -c "rm -f $DAEMON_DIR/nsh.conf && cat > $DAEMON_DIR/nsh.conf && chmod 0644 $DAEMON_DIR/nsh.conf" <<<"$(native_conf)"
BUILD_ENV=(NIX_REMOTE=daemon)
nsh_build daemon "$WORK/native.nix" -A daemon
unset BUILD_ENV
assert_rc 0 daemon
assert_native_job daemon
user=$(job_field "$NATIVE_JOB" UserId)
[[ $user == alice* ]] || fail "daemon: job $NATIVE_JOB runs as '$user', expected alice"
say "ok: under nix-daemon, job $NATIVE_JOB ran as $user"

assert_no_live_jobs
