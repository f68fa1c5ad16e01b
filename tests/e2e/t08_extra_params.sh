#!/bin/bash
# extraSlurmParams: the derivation's JSON reaches the job (CPUs/Task=2 in its record);
# slurm-extra-submission-params in nsh.conf wins over it (CPUs/Task=1); malformed JSON is a
# clear error naming the attribute, and no job is submitted.
. "$(dirname "$0")/lib.sh"

TAG=$(printf %s "$NONCE" | sha256sum | cut -c1-10)
{ prelude; cat <<NIX
{
  two = mk { name = "xp-two"; requiredSystemFeatures = [ "nsh" ];
             extraSlurmParams = builtins.toJSON { cpus_per_task = 2; };
             script = "echo two > \$out"; };
  global = mk { name = "xp-global"; requiredSystemFeatures = [ "nsh" ];
                extraSlurmParams = builtins.toJSON { cpus_per_task = 2; };
                script = "echo global > \$out"; };
  bad = mk { name = "xp-bad-$TAG"; requiredSystemFeatures = [ "nsh" ];
             extraSlurmParams = "{not json";
             script = "echo bad > \$out"; };
}
NIX
} | put_file "$WORK/xp.nix"

job_record() { on_submit scontrol show job "$1"; }
cpus_per_task() { job_record "$1" | grep -oE 'CPUs/Task=[0-9]+' | head -n1 | cut -d= -f2; }

# 1. The derivation's own parameters.
nsh_build two "$WORK/xp.nix" -A two
assert_rc 0 two
job=$(job_ids two | tail -n1)
[ -n "$job" ] || fail "two: no job id in the output"
c=$(cpus_per_task "$job")
[ "$c" = 2 ] || { job_record "$job" >&2; fail "two: job $job has CPUs/Task=$c, expected 2"; }
say "ok: extraSlurmParams → job $job: $(job_record "$job" | grep -oE 'NumCPUs=[0-9]+|CPUs/Task=[0-9]+' | paste -sd' ')"

# 2. nsh.conf's slurm-extra-submission-params wins.
BUILD_ENV=(NSH_CONFIG='slurm-extra-submission-params = {"cpus_per_task": 1}')
nsh_build global "$WORK/xp.nix" -A global
unset BUILD_ENV
assert_rc 0 global
job=$(job_ids global | tail -n1)
[ -n "$job" ] || fail "global: no job id in the output"
c=$(cpus_per_task "$job")
[ "$c" = 1 ] || { job_record "$job" >&2; fail "global: job $job has CPUs/Task=$c, expected 1"; }
say "ok: slurm-extra-submission-params wins → job $job: $(job_record "$job" | grep -oE 'NumCPUs=[0-9]+|CPUs/Task=[0-9]+' | paste -sd' ')"

# 3. Malformed JSON: an error naming the attribute, nothing submitted.
BUILD_TIMEOUT=60 nsh_build bad "$WORK/xp.nix" -A bad
[ "$BUILD_RC" != 0 ] || fail "bad: nix-build succeeded"
[ "$BUILD_RC" != 124 ] || fail "bad: nix-build hung"
assert_log bad "extraSlurmParams"
refute_log bad 'as job'
if on_submit scontrol show job -o 2>/dev/null | grep -q "JobName=nsh-xp-bad-$TAG"; then
  fail "bad: a job was submitted for the malformed derivation"
fi
say "ok: malformed → $(grep -m1 extraSlurmParams "$LOGS/bad.log" | cut -c1-200)"
assert_no_live_jobs
