#!/bin/bash
# An agent that answers FetchOutput with hostile data instead of the real output: NARs
# with names `..`, `.`, empty, with `/`, with NUL, unsorted or duplicate entries, a symlink
# `x -> /etc` followed by a directory `x`, contents longer than the announced size, a
# well-formed NAR in a zstd frame asking for a 256 MiB window (past the 128 MiB bound); an
# PathInfo for a path that is not the expected output; references that are not store
# paths. Each time nix-build fails naming the output, nothing is registered, nothing is
# written outside the output path (which is gone too), and no job is left behind.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/lib_hostile.sh"

modes=(nar-dotdot nar-dot nar-empty-name nar-slash nar-nul nar-unsorted nar-duplicate
  nar-symlink-dir nar-oversize nar-zstd-window wrong-path bad-refs)
[ -n "${T21_MODES:-}" ] && read -ra modes <<<"$T21_MODES"

begin_watch
for m in "${modes[@]}"; do
  { prelude; cat <<NIX
mk { name = "nshfault-$m"; requiredSystemFeatures = [ "nsh" ];
     script = "mkdir \$out; echo fine > \$out/file"; }
NIX
  } | put_file "$WORK/$m.nix"
  set_fault "$m"
  check_refused "$m" "$WORK/$m.nix"
  case $m in
    nar-zstd-window) assert_log "$m" "refused the NAR of '/nix/store/[^']+-nshfault-$m' from node[12]: .*the zstd stream is unusable: Frame requires too much memory" ;;
    nar-*) assert_log "$m" "refused the NAR of '/nix/store/[^']+-nshfault-$m'" ;;
    wrong-path) assert_log "$m" "sent '/nix/store/0{32}-$PWNED' when asked for" ;;
    bad-refs) assert_log "$m" "has an invalid reference '/etc/passwd'" ;;
  esac
done
on_submit rm -f "$FAULT_FILE"
end_watch
assert_no_live_jobs
