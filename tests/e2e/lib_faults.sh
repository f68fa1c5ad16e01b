# tests/e2e/lib_faults.sh -- helpers for the interruption and fault tests (t14–t19, t22),
# sourced after lib.sh: a nix-build in the background whose PID (inside the testbed) is
# known, waiting for lines in its log, timing a job's end, and checking that nothing of a
# job is left: not in squeue, no agent process on the nodes, no half-registered output.

# bg_build NAME NIXFILE [nix-build args...]: starts nix-build in the background (BUILD_ENV
# applies as in nsh_build). Sets BG (the local testbed-exec process), PIDF (file on submit
# holding nix-build's PID) and BG_LOG.
bg_build() {
  local name=$1 file=$2; shift 2
  PIDF=$WORK/$name.pid
  BG_LOG=$LOGS/$name.log
  on_submit env ${BUILD_ENV[@]+"${BUILD_ENV[@]}"} sh -c 'echo $$ > "$1"; shift; exec "$@"' \
    sh "$PIDF" nix-build "$file" --no-out-link \
    --option build-hook /opt/nsh/bin/nsh "$@" >"$BG_LOG" 2>&1 &
  BG=$!
}

# The PID of nix-build inside the testbed (no PID namespace: valid on every host).
bg_pid() { on_submit cat "$PIDF" 2>/dev/null; }

# wait_log REGEX SECONDS [PAUSE]: polls BG_LOG until REGEX appears (true) or the time is up
# or the build ended (false).
wait_log() {
  local re=$1 secs=$2 pause=${3:-0.1} end
  end=$(( $(date +%s%N) + secs * 1000000000 ))
  while [ "$(date +%s%N)" -lt "$end" ]; do
    grep -qE -- "$re" "$BG_LOG" && return 0
    kill -0 "$BG" 2>/dev/null || { grep -qE -- "$re" "$BG_LOG"; return; }
    sleep "$pause"
  done
  return 1
}

# wait_bg SECONDS: waits for the background nix-build; sets BUILD_RC (124 if it had to be
# stopped: then it is also SIGKILLed so nothing lingers).
wait_bg() {
  local i
  for i in $(seq 1 $(( $1 * 10 ))); do kill -0 "$BG" 2>/dev/null || break; sleep 0.1; done
  if kill -0 "$BG" 2>/dev/null; then
    stop_bg
    BUILD_RC=124
  else
    set +e; wait "$BG"; BUILD_RC=$?; set -e
  fi
  BG=""
}

# Stops our background nix-build, if any (SIGINT, then SIGKILL), by its recorded PID.
# The part every fault test's EXIT trap shares: the background build stopped, its job
# (`$job`, once known) cancelled.
stop_bg_and_job() {
  stop_bg
  [ -z "${job:-}" ] || on_submit scancel "$job" 2>/dev/null || true
}

stop_bg() {
  local pid
  [ -n "${BG:-}" ] || return 0
  pid=$(bg_pid 2>/dev/null || true)
  if [ -n "$pid" ]; then
    on_submit kill -INT "$pid" 2>/dev/null || true
    sleep 2
    on_submit kill -KILL "$pid" 2>/dev/null || true
  fi
  wait "$BG" 2>/dev/null || true
  BG=""
}

# The job nsh submitted for the derivation whose name ends in NAME (from BG_LOG).
bg_job() { grep -oE "submitted /nix/store/[a-z0-9]+-$1\.drv as job [0-9]+" "$BG_LOG" | awk '{print $NF}' | tail -n1; }

# job_dir JOB: the job's directory on the cluster, from its batch script (`d=...`).
job_dir() { on_submit scontrol write batch_script "$1" - 2>/dev/null | sed -n 's/^d=//p' | head -n1 | tr -d "'\""; }

# agent_pids DIR: PIDs of agents (`nsh-remote … serve --dir DIR`) on either node.
agent_pids() {
  local n
  for n in node1 node2; do
    on "$n" sh -c 'ps -eo pid,args | grep "[n]sh-remote.*serve" | grep -F -- "--dir $1 " | awk "{print \$1}"' sh "$1" || true
  done | sort -u
}

# job_live JOB: true while squeue lists the job.
job_live() { on_submit squeue -h -o '%i' | grep -qx "$1"; }

