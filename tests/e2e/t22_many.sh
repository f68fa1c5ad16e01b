#!/bin/bash
# 50 cluster derivations at once (-j50, trivial builders): all succeed; this run leaves no
# job dir in the state dir (compared before/after: other tests may be running); and nsh used
# at most one SSH master per 3 builds on a node (nsh's builds per master,
# crates/nsh-local/src/ssh/slots.rs; the build has its own NSH_RUNTIME_DIR, the live
# masters under it are counted afterwards). Reports the makespan, next to 50 raw `sbatch --wrap
# true` jobs submitted at once and watched with squeue every 50 ms on the same testbed.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/lib_faults.sh"

N=${T22_COUNT:-50}
STATE=${NSH_TB_STATE_DIR:-/var/lib/nsh-state}
raw_jobs=""
cleanup() {
  # shellcheck disable=SC2086
  [ -z "$raw_jobs" ] || on_submit scancel $raw_jobs 2>/dev/null || true
  on_submit sh -c 'for s in "$1"/ssh/.ssh-connection*/master; do [ -S "$s" ] && ssh -S "$s" -O exit x 2>/dev/null; done; true' sh "$WORK/rt" || true
}
trap cleanup EXIT
trap 'exit 130' INT TERM

{ prelude; cat <<NIX
builtins.genList (i: mk { name = "many-\${toString i}"; requiredSystemFeatures = [ "nsh" ];
                          script = "echo built \${toString i} > \$out"; }) $N
NIX
} | put_file "$WORK/many.nix"

before=$(on_submit sh -c 'ls "$1/jobs" 2>/dev/null | sort' sh "$STATE")
BUILD_ENV=(NSH_RUNTIME_DIR="$WORK/rt")
t0=$(date +%s%N)
nsh_build many "$WORK/many.nix" -j"$N"
t1=$(date +%s%N)
unset BUILD_ENV
assert_rc 0 many
mapfile -t outs < <(out_paths many)
[ "${#outs[@]}" = "$N" ] || fail "nix-build printed ${#outs[@]} output paths, expected $N"
for o in "${outs[@]}"; do
  on_submit nix-store --check-validity "$o" || fail "$o is not valid"
done
mapfile -t jobs < <(job_ids many)
[ "${#jobs[@]}" = "$N" ] || fail "${#jobs[@]} jobs submitted, expected $N"
makespan=$(( (t1 - t0) / 1000000 ))
say "$N builds in $makespan ms (nodes used: $(grep -oE 'is running on [^ ]+' "$LOGS/many.log" | sort | uniq -c | awk '{printf "%s x%s ", $5, $1}'))"

assert_jobs_gone 30 "${jobs[@]}"
after=$(on_submit sh -c 'ls "$1/jobs" 2>/dev/null | sort' sh "$STATE")
new=$(comm -13 <(printf '%s\n' "$before") <(printf '%s\n' "$after") | grep . || true)
[ -z "$new" ] || fail "job dirs left in $STATE/jobs: $(tr '\n' ' ' <<<"$new")"

# Live masters under our runtime dir, per host: a master is started only when every slot
# on the ones before it is taken, so at most ceil(builds on the host / 3).
masters=$(on_submit sh -c '
  for s in "$1"/ssh/.ssh-connection*/master; do
    [ -S "$s" ] || continue
    pid=$(ssh -S "$s" -O check x 2>&1 | sed -n "s/.*pid=\([0-9]*\).*/\1/p")
    [ -n "$pid" ] && tr "\0" " " </proc/$pid/cmdline | awk "{print \$NF}"
  done' sh "$WORK/rt" | sort | uniq -c)
say "live masters per host: $(tr -s ' \n' ' ' <<<"$masters")"
[ -n "$masters" ] || fail "no live master under $WORK/rt (expected one per node used)"
per_host=$(grep -oE 'is running on [^ ]+' "$LOGS/many.log" | awk '{print $NF}' | sort | uniq -c)
awk 'NR == FNR {builds[$2] = $1; next} $1 > int((builds[$2] + 2) / 3) {bad=1} END {exit bad}' \
  <(printf '%s\n' "$per_host") <(printf '%s\n' "$masters") ||
  fail "more masters than one per 3 builds on a host: masters $masters, builds $per_host"
nmasters=$(on_submit sh -c 'ls -d "$1"/ssh/.ssh-connection* 2>/dev/null | wc -l' sh "$WORK/rt")
say "master dirs created under the runtime dir: $nmasters"

# Baseline: N raw sbatch jobs at once, squeue every 50 ms until all have left.
raw=$(on_submit bash -c '
  t0=$(date +%s%N); ids=""
  for i in $(seq 1 "$1"); do ids="$ids $(sbatch --parsable -J rawbaseline --wrap true)" ; done
  t1=$(date +%s%N)
  echo "ids:$ids"
  n=0
  while [ $n -lt 2400 ]; do
    left=$(squeue -h -o %i | grep -cxF -f <(printf "%s\n" $ids) || true)
    [ "$left" = 0 ] && break
    sleep 0.05; n=$((n + 1))
  done
  t2=$(date +%s%N)
  echo "submit_ms:$(( (t1 - t0) / 1000000 )) total_ms:$(( (t2 - t0) / 1000000 )) left:$left"' bash "$N")
raw_jobs=$(sed -n 's/^ids://p' <<<"$raw")
raw_total=$(grep -oE 'total_ms:[0-9]+' <<<"$raw" | cut -d: -f2)
grep -q 'left:0' <<<"$raw" || fail "raw sbatch jobs not done after 120 s: $raw"
raw_jobs=""
say "baseline: $N x 'sbatch --wrap true' $(grep -oE 'submit_ms:[0-9]+' <<<"$raw" | cut -d: -f2) ms to submit, all gone after $raw_total ms"
say "ok: $N nsh builds in $makespan ms vs $N raw jobs in $raw_total ms (+$(( makespan - raw_total )) ms, $(( (makespan - raw_total) / N )) ms per build)"
assert_no_live_jobs
