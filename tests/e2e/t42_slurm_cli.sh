#!/bin/bash
# job-scheduler = slurm-cli with Slurm's commands on submit and job-user = alice (the hook
# runs as root; the jobs are alice's, her state dir, SSH to the nodes as alice):
#  1. a build succeeds: valid output, its log in nix-build's output, the hook names the job
#     and where its commands ran, and the job is alice's (UserId=alice) with the
#     derivation's extraSlurmParams as sbatch options (cpus_per_task = 2 → NumCPUs=2,
#     memory_per_node = 300 → MinMemoryNode=300M);
#  2. bad extraSlurmParams fail the build naming the attribute and the key, and submit
#     nothing: a reserved key (script), a key outside the allowed set, a value that would
#     start another option (partition = "--wrap=…"), and an allowed key sbatch has no
#     option for (tres_per_node);
#  3. with neither job-user nor allow-root-jobs the build fails naming job-user, no job;
#  4. `nsh check` passes with the config of 1.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/lib_pbs.sh"
. "$(dirname "$0")/lib_alice.sh"
. "$(dirname "$0")/lib_slurm_cli.sh"

TAG=$(printf %s "$NONCE" | sha256sum | cut -c1-8)
JOBS_AT_START=$(all_job_ids)
cleanup() {
  cancel_new_jobs "$JOBS_AT_START"
  alice_teardown
  on_submit rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

alice_setup

{ prelude; cat <<NIX
let
  bad = key: params: mk { name = "cli-bad-\${key}-$TAG"; requiredSystemFeatures = [ "nsh" ];
    extraSlurmParams = builtins.toJSON params;
    script = "echo should-not-build > \$out"; };
in {
  good = mk { name = "cli-good-$TAG"; requiredSystemFeatures = [ "nsh" ];
    extraSlurmParams = builtins.toJSON { cpus_per_task = 2; memory_per_node = 300; };
    script = "echo hello-from-sbatch; echo done > \$out"; };
  reserved = bad "reserved" { script = "#!/bin/sh\nid > /tmp/pwned-$TAG\n"; };
  unknown = bad "unknown" { mail_user = "root@localhost"; };
  inject = bad "inject" { partition = "--wrap=id"; };
  unmapped = bad "unmapped" { tres_per_node = "gres/gpu:1"; };
  noroot = mk { name = "cli-noroot-$TAG"; requiredSystemFeatures = [ "nsh" ];
    script = "echo should-not-build > \$out"; };
}
NIX
} | put_file "$WORK/cli.nix"

# 1. the build, as alice
slurm_cli_env alice
t0=$(date +%s%N)
nsh_build good "$WORK/cli.nix" -A good
t1=$(date +%s%N)
unset BUILD_ENV
assert_rc 0 good
assert_slurm_job good
job=$CLI_JOB
assert_log good '^hello-from-sbatch'
assert_log good "job $job is running on node[12]"
assert_line_has good "as job $job to Slurm's commands on this machine as alice"
out=$(out_paths good | tail -n1)
[ -n "$out" ] || fail "good: no output path printed"
on_submit nix-store --verify-path "$out" || fail "$out is not valid"
[ "$(on_submit cat "$out")" = done ] || fail "wrong content in $out"
on_submit nix-store -l "$(on_submit nix-store -q --deriver "$out")" | grep -q hello-from-sbatch ||
  fail "the build log is not in nix log"
user=$(job_field "$job" UserId)
[[ $user == alice\(* ]] || fail "job $job runs as '$user', expected alice (job-user)"
cpus=$(job_field "$job" NumCPUs)
[ "$cpus" = 2 ] || fail "job $job has NumCPUs=$cpus, expected 2 (cpus_per_task = 2)"
mem=$(job_field "$job" MinMemoryNode)
[ "$mem" = 300M ] || fail "job $job has MinMemoryNode=$mem, expected 300M (memory_per_node = 300)"
name=$(job_field "$job" JobName)
[[ $name == nsh-cli-good-* ]] || fail "job $job is named '$name'"
say "ok: built $out through sbatch job $job ($name, UserId=$user, NumCPUs=$cpus, MinMemoryNode=$mem) in $(( (t1 - t0) / 1000000 )) ms"

# 2. bad extraSlurmParams: CASE KEY
bad_case() {
  local case=$1 key=$2 before new
  before=$(all_job_ids)
  slurm_cli_env alice
  BUILD_TIMEOUT=120 nsh_build "bad-$case" "$WORK/cli.nix" -A "$case"
  unset BUILD_ENV
  [ "$BUILD_RC" != 0 ] || fail "bad-$case: the build succeeded"
  [ "$BUILD_RC" != 124 ] || fail "bad-$case: nix-build hung"
  assert_line_has "bad-$case" "'extraSlurmParams'" "\`$key\`"
  refute_log "bad-$case" 'as job [0-9]'
  refute_log "bad-$case" 'should-not-build'
  new=$(new_job_ids "$before")
  [ -z "$new" ] || fail "bad-$case: job(s) submitted: $(echo $new)"
  say "ok: $case refused: $(grep -a -m1 -F extraSlurmParams "$LOGS/bad-$case.log" | cut -c1-180)"
}
bad_case reserved script
bad_case unknown mail_user
bad_case inject partition
bad_case unmapped tres_per_node
on_submit test ! -e "/tmp/pwned-$TAG" || fail "the reserved script ran"

# 3. root, with neither job-user nor allow-root-jobs
before=$(all_job_ids)
slurm_cli_env no-job-user
BUILD_TIMEOUT=120 nsh_build noroot "$WORK/cli.nix" -A noroot
unset BUILD_ENV
[ "$BUILD_RC" != 0 ] || fail "noroot: a root hook submitted without job-user"
[ "$BUILD_RC" != 124 ] || fail "noroot: nix-build hung"
assert_log noroot 'job-user'
refute_log noroot 'as job [0-9]'
new=$(new_job_ids "$before")
[ -z "$new" ] || fail "noroot: job(s) submitted: $(echo $new)"
say "ok: without job-user: $(grep -a -m1 -F job-user "$LOGS/noroot.log" | cut -c1-180)"

# 4. nsh check with the config of 1
nsh_check check alice
[ "$CHECK_RC" = 0 ] || { cat "$LOGS/check.log" >&2; fail "nsh check failed with job-scheduler = slurm-cli"; }
assert_log check "^ok +Slurm's commands on this machine as alice \\(slurm-wlm [0-9.]+\\): sbatch and squeue answer"
assert_log check '^nsh check: all good'
say "ok: nsh check: $(grep -c '^ok' "$LOGS/check.log") ok lines, all good"

assert_no_live_jobs
