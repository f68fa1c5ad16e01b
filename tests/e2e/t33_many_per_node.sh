#!/bin/bash
# 48 builds of ~20 s at once (-j48), the partition oversubscribed by this test
# (OverSubscribe=FORCE:24, restored on exit) so that many share a node, sshd at its
# defaults (MaxSessions 10, MaxStartups 10:30:100; its config is not touched): all
# succeed, at least 16 of our jobs ran on one node at the same time (squeue sampled every
# 0.5 s), no job is left. nsh spreads the builds over several SSH masters per node (3
# builds each, crates/nsh-local/src/ssh/slots.rs); the samples also count the live
# masters and the sessions (ssh mux clients) on the busiest master, which must stay under
# MaxSessions. The build has its own NSH_RUNTIME_DIR, so the masters counted are its own.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/lib_faults.sh"

N=${T33_COUNT:-48}
MIN_ON_ONE_NODE=16
PART=debug
old_oversub=$(on_submit scontrol show partition "$PART" | grep -oE 'OverSubscribe=[^ ]+' | cut -d= -f2)
[ -n "$old_oversub" ] || fail "cannot read OverSubscribe of partition $PART"
BG="" sampler=""
cleanup() {
  stop_bg
  on_submit touch "$WORK/stop-sampler" 2>/dev/null || true
  [ -z "$sampler" ] || wait "$sampler" 2>/dev/null || true
  on_submit scontrol update PartitionName="$PART" OverSubscribe="$old_oversub" || true
  on_submit sh -c 'for s in "$1"/ssh/.ssh-connection*/master; do [ -S "$s" ] && ssh -S "$s" -O exit x 2>/dev/null; done; true' sh "$WORK/rt" || true
}
trap cleanup EXIT
trap 'exit 130' INT TERM

on_submit scontrol update PartitionName="$PART" OverSubscribe=FORCE:24
say "partition $PART: OverSubscribe $old_oversub -> $(on_submit scontrol show partition "$PART" | grep -oE 'OverSubscribe=[^ ]+')"

{ prelude; cat <<NIX
builtins.genList (i: mk { name = "per-node-\${toString i}"; requiredSystemFeatures = [ "nsh" ];
                          script = "/bin/busybox sleep 20; echo built \${toString i} > \$out"; }) $N
NIX
} | put_file "$WORK/per-node.nix"

# One line per sample: running jobs of ours per node, live masters, the most ssh mux
# clients (= sessions) on one control socket. Bounded: 600 samples, or the stop file.
on_submit sh -c 'mkdir -p "$1/rt"' sh "$WORK"
on_submit bash -c '
  for i in $(seq 1 600); do
    [ -e "$1/stop-sampler" ] && break
    nodes=$(squeue -h -t RUNNING -o "%j %N" | awk "\$1 ~ /^nsh-/ {print \$2}" | sort | uniq -c | awk "{printf \"%s=%s \", \$2, \$1}")
    masters=0
    for s in "$1"/rt/ssh/.ssh-connection*/master; do [ -S "$s" ] && masters=$((masters + 1)); done
    sessions=$(ps -eo args | awk "\$1 == \"ssh\" && \$2 == \"-S\" && \$0 !~ / -O / {print \$3}" | sort | uniq -c | sort -rn | awk "NR == 1 {print \$1}")
    echo "t=$i nodes: ${nodes:-none} masters=$masters max_sessions=${sessions:-0}"
    sleep 0.5
  done' bash "$WORK" >"$LOGS/$TEST-samples.log" 2>&1 &
sampler=$!

BUILD_ENV=(NSH_RUNTIME_DIR="$WORK/rt")
t0=$(date +%s%N)
bg_build per-node "$WORK/per-node.nix" -j"$N"
unset BUILD_ENV
wait_bg 280
t1=$(date +%s%N)
on_submit touch "$WORK/stop-sampler"
wait "$sampler" 2>/dev/null || true
sampler=""
on_submit scontrol update PartitionName="$PART" OverSubscribe="$old_oversub"

[ "$BUILD_RC" = 0 ] || { grep -E 'nsh: .*(error|lost|refused|cannot)' "$BG_LOG" | head -n 20 >&2; fail "nix-build exited $BUILD_RC"; }
mapfile -t outs < <(grep -E '^/nix/store/[^ ]+$' "$BG_LOG")
[ "${#outs[@]}" = "$N" ] || fail "nix-build printed ${#outs[@]} output paths, expected $N"
for o in "${outs[@]}"; do
  on_submit nix-store --check-validity "$o" || fail "$o is not valid"
done
mapfile -t jobs < <(grep -oE 'as job [0-9]+' "$BG_LOG" | awk '{print $3}')
[ "${#jobs[@]}" = "$N" ] || fail "${#jobs[@]} jobs submitted, expected $N"
refute_log per-node 'reconnecting|refused an SSH session'

samples=$LOGS/$TEST-samples.log
peak=$(grep -oE 'node[0-9]+=[0-9]+' "$samples" | cut -d= -f2 | sort -n | tail -n1)
peak_at=$(grep -E "node[0-9]+=${peak:-x} " "$samples" | head -n1)
max_masters=$(grep -oE 'masters=[0-9]+' "$samples" | cut -d= -f2 | sort -n | tail -n1)
max_sessions=$(grep -oE 'max_sessions=[0-9]+' "$samples" | cut -d= -f2 | sort -n | tail -n1)
say "$(grep -c . "$samples") samples; most of our jobs running on one node at once: ${peak:-0} ($peak_at)"
say "live masters (both nodes) at most $max_masters; ssh sessions on one master at most $max_sessions"
[ "${peak:-0}" -ge "$MIN_ON_ONE_NODE" ] ||
  fail "at most ${peak:-0} of our jobs ran on one node at once, expected >= $MIN_ON_ONE_NODE"
[ "${max_sessions:-0}" -lt 10 ] || fail "$max_sessions sessions on one master: sshd's MaxSessions is 10"
assert_jobs_gone 30 "${jobs[@]}"
say "ok: $N builds of 20 s in $(( (t1 - t0) / 1000000 )) ms, up to $peak at once on one node, \
$max_masters masters, <= $max_sessions sessions per master"
assert_no_live_jobs
