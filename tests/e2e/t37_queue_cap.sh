#!/bin/bash
# max-queued-jobs = 3 with -j20 (20 independent cluster derivations of ~3 s each): squeue,
# sampled every 100 ms on the submit host for the whole run, never lists more than 3 jobs of
# ours; Nix was told to wait (`# postpone` → "waiting for a machine"); all 20 builds
# succeed and no job is left. Reports the makespan and the highest count seen.
. "$(dirname "$0")/lib.sh"

N=20 CAP=3
SAMPLER=""
cleanup() {
  on_submit touch "$WORK/stop-sampling" 2>/dev/null || true
  [ -z "$SAMPLER" ] || wait "$SAMPLER" 2>/dev/null || true
}
trap cleanup EXIT
trap 'exit 130' INT TERM

{ prelude; cat <<NIX
builtins.genList (i: mk { name = "cap-\${toString i}"; requiredSystemFeatures = [ "nsh" ];
                          script = "/bin/busybox sleep 3; echo built \${toString i} > \$out"; }) $N
NIX
} | put_file "$WORK/cap.nix"

[ -z "$(our_live_jobs)" ] || fail "jobs of nsh are already queued: $(our_live_jobs)"
# One count per line: jobs named nsh-* that squeue lists (any state). Bounded: 10 min.
on_submit sh -c '
  n=0
  while [ ! -e "$1" ] && [ $n -lt 6000 ]; do
    squeue -h -o "%j" | grep -c "^nsh-"
    sleep 0.1; n=$((n + 1))
  done' sh "$WORK/stop-sampling" >"$LOGS/queue-cap-samples.txt" 2>&1 &
SAMPLER=$!

BUILD_ENV=(NSH_RUNTIME_DIR="$WORK/rt" NSH_CONFIG="max-queued-jobs = $CAP")
t0=$(date +%s%N)
nsh_build queue-cap "$WORK/cap.nix" -j"$N" --option build-poll-interval 1
t1=$(date +%s%N)
unset BUILD_ENV
sleep 1
on_submit touch "$WORK/stop-sampling"
wait "$SAMPLER" || true
SAMPLER=""

assert_rc 0 queue-cap
mapfile -t outs < <(out_paths queue-cap)
[ "${#outs[@]}" = "$N" ] || fail "nix-build printed ${#outs[@]} output paths, expected $N"
for o in "${outs[@]}"; do on_submit nix-store --check-validity "$o" || fail "$o is not valid"; done
mapfile -t jobs < <(job_ids queue-cap)
[ "${#jobs[@]}" = "$N" ] || fail "${#jobs[@]} jobs submitted, expected $N"
assert_log queue-cap "waiting for a machine to build"

samples=$(grep -cE '^[0-9]+$' "$LOGS/queue-cap-samples.txt" || true)
max=$(grep -E '^[0-9]+$' "$LOGS/queue-cap-samples.txt" | sort -n | tail -n1)
grep -vqE '^[0-9]+$' "$LOGS/queue-cap-samples.txt" &&
  fail "squeue failed while sampling: $(grep -vE '^[0-9]+$' "$LOGS/queue-cap-samples.txt" | head -n3)"
makespan=$(( (t1 - t0) / 1000000 ))
say "$samples squeue samples over $makespan ms; most jobs of ours listed at once: $max"
[ "$samples" -ge $(( makespan / 1000 * 3 )) ] || fail "only $samples samples in $makespan ms"
[ "$max" -le "$CAP" ] || fail "squeue listed $max jobs of ours at once, cap is $CAP"
[ "$max" -ge 2 ] || fail "never more than $max job at once: the builds did not overlap"
assert_jobs_gone 30 "${jobs[@]}"
assert_no_live_jobs
say "ok: $N builds under max-queued-jobs = $CAP in $makespan ms, at most $max queued at once"
