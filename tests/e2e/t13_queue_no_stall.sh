#!/bin/bash
# A queued job never stalls Nix: in one nix-build (-j2), a derivation whose job waits in the
# `held` partition (which never runs jobs) and an independent one. The independent output
# becomes valid while the other job is PENDING; then SIGINT to nix-build (Nix < 2.35
# SIGKILLs the hook) and the pending job must leave the queue within 10 s (nsh's reaper
# cancels it). Reports the time from SIGINT to job gone.
. "$(dirname "$0")/lib.sh"

PIDF=$WORK/nix-build.pid
BG="" held_job=""
cleanup() {
  local pid
  pid=$(on_submit cat "$PIDF" 2>/dev/null || true)
  if [ -n "$pid" ] && on_submit kill -0 "$pid" 2>/dev/null; then
    on_submit kill -INT "$pid" 2>/dev/null || true
    sleep 2
    on_submit kill -KILL "$pid" 2>/dev/null || true
  fi
  [ -z "$BG" ] || wait "$BG" 2>/dev/null || true
  # Our own job only, should the reaper have failed.
  [ -z "$held_job" ] || on_submit scancel "$held_job" 2>/dev/null || true
}
trap cleanup EXIT
trap 'exit 130' INT TERM

{ prelude; cat <<'NIX'
[
  (mk { name = "queue-held"; requiredSystemFeatures = [ "nsh" ];
        extraSlurmParams = builtins.toJSON { partition = "held"; };
        script = "echo never > $out"; })
  (mk { name = "queue-free"; requiredSystemFeatures = [ "nsh" ];
        script = "echo free > $out"; })
]
NIX
} | put_file "$WORK/queue.nix"

mapfile -t drvs < <(on_submit nix-instantiate "$WORK/queue.nix" 2>/dev/null | grep -E '^/nix/store/.*\.drv$')
[ "${#drvs[@]}" = 2 ] || fail "nix-instantiate gave ${#drvs[@]} derivations, expected 2"
held_drv=$(printf '%s\n' "${drvs[@]}" | grep -- '-queue-held\.drv$')
free_drv=$(printf '%s\n' "${drvs[@]}" | grep -- '-queue-free\.drv$')
free_out=$(on_submit nix-store -q --outputs "$free_drv")

t0=$(date +%s%N)
on_submit sh -c 'echo $$ > "$1"; exec nix-build "$2" --no-out-link -j2 --option build-hook /opt/nsh/bin/nsh' \
  sh "$PIDF" "$WORK/queue.nix" >"$LOGS/queue.log" 2>&1 &
BG=$!

# The independent build finishes while the other job waits (bounded: 120 s).
for i in $(seq 1 240); do
  on_submit nix-store --check-validity "$free_out" 2>/dev/null && break
  kill -0 "$BG" 2>/dev/null || { tail -n 30 "$LOGS/queue.log" >&2; fail "nix-build ended early"; }
  sleep 0.5
done
on_submit nix-store --check-validity "$free_out" 2>/dev/null ||
  { tail -n 30 "$LOGS/queue.log" >&2; fail "$free_out not valid after 120 s: Nix stalled"; }
t_free=$(date +%s%N)
say "independent output valid after $(( (t_free - t0) / 1000000 )) ms: $free_out"

for i in $(seq 1 50); do
  held_job=$(grep -oE "submitted $held_drv as job [0-9]+" "$LOGS/queue.log" | awk '{print $NF}' || true)
  [ -n "$held_job" ] && break
  sleep 0.2
done
[ -n "$held_job" ] || { tail -n 30 "$LOGS/queue.log" >&2; fail "no job for $held_drv"; }
state=$(on_submit squeue -h -j "$held_job" -o '%T %r' 2>/dev/null || true)
case $state in PENDING*) ;; *) fail "job $held_job is '$state', expected PENDING" ;; esac
# Nix got the hook's accept for the queued build (it names the job): its worker thread
# was not blocked waiting for the queue.
assert_log queue "building '$held_drv' on 'slurm job $held_job'"
say "job $held_job is $state; Nix already had the accept for it"

pid=$(on_submit cat "$PIDF")
on_submit kill -0 "$pid" || fail "nix-build (pid $pid) is not running"
t_int=$(date +%s%N)
on_submit kill -INT "$pid"
gone=""
for i in $(seq 1 100); do
  if ! on_submit squeue -h -o '%i' | grep -qx "$held_job"; then gone=$(date +%s%N); break; fi
  sleep 0.1
done
[ -n "$gone" ] || fail "job $held_job still queued 10 s after SIGINT: $(on_submit squeue -h -j "$held_job" -o '%T %r' || true)"
say "ok: job $held_job left the queue $(( (gone - t_int) / 1000000 )) ms after SIGINT ($(on_submit scontrol show job "$held_job" | grep -oE 'JobState=[A-Z_]+' || true))"

for i in $(seq 1 20); do kill -0 "$BG" 2>/dev/null || break; sleep 0.5; done
kill -0 "$BG" 2>/dev/null && fail "nix-build still running 10 s after SIGINT"
set +e; wait "$BG"; rc=$?; set -e
BG=""
say "nix-build exited $rc after SIGINT"
held_job=""
assert_no_live_jobs
