#!/bin/bash
# A build that exits 3: nix-build fails; the message has the job id, the node, the exit
# status and the log tail; nothing is registered.
. "$(dirname "$0")/lib.sh"

{ prelude; cat <<'NIX'
mk { name = "fails"; requiredSystemFeatures = [ "nsh" ];
     script = "echo about-to-fail; echo last-words >&2; exit 3"; }
NIX
} | put_file "$WORK/fails.nix"

nsh_build fails "$WORK/fails.nix"
[ "$BUILD_RC" != 0 ] || fail "the failing build succeeded"
# The hook's own exit status (100: the builder failed), as Nix reports it.
assert_log fails 'builder failed with exit code 100'
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