# ms_until_gone JOB SECONDS [T0_NS]: polls squeue every 100 ms; prints the milliseconds
# from T0_NS (default: now) until the job left it, or fails after SECONDS.
ms_until_gone() {
  local job=$1 secs=$2 t0=${3:-$(date +%s%N)} i
  for i in $(seq 1 $(( secs * 10 ))); do
    job_live "$job" || { echo $(( ($(date +%s%N) - t0) / 1000000 )); return 0; }
    sleep 0.1
  done
  return 1
}

# assert_clean JOB DIR [OUTPUT...]: the job is out of squeue, no agent of it runs, its dir
# is gone, and the outputs are neither valid nor on disk locally.
assert_clean() {
  local job=$1 dir=$2 p left; shift 2
  assert_jobs_gone 30 "$job"
  if [ -n "$dir" ]; then
    for i in $(seq 1 20); do left=$(agent_pids "$dir"); [ -z "$left" ] && break; sleep 0.5; done
    [ -z "$left" ] || fail "agent of job $job still running on a node: pids $left"
  fi
  for p in "$@"; do
    ! on_submit nix-store --check-validity "$p" 2>/dev/null || fail "$p is registered in the local store"
    ! on_submit test -e "$p" || fail "$p is on disk but was never registered"
  done
}

# drv_outputs DRV: its output paths.
drv_outputs() { on_submit nix-store -q --outputs "$1"; }

# start_ticking_build NAME SECONDS: a cluster build that prints `tick N` once a second for
# SECONDS, started in the background; returns once `tick 2` is in its log. Sets drv, outs,
# job, node and dir (the job's directory on the cluster).
start_ticking_build() {
  local name=$1 secs=$2
  { prelude; cat <<NIX
mk { name = "$name"; requiredSystemFeatures = [ "nsh" ];
     script = ''
       i=0
       while [ \$i -lt $secs ]; do echo tick \$i; /bin/busybox sleep 1; i=\$((i + 1)); done
       echo done > \$out
     ''; }
NIX
  } | put_file "$WORK/$name.nix"
  drv=$(on_submit nix-instantiate "$WORK/$name.nix" 2>/dev/null)
  mapfile -t outs < <(drv_outputs "$drv")
  bg_build "$name" "$WORK/$name.nix"
  wait_log "^tick 2$" 60 0.05 || { tail -n 20 "$BG_LOG" >&2; fail "the build did not start"; }
  job=$(grep -oE 'as job [0-9]+' "$BG_LOG" | awk '{print $3}' | tail -n1)
  node=$(grep -oE 'job [0-9]+ is running on [^ ]+' "$BG_LOG" | tail -n1 | awk '{print $NF}')
  dir=$(job_dir "$job")
}

# For the interrupt tests (t40, t43, t46), which set job, node, dir, outs (start_ticking_build),
# SUBMITTED_TO (the backend's words after "to" in the hook's "submitted" line) and
# `declare -A MS`.
# started NAME: the ticking build NAME was submitted and its job directory is known.
started() {
  assert_log "$1" "nsh: submitted /nix/store/[^ ]+-$1\\.drv as job $job to $SUBMITTED_TO"
  [ -n "$node" ] || fail "$1: no 'job $job is running on' line"
  [ -n "$dir" ] || fail "$1: cannot find the job dir of job $job"
}

# gone NAME SIGNAL T0: the job left the queue within 10 s of T0 and nix-build failed; MS[NAME]
# is the time it took.
gone() {
  local ms
  ms=$(ms_until_gone "$job" 10 "$3") ||
    fail "$1: job $job still in squeue 10 s after $2: $(on_submit squeue -h -j "$job" -o '%T %r' || true)"
  MS[$1]=$ms
  say "$1: job $job left squeue $ms ms after $2 ($(on_submit scontrol show job "$job" 2>/dev/null | grep -oE 'JobState=[A-Z_]+' || true))"
  wait_bg 30
  [ "$BUILD_RC" != 0 ] || fail "$1: nix-build succeeded after $2"
  [ "$BUILD_RC" != 124 ] || fail "$1: nix-build still running 30 s after $2"
  assert_clean "$job" "$dir" "${outs[@]}"
  job=""
}
