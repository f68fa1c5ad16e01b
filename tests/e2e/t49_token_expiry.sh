#!/bin/bash
# A Slurm JWT that expires while the build runs. The token (lifespan 20 s, from
# `scontrol token`) sits in a file that NSH_CONFIG includes, as a site's renewal timer would
# write it. (a) A 60 s build succeeds, its output is registered with the right content and
# nsh says once that the token expired (the setting, the file, the job, how to renew).
# (b) SIGINT to nix-build 25 s in (after expiry): Nix < 2.35 SIGKILLs the hook, the
# reaper's cancel is refused (401), so the agent's lease ends the job: gone within 90 s
# (the hook's last ping is at most 15 s before the SIGINT, the lease is 60 s after it, plus
# the agent's cleanup and Slurm's job teardown, a few seconds), and not before 30 s (so it
# was the lease, not a cancel). (c) Renewal in a running hook: the test rewrites the file
# with a fresh long token mid-build; the end-of-build status poll is rejected, nsh re-reads
# the file, retries with the new token and says so, and prints no expiry warning.
# (d) Renewal in the reaper: SIGKILL of the hook after expiry, the file rewritten 5 s
# later: the reaper's next cancel attempt re-reads it and cancels the job within 15 s of
# the rewrite, long before the lease would.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/lib_faults.sh"

BG="" job=""
trap stop_bg_and_job EXIT
trap 'exit 130' INT TERM

TOKEN_CONF=$WORK/nsh-token.conf
# write_token LIFESPAN: a fresh token for root into TOKEN_CONF, atomically, mode 600.
write_token() {
  local tok
  tok=$(on_submit scontrol token username=root "lifespan=$1" | sed -n 's/^SLURM_JWT=//p')
  [ -n "$tok" ] || fail "scontrol token lifespan=$1 gave no token"
  on_submit sh -c 'umask 077; mkdir -p "$(dirname "$1")"; printf "slurm-jwt-token = %s\n" "$2" > "$1.new" && mv "$1.new" "$1"' \
    sh "$TOKEN_CONF" "$tok"
}
BUILD_ENV=(NSH_CONFIG="include $TOKEN_CONF")
EXPIRED="slurmrestd rejected slurm-jwt-token \\(set at $TOKEN_CONF:1\\)"

{ prelude; cat <<'NIX'
{
  slow = mk { name = "token-slow"; requiredSystemFeatures = [ "nsh" ];
              script = "/bin/busybox sleep 60; echo built-after-expiry > $out"; };
  renewed = mk { name = "token-renewed"; requiredSystemFeatures = [ "nsh" ];
                 script = "/bin/busybox sleep 40; echo built-with-renewal > $out"; };
}
NIX
} | put_file "$WORK/token.nix"

# (a) the token expires 20 s into a 60 s build
write_token 20
nsh_build slow "$WORK/token.nix" -A slow
assert_rc 0 slow
out=$(out_paths slow | tail -n1)
[ "$(on_submit cat "$out")" = built-after-expiry ] || fail "slow: $out holds '$(on_submit cat "$out" 2>&1)'"
on_submit nix-store --check-validity "$out" || fail "slow: $out is not registered"
assert_log slow "nsh: job [0-9]+: $EXPIRED"
assert_log slow "scontrol token lifespan=SECONDS"
[ "$(grep -cE "$EXPIRED" "$LOGS/slow.log")" = 1 ] || fail "slow: the expiry message is not printed exactly once"
say "a: 60 s build with a 20 s token: $out registered; expiry reported once"

# (b) SIGINT after expiry: the lease ends the job
write_token 20
start_ticking_build token-sigint 60
sleep $(( 25 - 3 ))   # tick 2 is ~3 s in
t_int=$(date +%s%N)
on_submit kill -INT "$(bg_pid)"
wait_bg 30
[ "$BUILD_RC" != 0 ] || fail "sigint: nix-build succeeded after SIGINT"
[ "$BUILD_RC" != 124 ] || fail "sigint: nix-build still running 30 s after SIGINT"
ms=$(ms_until_gone "$job" 90 "$t_int") ||
  fail "sigint: job $job still in squeue 90 s after SIGINT with an expired token: $(on_submit squeue -h -j "$job" -o '%T %r' || true)"
[ "$ms" -ge 30000 ] || fail "sigint: job $job went after $ms ms: cancelled though the token had expired?"
say "b: SIGINT after expiry: job $job left squeue $ms ms later (the agent's lease) ($(on_submit scontrol show job "$job" 2>/dev/null | grep -oE 'JobState=[A-Z_]+' || true))"
assert_clean "$job" "$dir" "${outs[@]}"
job=""

# (c) the running hook takes up a renewed token
write_token 20
bg_build renewed "$WORK/token.nix" -A renewed
wait_log "agent on .* ready" 60 0.1 || { tail -n 20 "$BG_LOG" >&2; fail "renewed: the build did not start"; }
job=$(bg_job token-renewed)
sleep 25
write_token 600
wait_bg 90
[ "$BUILD_RC" = 0 ] || { tail -n 30 "$BG_LOG" >&2; fail "renewed: nix-build exited $BUILD_RC"; }
out=$(grep -E '^/nix/store/[^ ]+$' "$BG_LOG" | tail -n1)
[ "$(on_submit cat "$out")" = built-with-renewal ] || fail "renewed: $out holds '$(on_submit cat "$out" 2>&1)'"
assert_log renewed "nsh: job $job: slurmrestd rejected the token nsh started with; nsh re-read slurm-jwt-token"
refute_log renewed "$EXPIRED"
job=""
say "c: token renewed mid-build: the end-of-build status went through with the new token"

# (d) the reaper takes up a renewed token
write_token 20
start_ticking_build token-reaper 60
sleep $(( 25 - 3 ))
hooks=$(on_submit pgrep -P "$(bg_pid)" -f '(^|/)nsh [0-9]+$' || true)
[ "$(wc -w <<<"$hooks")" = 1 ] || fail "reaper: expected one hook, found: '$hooks'"
on_submit kill -KILL "$hooks"
sleep 5
job_live "$job" || fail "reaper: job $job ended though its token had expired (cancelled with it?)"
write_token 600
t_renew=$(date +%s%N)
ms=$(ms_until_gone "$job" 15 "$t_renew") ||
  fail "reaper: job $job still in squeue 15 s after the token was renewed: the reaper did not re-read it"
say "d: hook SIGKILLed after expiry, token renewed 5 s later: job $job gone $ms ms after the renewal"
wait_bg 30
assert_clean "$job" "$dir" "${outs[@]}"
job=""
say "ok: expiry reported, SIGINT → lease, renewal in hook and reaper"
assert_no_live_jobs
