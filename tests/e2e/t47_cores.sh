#!/bin/bash
# Nix's `cores` on the node is the CPUs the job got (the nodes have 2 CPUs each):
#  1. REST, extraSlurmParams cpus_per_task = 2 → the builder sees NIX_BUILD_CORES=2, and
#     the log says where it came from;
#  2. REST, cpus_per_task = 1 → 1 (not the node's 2);
#  3. REST, no parameters → the job's default allocation: scontrol's NumCPUs for that job;
#  4. REST, cpus_per_task = 2 with --option cores 1 → 1, "set by you";
#  5. slurm-cli (sbatch --export=NIL), cpus_per_task = 2 → 2;
#  6. PBS (Debian's Torque wrappers over Slurm), pbsResources ncpus = "2" → 2;
#  7. slurm-native (libslurm, jobs as alice), slurmNativeConstraints cpus = 2 → 2.
# (A job without parameters gets 1 CPU on the testbed, so 2 tells the allocation from the
# default for slurm-cli and PBS.)
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/lib_pbs.sh"
. "$(dirname "$0")/lib_alice.sh"
. "$(dirname "$0")/lib_native.sh"

TAG=$(printf %s "$NONCE" | sha256sum | cut -c1-8)
JOBS_AT_START=$(all_job_ids)
cleanup() {
  cancel_new_jobs "$JOBS_AT_START"
  alice_teardown
  on_submit rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

{ prelude; cat <<NIX
let
  cores = name: attrs: mk ({ name = "cores-\${name}-$TAG"; requiredSystemFeatures = [ "nsh" ];
    script = "echo \$NIX_BUILD_CORES > \$out"; } // attrs);
  slurm = n: { extraSlurmParams = builtins.toJSON { cpus_per_task = n; }; };
in {
  two = cores "two" (slurm 2);
  one = cores "one" (slurm 1);
  dflt = cores "dflt" { };
  user = cores "user" (slurm 2);
  cli = cores "cli" (slurm 2);
  pbs = cores "pbs" { pbsResources = builtins.toJSON { ncpus = "2"; }; };
  native = cores "native" { slurmNativeConstraints = builtins.toJSON { cpus = 2; }; };
}
NIX
} | put_file "$WORK/cores.nix"

# check_cores NAME WANT: NAME built, its output holds WANT, and its log shows one line
# saying it built with cores = WANT.
check_cores() {
  assert_rc 0 "$1"
  local out got
  out=$(out_paths "$1" | tail -n1)
  [ -n "$out" ] || fail "$1: no output path printed"
  got=$(on_submit cat "$out")
  [ "$got" = "$2" ] || fail "$1: the builder saw NIX_BUILD_CORES=$got, expected $2"
  assert_log "$1" "nsh: building with cores = $2 \("
}

node_cpus=$(on node1 nproc)
[ "$node_cpus" -ge 2 ] || fail "node1 has $node_cpus CPUs: the test needs 2 to tell them apart"

nsh_build two "$WORK/cores.nix" -A two
check_cores two 2
assert_log two "the job's 2 CPUs on node[12], from SLURM_CPUS_ON_NODE\)"
job=$(job_ids two | tail -n1)
[ "$(job_field "$job" NumCPUs)" = 2 ] || fail "two: job $job has NumCPUs=$(job_field "$job" NumCPUs)"
say "ok: cpus_per_task = 2 → cores 2 (job $job): $(grep -m1 'building with cores' "$LOGS/two.log")"

nsh_build one "$WORK/cores.nix" -A one
check_cores one 1
say "ok: cpus_per_task = 1 → cores 1 on a $node_cpus-CPU node"

nsh_build dflt "$WORK/cores.nix" -A dflt
assert_rc 0 dflt
job=$(job_ids dflt | tail -n1)
want=$(job_field "$job" NumCPUs)
[ -n "$want" ] || fail "dflt: no NumCPUs for job $job"
check_cores dflt "$want"
say "ok: no parameters → cores $want = NumCPUs of job $job"

nsh_build user "$WORK/cores.nix" -A user --option cores 1
check_cores user 1
assert_log user 'cores = 1 \(set by you; the job has 2 CPUs on node[12], from SLURM_CPUS_ON_NODE\)'
say "ok: --option cores 1 with 2 CPUs → $(grep -m1 'building with cores' "$LOGS/user.log")"

BUILD_ENV=(NSH_CONFIG="$(printf 'job-scheduler = slurm-cli\nstate-dir = %s\nallow-root-jobs = true' "$NSH_TB_STATE_DIR")")
nsh_build cli "$WORK/cores.nix" -A cli
unset BUILD_ENV
check_cores cli 2
assert_log cli 'to Slurm'
say "ok: slurm-cli → $(grep -m1 'building with cores' "$LOGS/cli.log")"

pbs_require_layout
pbs_env local
nsh_build pbs "$WORK/cores.nix" -A pbs
unset BUILD_ENV
assert_pbs_job pbs
check_cores pbs 2
say "ok: PBS (job $PBS_JOB) → $(grep -m1 'building with cores' "$LOGS/pbs.log")"

alice_setup
native_env
BUILD_ENV+=(NSH_E2E_SSH_USER=alice)
nsh_build native "$WORK/cores.nix" -A native
unset BUILD_ENV
assert_native_job native
check_cores native 2
[ "$(job_field "$NATIVE_JOB" NumCPUs)" = 2 ] || fail "native: job $NATIVE_JOB has NumCPUs=$(job_field "$NATIVE_JOB" NumCPUs)"
say "ok: slurm-native (job $NATIVE_JOB) → $(grep -m1 'building with cores' "$LOGS/native.log")"
assert_no_live_jobs
