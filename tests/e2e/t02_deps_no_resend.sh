#!/bin/bash
# Three dependencies and a top derivation, all requiring `nsh`: four jobs. Rebuilding the
# top after deleting its output locally re-sends none of the paths the chosen node holds.
. "$(dirname "$0")/lib.sh"

{ prelude; cat <<'NIX'
let
  dep = n: mk { name = "dep${toString n}"; requiredSystemFeatures = [ "nsh" ];
                script = "echo dependency ${toString n} > $out"; };
  d1 = dep 1; d2 = dep 2; d3 = dep 3;
in mk { name = "top"; requiredSystemFeatures = [ "nsh" ];
        script = "echo ${d1} ${d2} ${d3} > $out"; }
NIX
} | put_file "$WORK/deps.nix"

nsh_build deps "$WORK/deps.nix" -j4
assert_rc 0 deps
jobs=$(job_ids deps | sort -u | wc -l)
[ "$jobs" = 4 ] || fail "expected 4 jobs, saw $jobs"
top=$(out_paths deps | tail -n1)
[ -n "$top" ] || fail "no output path"
for p in $(on_submit nix-store -qR "$top"); do
  on_submit nix-store --verify-path "$p" || fail "$p not valid"
done

# Delete only the top output, then build again: one job, and the node is sent exactly what
# it lacks of the closure (the deps it built or received before are not sent again).
on_submit nix-store --delete "$top" >/dev/null 2>&1 || fail "cannot delete $top"
drv=$(on_submit nix-instantiate "$WORK/deps.nix" 2>/dev/null)
closure=$( { on_submit nix-store -qR "$drv"; on_submit nix-store -qR $(on_submit nix-store -q --references "$drv" | grep -v '\.drv$'); \
  for d in $(on_submit nix-store -q --references "$drv" | grep '\.drv$'); do on_submit nix-store -qR $(on_submit nix-store -q --outputs "$d"); done; } | sort -u)
declare -A lacking
for n in node1 node2; do
  lacking[$n]=$(echo "$closure" | xargs "${TB[@]}" exec "$n" -- nix-store --check-validity --print-invalid 2>/dev/null | wc -l)
done
nsh_build again "$WORK/deps.nix"
assert_rc 0 again
[ "$(job_ids again | wc -l)" = 1 ] || fail "expected 1 job for the rebuild"
line=$(grep -E 'nsh: sent [0-9]+ of [0-9]+ paths' "$LOGS/again.log") || fail "no transfer line"
node=$(grep -oE 'is running on node[12]' "$LOGS/again.log" | awk '{print $4}')
sent=$(echo "$line" | grep -oE 'sent [0-9]+' | awk '{print $2}')
[ "$sent" = "${lacking[$node]}" ] ||
  fail "sent $sent paths to $node, which lacked ${lacking[$node]} of the closure: $line"
say "ok: 4 jobs; rebuild on $node sent $sent paths (it lacked ${lacking[$node]}): ${line#*nsh: }"
assert_no_live_jobs
