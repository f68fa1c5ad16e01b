#!/bin/bash
# Ctrl-C (SIGINT to nix-build) at three moments: (a) the job is still pending (held
# partition), (b) the inputs are being uploaded (a ~150 MB random input built locally
# first), (c) the build runs (a builder that ticks for 30 s). Nix < 2.35 SIGKILLs the hook;
# nsh's reaper cancels the job. Each time: the job leaves squeue within 10 s, no agent of
# it is left on the nodes, and the derivation's output is neither registered nor on disk.
# Reports the time from SIGINT to the job's end for each.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/lib_faults.sh"

BG="" job="" big=""
cleanup() {
  stop_bg_and_job
  [ -z "$big" ] || on_submit nix-store --delete "$big" >/dev/null 2>&1 || true
  [ -z "$big" ] || for n in node1 node2; do on "$n" nix-store --delete "$big" >/dev/null 2>&1 || true; done
}
trap cleanup EXIT
trap 'exit 130' INT TERM

{ prelude; cat <<'NIX'
rec {
  pending = mk { name = "sigint-pending"; requiredSystemFeatures = [ "nsh" ];
                 extraSlurmParams = builtins.toJSON { partition = "held"; };
                 script = "echo never > $out"; };
  # No `nsh` feature: built on submit, before the cluster build that needs it.
  big = mk { name = "sigint-big-input";
             script = "/bin/busybox head -c 150000000 /dev/urandom > $out"; };
  upload = mk { name = "sigint-upload"; requiredSystemFeatures = [ "nsh" ];
                script = "/bin/busybox wc -c < ${big} > $out"; };
  running = mk { name = "sigint-running"; requiredSystemFeatures = [ "nsh" ];
                 script = ''
                   i=0
                   while [ $i -lt 30 ]; do echo tick $i; /bin/busybox sleep 1; i=$((i + 1)); done
                   echo done > $out
                 ''; };
}
NIX
} | put_file "$WORK/sigint.nix"

# sigint_case NAME ATTR READY_REGEX: starts the build of ATTR, waits for READY_REGEX in its
# log, SIGINTs nix-build, and checks that everything of the job goes.
sigint_case() {
  local name=$1 attr=$2 ready=$3 drv outs pid t_int ms dir snap
  drv=$(on_submit nix-instantiate "$WORK/sigint.nix" -A "$attr" 2>/dev/null)
  mapfile -t outs < <(drv_outputs "$drv")
  bg_build "$name" "$WORK/sigint.nix" -A "$attr"
  wait_log "submitted .* as job [0-9]+" 60 0.05 || { tail -n 20 "$BG_LOG" >&2; fail "$name: no job submitted"; }
  job=$(grep -oE 'as job [0-9]+' "$BG_LOG" | awk '{print $3}' | tail -n1)
  dir=$(job_dir "$job")
  [ -n "$dir" ] || fail "$name: cannot find the job dir of job $job"
  wait_log "$ready" 60 0.05 || { tail -n 20 "$BG_LOG" >&2; fail "$name: /$ready/ never appeared"; }
  pid=$(bg_pid)
  [ "$attr" != pending ] || STATE_AT_INT=$(on_submit squeue -h -j "$job" -o '%T %r' 2>/dev/null || true)
  snap=$(cat "$BG_LOG")
  t_int=$(date +%s%N)
  on_submit kill -INT "$pid"
  ms=$(ms_until_gone "$job" 10 "$t_int") ||
    fail "$name: job $job still in squeue 10 s after SIGINT: $(on_submit squeue -h -j "$job" -o '%T %r' || true)"
  MS[$name]=$ms
  STATE[$name]=$(on_submit scontrol show job "$job" 2>/dev/null | grep -oE 'JobState=[A-Z_]+' || true)
  say "$name: job $job left squeue $ms ms after SIGINT (${STATE[$name]})"
  SNAP[$name]=$snap
  wait_bg 20
  [ "$BUILD_RC" != 0 ] || fail "$name: nix-build succeeded after SIGINT"
  [ "$BUILD_RC" != 124 ] || fail "$name: nix-build still running 20 s after SIGINT"
  assert_clean "$job" "$dir" "${outs[@]}"
  job=""
}

declare -A MS STATE SNAP

# (a) pending in the held partition
sigint_case sigint-pending pending "submitted .* as job [0-9]+"
[[ ${STATE_AT_INT:-} == PENDING* ]] || fail "sigint-pending: job was '${STATE_AT_INT:-}' at SIGINT, expected PENDING"

# (b) uploading the inputs: build the big input locally first. With mandatory-system-features
# = nsh, nsh hands it (no `nsh` feature) to Nix's own hook, which declines; Nix then builds
# it here. (An empty build-hook would do too, but Nix 2.8 tries to run it.)
big=$(on_submit env NSH_CONFIG='mandatory-system-features = nsh' nix-build "$WORK/sigint.nix" -A big --no-out-link --option build-hook /opt/nsh/bin/nsh 2>"$LOGS/sigint-big.log" | tail -n1 || true)
[ -n "$big" ] && on_submit test -f "$big" || { tail -n 5 "$LOGS/sigint-big.log" >&2; fail "the big input was not built locally"; }
say "big input: $big ($(on_submit stat -c %s "$big") bytes)"
# Interrupt as soon as the agent is reached, i.e. while the closure is being sent.
sigint_case sigint-upload upload "agent on .* ready"
grep -qE 'nsh: sent [0-9]+ of' <<<"${SNAP[sigint-upload]}" &&
  fail "sigint-upload: the upload had already finished when SIGINT was sent"
grep -qE 'nsh: sent [0-9]+ of' "$LOGS/sigint-upload.log" &&
  fail "sigint-upload: nsh reports the upload finished after SIGINT"

# (c) while the builder runs
sigint_case sigint-running running "^tick 2$"

say "ok: SIGINT → job gone: pending ${MS[sigint-pending]} ms, uploading ${MS[sigint-upload]} ms, running ${MS[sigint-running]} ms"
assert_no_live_jobs
