#!/bin/bash
# A build that exits 3: the hook exits 100 (the builder failed); the message has the job
# id, the node, the exit status and the log tail; nothing is registered. Then a build past
# Nix's `timeout`: the hook exits 101.
. "$(dirname "$0")/lib.sh"

{ prelude; cat <<'NIX'
mk { name = "fails"; requiredSystemFeatures = [ "nsh" ];
     script = "echo about-to-fail; echo last-words >&2; exit 3"; }
NIX
} | put_file "$WORK/fails.nix"

nsh_build fails "$WORK/fails.nix"
[ "$BUILD_RC" != 0 ] || fail "the failing build succeeded"
# The hook's own exit status (100: the builder failed), as Nix reports it.
assert_log fails 'failed with exit code 100'
assert_log fails 'the builder failed \(remote nix-store exit status'
job=$(job_ids fails | head -n1)
assert_log fails "job $job on node[12]"
assert_log fails 'exit (status|code) [0-9]+'
assert_log fails 'exit code 3|status 3'
assert_log fails '> last-words'
drv=$(on_submit nix-instantiate "$WORK/fails.nix" 2>/dev/null)
out=$(on_submit nix-store -q --outputs "$drv")
if on_submit nix-store --check-validity "$out" 2>/dev/null; then fail "$out was registered"; fi
on_submit test ! -e "$out" || fail "$out exists on disk"
say "ok: $(grep -m1 'failed in job' "$LOGS/fails.log" | cut -c1-160)"
assert_no_live_jobs

# A build that outlives Nix's `timeout`: the hook exits 101 (timed out, not failed) and
# says so; not resubmitted.
{ prelude; cat <<'NIX'
mk { name = "times-out"; requiredSystemFeatures = [ "nsh" ];
     script = "echo sleeping; /bin/busybox sleep 60; echo late > $out"; }
NIX
} | put_file "$WORK/timeout.nix"
nsh_build timeout "$WORK/timeout.nix" --option timeout 3
[ "$BUILD_RC" != 0 ] || fail "the build that should time out succeeded"
assert_log timeout 'failed with exit code 101'
assert_log timeout "nsh: build of '.*times-out.drv' timed out in job [0-9]+ on node[12]: Nix's timeout"
refute_log timeout 'resubmitting'
say "ok: timeout → exit 101: $(grep -m1 -oE 'timed out in job [0-9]+ on [^:]+: [^(]+' "$LOGS/timeout.log")"
assert_no_live_jobs
