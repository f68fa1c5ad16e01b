#!/bin/bash
# Progress in Nix's own display: with `--log-format internal-json` (what `nix build`'s
# progress bar and tools like nix-output-monitor read) the build shows nsh's activities,
# re-emitted by Nix itself: the wait for the job, the copy of the inputs to the node (a
# copy-paths activity with the bytes expected, one copy-path activity per path with its
# progress) and the copy of the output back. Every activity nsh starts is stopped.
. "$(dirname "$0")/lib.sh"

{ prelude; cat <<'NIX'
let input = mk { name = "progress-input";
                 script = "i=0; while [ $i -lt 30 ]; do /bin/busybox dd if=/dev/urandom bs=102400 count=1 2>/dev/null; i=$((i+1)); done > $out"; };
in mk { name = "progress-use"; requiredSystemFeatures = [ "nsh" ];
        script = "/bin/busybox cat ${input} ${input} > $out"; }
NIX
} | put_file "$WORK/progress.nix"
# The input is built here (not through nsh), so that it has to be copied to the node.
build_input_locally "$WORK/progress.nix" progress-input

nsh_build progress "$WORK/progress.nix" --log-format internal-json
assert_rc 0 progress
log=$LOGS/progress.log
json() { grep -a '^@nix ' "$log" | sed 's/^@nix //'; }
# Nix gives each activity its own id: match starts, results and stops through it.
ids_of() { json | jq -r --argjson t "$1" --arg re "$2" 'select(.action == "start" and .type == $t and (.text | test($re))) | .id'; }

copy_all=$(ids_of 103 "^copying [0-9]+ paths to 'node[12]'$")
[ -n "$copy_all" ] || fail "no copy-paths activity for the upload"
expected=$(json | jq -r --argjson id "$copy_all" 'select(.action == "result" and .id == $id and .type == 106) | .fields[1]' | tail -n1)
[ "${expected:-0}" -gt 3000000 ] || fail "the upload did not announce its bytes (got '$expected')"

up=$(ids_of 100 "^copying path '.*-progress-input' to 'node[12]'$")
[ -n "$up" ] || fail "no copy-path activity for the input"
last=$(json | jq -c --argjson id "$up" 'select(.action == "result" and .id == $id and .type == 105) | .fields' | tail -n1)
[ "$(echo "$last" | jq '.[0] == .[1] and .[1] > 3000000')" = true ] || fail "input progress did not reach its size: $last"

down=$(ids_of 100 "^copying path '.*-progress-use' from 'node[12]'$")
[ -n "$down" ] || fail "no copy-path activity for the output"
last=$(json | jq -c --argjson id "$down" 'select(.action == "result" and .id == $id and .type == 105) | .fields' | tail -n1)
[ "$(echo "$last" | jq '.[0] == .[1] and .[1] > 6000000')" = true ] || fail "output progress did not reach its size: $last"

# The job usually pends a second or two (Slurm's batch scheduling): then it shows too.
waiting=$(ids_of 0 "^waiting for job [0-9]+ to start$")
for id in $copy_all $up $down $waiting; do
  [ "$(json | jq -s --argjson id "$id" 'any(.[]; .action == "stop" and .id == $id)')" = true ] ||
    fail "activity $id never stopped"
done
say "ok: ${waiting:+queue wait, }copy-paths ($expected bytes expected), input and output copy-path activities with progress, all stopped"
