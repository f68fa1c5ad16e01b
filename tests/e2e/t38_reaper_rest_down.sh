#!/bin/bash
# SIGINT while the job is queued (held partition) and slurmrestd is stopped for 20 s: the
# hook dies at once (Nix SIGKILLs it), its reaper cannot cancel yet; the job is still
# pending when slurmrestd comes back, and gone within 10 s of that. Reports the time from
# `rest start` to the job leaving squeue. The hook's cached API negotiation is removed
# before the SIGINT, so the reaper has to reach slurmrestd to connect, not only to cancel.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/lib_faults.sh"

BG="" job="" rest_down=""
cleanup() {
  [ -z "$rest_down" ] || "${TB[@]}" rest start >/dev/null 2>&1 || true
  stop_bg_and_job
}
trap cleanup EXIT
trap 'exit 130' INT TERM

{ prelude; cat <<'NIX'
mk { name = "reaper-rest-down"; requiredSystemFeatures = [ "nsh" ];
     extraSlurmParams = builtins.toJSON { partition = "held"; };
     script = "echo never > $out"; }
NIX
} | put_file "$WORK/held.nix"

BUILD_ENV=(NSH_RUNTIME_DIR="$WORK/rt")
bg_build reaper-rest-down "$WORK/held.nix"
unset BUILD_ENV
wait_log "submitted .* as job [0-9]+" 60 0.05 || { tail -n 20 "$BG_LOG" >&2; fail "no job submitted"; }
job=$(grep -oE 'as job [0-9]+' "$BG_LOG" | awk '{print $3}' | tail -n1)
state=$(on_submit squeue -h -j "$job" -o '%T' 2>/dev/null || true)
[ "$state" = PENDING ] || fail "job $job is '$state', expected PENDING"

on_submit sh -c 'ls "$1"/slurm-rest-*.json' sh "$WORK/rt" >/dev/null ||
  fail "no cached API negotiation in $WORK/rt: the test no longer matches nsh"
on_submit sh -c 'rm -f "$1"/slurm-rest-*.json' sh "$WORK/rt"
rest_down=1
"${TB[@]}" rest stop
! on_submit curl -s -o /dev/null -m 2 "$NSH_TB_REST_URL/openapi/v3" ||
  fail "slurmrestd still answers at $NSH_TB_REST_URL after 'rest stop'"
on_submit kill -INT "$(bg_pid)"
wait_bg 20
[ "$BUILD_RC" != 0 ] || fail "nix-build succeeded after SIGINT"
[ "$BUILD_RC" != 124 ] || fail "nix-build still running 20 s after SIGINT"
reapers=$(on_submit pgrep -f "[_]_reap $job( |$)" || true)
[ -n "$reapers" ] || fail "no reaper of job $job is waiting for slurmrestd"
sleep 20
state=$(on_submit squeue -h -j "$job" -o '%T' 2>/dev/null || true)
[ "$state" = PENDING ] || fail "job $job is '$state' after 20 s without slurmrestd, expected PENDING"

t_back=$(date +%s%N)
"${TB[@]}" rest start
rest_down=""
ms=$(ms_until_gone "$job" 10 "$t_back") ||
  fail "job $job still in squeue 10 s after slurmrestd came back: $(on_submit squeue -h -j "$job" -o '%T %r' || true)"
say "job $job left squeue $ms ms after 'rest start' (slurmrestd was down 20 s)"
for i in $(seq 1 20); do
  on_submit pgrep -f "[_]_reap $job( |$)" >/dev/null || break
  sleep 0.5
done
! on_submit pgrep -f "[_]_reap $job( |$)" >/dev/null || fail "the reaper of job $job is still running"
job=""
assert_no_live_jobs
say "ok: cancelled $ms ms after slurmrestd came back"
