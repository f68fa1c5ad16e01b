#!/bin/bash
# Through nix-daemon, as deployed: the hook is a child of the daemon (root, the daemon's
# environment), not of nix-build. A trusted client (root) passes the hook with --option.
. "$(dirname "$0")/lib.sh"

{ prelude; cat <<'NIX'
mk { name = "via-daemon"; requiredSystemFeatures = [ "nsh" ];
     script = "echo built-through-the-daemon; echo ok > $out"; }
NIX
} | put_file "$WORK/daemon.nix"

BUILD_ENV=(NIX_REMOTE=daemon)
nsh_build daemon "$WORK/daemon.nix"
unset BUILD_ENV
assert_rc 0 daemon
assert_log daemon '^built-through-the-daemon'
assert_log daemon 'job [0-9]+ is running on node[12]'
out=$(out_paths daemon | tail -n1)
on_submit nix-store --verify-path "$out" || fail "$out is not valid"
say "ok: $out"
assert_no_live_jobs
