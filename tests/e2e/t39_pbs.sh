#!/bin/bash
# job-scheduler = pbs with the commands on submit (the Torque wrappers in /opt/torque/bin):
#  1. a build succeeds: the output is valid, its log line is in nix-build's output and in
#     `nix log`, the hook names the job and the node, and `pbsResources` reach the job
#     (`ncpus = "2"` is `-l ncpus=2`, which the wrappers make Slurm's NumCPUs=2);
#  2. a bad `pbsResources` fails the build, names the attribute and the key, and submits
#     nothing: a value with a comma (it would smuggle in a second resource), a value that is
#     not a string, a name nsh does not pass (`prologue`, `-o`) and a value starting with `-`.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/lib_pbs.sh"

TAG=$(printf %s "$NONCE" | sha256sum | cut -c1-8)
JOBS_AT_START=$(all_job_ids)
cleanup() {
  cancel_new_jobs "$JOBS_AT_START"
  on_submit rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

pbs_require_layout

{ prelude; cat <<NIX
let
  bad = key: res: mk { name = "pbs-bad-\${key}-$TAG"; requiredSystemFeatures = [ "nsh" ];
    pbsResources = builtins.toJSON res;
    script = "echo should-not-build > \$out"; };
in {
  good = mk { name = "pbs-good-$TAG"; requiredSystemFeatures = [ "nsh" ];
    pbsResources = builtins.toJSON { ncpus = "2"; };
    script = "echo hello-from-pbs; echo done > \$out"; };
  comma = bad "comma" { ncpus = "2,walltime=99:00:00"; };
  number = bad "number" { ncpus = 2; };
  prologue = bad "prologue" { prologue = "/tmp/x"; };
  dash-o = bad "dash-o" { "-o" = "x"; };
  dash-value = bad "dash-value" { ncpus = "-2"; };
}
NIX
} | put_file "$WORK/pbs.nix"

# 1. the build
pbs_env local
t0=$(date +%s%N)
nsh_build good "$WORK/pbs.nix" -A good
t1=$(date +%s%N)
unset BUILD_ENV
assert_rc 0 good
assert_pbs_job good
job=$PBS_JOB
assert_log good '^hello-from-pbs'
assert_log good "job $job is running on node[12]"
assert_line_has good "as job $job to PBS" "commands on this machine"
refute_log good 'login host'
out=$(out_paths good | tail -n1)
[ -n "$out" ] || fail "good: no output path printed"
on_submit nix-store --verify-path "$out" || fail "$out is not valid"
[ "$(on_submit cat "$out")" = done ] || fail "wrong content in $out"
on_submit nix-store -l "$(on_submit nix-store -q --deriver "$out")" | grep -q hello-from-pbs ||
  fail "the build log is not in nix log"
name=$(job_field "$job" JobName)
[[ $name == nsh-* ]] || fail "job $job is named '$name', expected nsh-…"
cpus=$(job_field "$job" NumCPUs)
[ "$cpus" = 2 ] || fail "job $job has NumCPUs=$cpus, expected 2 (pbsResources ncpus = \"2\")"
say "ok: built $out through PBS job $job ($name, NumCPUs=$cpus) in $(( (t1 - t0) / 1000000 )) ms"

# 2. bad pbsResources: CASE KEY
bad_case() {
  local case=$1 key=$2 before new
  before=$(all_job_ids)
  pbs_env local
  BUILD_TIMEOUT=120 nsh_build "bad-$case" "$WORK/pbs.nix" -A "$case"
  unset BUILD_ENV
  [ "$BUILD_RC" != 0 ] || fail "bad-$case: the build succeeded"
  [ "$BUILD_RC" != 124 ] || fail "bad-$case: nix-build hung"
  assert_line_has "bad-$case" "'pbsResources'" "\`$key\`"
  refute_log "bad-$case" 'as job [0-9]'
  refute_log "bad-$case" 'should-not-build'
  new=$(new_job_ids "$before")
  [ -z "$new" ] || fail "bad-$case: job(s) submitted: $(echo $new)"
  say "ok: $case refused: $(grep -a -m1 -F pbsResources "$LOGS/bad-$case.log" | cut -c1-160)"
}
bad_case comma ncpus
bad_case number ncpus
bad_case prologue prologue
bad_case dash-o -o
bad_case dash-value ncpus

assert_no_live_jobs
