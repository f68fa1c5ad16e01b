#!/bin/bash
# remote-nix-bin-dir points at a nix-store that cannot start on the node (a script that
# fails as a binary built for a newer glibc does: the dynamic loader's message on stderr,
# exit 127). The agent reports it over the channel before it exits, so the build's error
# is that program's own message (not "the agent did not answer"), names
# remote-nix-bin-dir and the node, is not resubmitted (a fresh job would fail the same
# way), exits 1, and the job ends.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/lib_faults.sh"

# Shared between submit and the nodes (only /nix and /tmp are per host), readable by the
# job's user.
FAKE=/var/tmp/nsh-t36-$NONCE
MARK="t36-$NONCE"
cleanup() { on_submit rm -rf "$FAKE" || true; }
trap cleanup EXIT
trap 'exit 130' INT TERM

on_submit mkdir -p "$FAKE/bin"
printf '%s\n' '#!/bin/sh' \
  "echo \"\$0: /lib/x86_64-linux-gnu/libc.so.6: version \\\`GLIBC_2.38' not found (required by \$0) [$MARK]\" >&2" \
  'exit 127' | put_file "$FAKE/bin/nix-store"
on_submit chmod -R a+rX "$FAKE"
on_submit chmod 0755 "$FAKE/bin/nix-store"
on node1 "$FAKE/bin/nix-store" --version 2>/dev/null && fail "the fake nix-store ran"

{ prelude; cat <<'NIX'
mk { name = "nix-cannot-start"; requiredSystemFeatures = [ "nsh" ];
     script = "echo should-not-run > $out"; }
NIX
} | put_file "$WORK/nocannot.nix"

t0=$(date +%s%N)
BUILD_ENV=(NSH_CONFIG="$(printf 'remote-nix-bin-dir = %s' "$FAKE/bin")")
BUILD_TIMEOUT=120 nsh_build nocannot "$WORK/nocannot.nix"
unset BUILD_ENV
ms=$(( ($(date +%s%N) - t0) / 1000000 ))
assert_rc 1 nocannot
job=$(job_ids nocannot | head -n1)
[ -n "$job" ] || fail "no job submitted"
node=$(job_node nocannot)
# The program's own error, relayed over the channel, in the build's error message.
msg=$(grep -E "^error: nsh: job $job on $node: the agent on $node refused: cannot run the node's Nix" "$LOGS/nocannot.log" | head -n1 || true)
[ -n "$msg" ] || { tail -n 30 "$LOGS/nocannot.log" >&2; fail "no error from the agent naming job $job and $node"; }
grep -qF "GLIBC_2.38' not found (required by $FAKE/bin/nix-store) [$MARK]" <<<"$msg" ||
  fail "the error lacks nix-store's own message: $msg"
grep -qF "remote-nix-bin-dir = $FAKE/bin" <<<"$msg" || fail "the error does not name remote-nix-bin-dir: $msg"
refute_log nocannot "did not answer|early eof"
refute_log nocannot "resubmitting|resubmitted /nix"
[ "$(job_ids nocannot | wc -l)" = 1 ] || fail "more than one job submitted"
assert_jobs_gone 30 "$job"
say "message: $(cut -c1-260 <<<"$msg")"
say "ok: the agent's refusal reached nix-build after $ms ms (exit 1), job $job gone"
assert_no_live_jobs
