#!/bin/bash
# An agent that flips one byte of the output's NAR in transit (after hashing it, so it
# still ends the NAR normally): nix-build fails naming the output, the hash mismatch is
# reported, nothing is registered or left in the store, no job is left behind.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/lib_hostile.sh"

# 8 KiB of text: NAR offset 200 is inside the file's contents, so the NAR stays well-formed
# and only the hash can tell.
{ prelude; cat <<'NIX'
mk { name = "nshfault-corrupt"; requiredSystemFeatures = [ "nsh" ];
     script = "i=0; while [ $i -lt 256 ]; do echo 0123456789abcdef0123456789abcdef; i=$((i+1)); done > $out"; }
NIX
} | put_file "$WORK/corrupt.nix"

begin_watch
set_fault corrupt-nar
check_refused corrupt "$WORK/corrupt.nix"
assert_log corrupt 'is corrupt: got [0-9]+ bytes with sha256'
assert_log corrupt 'nothing was registered'
on_submit rm -f "$FAULT_FILE"
end_watch
assert_no_live_jobs
