#!/bin/bash
# A big output (~200 MB in ~2,000 files: half random, half generated text; nested
# directories, an executable, symlinks, an empty file) comes back byte-identical: the NAR
# hash the node's store recorded equals ours and the dumps hash alike, and the local store
# verifies clean. Reports the wall time and nsh's transfer lines. Removes the output from
# both stores afterwards.
. "$(dirname "$0")/lib.sh"

out="" node=""
cleanup() {
  [ -n "$out" ] || return 0
  on_submit nix-store --delete "$out" >/dev/null 2>&1 || true
  [ -z "$node" ] || on "$node" nix-store --delete "$out" >/dev/null 2>&1 || true
}
trap cleanup EXIT
trap 'exit 130' INT TERM

{ prelude; cat <<'NIX'
mk { name = "big-output"; requiredSystemFeatures = [ "nsh" ];
     script = ''
       set -e
       B=/bin/busybox
       $B mkdir -p $out/rand $out/text $out/bin $out/deep/a/b/c/d/e
       i=0
       while [ $i -lt 1000 ]; do
         d=$out/rand/d$((i / 10))
         [ -d $d ] || $B mkdir $d
         $B dd if=/dev/urandom of=$d/r$i.bin bs=102400 count=1 2>/dev/null
         t=$out/text/s$((i / 50))
         [ -d $t ] || $B mkdir $t
         $B seq $((i * 7)) $((i * 7 + 16500)) > $t/t$i.txt
         i=$((i + 1))
       done
       printf '#!/bin/sh\necho hello from a big output\n' > $out/bin/hello
       $B chmod 755 $out/bin/hello
       $B ln -s ../text/s0/t0.txt $out/bin/first-text
       $B ln -s hello $out/bin/hello-again
       : > $out/deep/a/b/c/d/e/empty
       echo deep > $out/deep/a/b/c/d/e/leaf
       echo "files: $($B find $out -type f | $B wc -l) bytes: $($B du -sk $out | $B cut -f1) KiB"
     '';
}
NIX
} | put_file "$WORK/big.nix"

t0=$(date +%s%N)
BUILD_TIMEOUT=${BUILD_TIMEOUT:-1200} nsh_build big "$WORK/big.nix"
t1=$(date +%s%N)
out=$(out_paths big | tail -n1)
node=$(job_node big)
assert_rc 0 big
[ -n "$out" ] || fail "no output path printed"
[ -n "$node" ] || fail "the log does not say where the job ran"
say "built $out on $node in $(( (t1 - t0) / 1000000 )) ms wall"
say "builder: $(grep -m1 '^files:' "$LOGS/big.log" || true)"
grep -E 'nsh: (sent|received) ' "$LOGS/big.log" | sed "s/^/  [$TEST]   /"

on_submit nix-store --verify-path "$out" || fail "$out does not verify locally"
local_hash=$(on_submit nix-store -q --hash "$out")
node_hash=$(on "$node" nix-store -q --hash "$out")
[ "$local_hash" = "$node_hash" ] || fail "NAR hash differs: local $local_hash, $node $node_hash"
local_dump=$(on_submit sh -c "nix-store --dump '$out' | sha256sum" | cut -d' ' -f1)
node_dump=$(on "$node" sh -c "nix-store --dump '$out' | sha256sum" | cut -d' ' -f1)
[ "$local_dump" = "$node_dump" ] || fail "dumps differ: local $local_dump, $node $node_dump"
size=$(on_submit nix-store -q --size "$out")
say "ok: NAR $local_hash ($size bytes) identical here and on $node (dump sha256 $local_dump)"

files=$(on_submit sh -c "find '$out' -type f | wc -l")
links=$(on_submit sh -c "find '$out' -type l | wc -l")
[ "$files" -ge 2000 ] || fail "only $files files in $out"
[ "$links" = 2 ] || fail "$links symlinks in $out, expected 2"
[ "$(on_submit "$out/bin/hello")" = "hello from a big output" ] || fail "$out/bin/hello does not run"
[ "$(on_submit readlink "$out/bin/first-text")" = ../text/s0/t0.txt ] || fail "symlink target changed"
on_submit test ! -s "$out/deep/a/b/c/d/e/empty" || fail "the empty file is not empty"
say "ok: $files files, $links symlinks, executable runs"

v0=$(date +%s%N)
verify=$(on_submit nix-store --verify --check-contents 2>&1) || { printf '%s\n' "$verify" >&2; fail "nix-store --verify --check-contents failed"; }
[ -z "$(printf '%s\n' "$verify" | grep -iE 'modified|corrupt|error|invalid' || true)" ] ||
  { printf '%s\n' "$verify" >&2; fail "nix-store --verify --check-contents complained"; }
say "ok: nix-store --verify --check-contents clean ($(( ($(date +%s%N) - v0) / 1000000 )) ms)"
assert_jobs_gone 10 $(job_ids big)
assert_no_live_jobs
