# shellcheck shell=bash
# Shared by scripts/testbed and its other libraries: the testbed's layout for one Debian
# generation, logging, process records, and how to run a command on one of its hosts.

TB_HOSTS="submit node1 node2"
TB_NODES="node1 node2"

# Everything that differs between generations, so that several can be up at once.
tb_select_generation() {
  TB_GEN=$1
  local octet
  case $TB_GEN in
    sid) octet=97 ;;
    bookworm) octet=98 ;;
    trixie) octet=99 ;;
    *) tb_die "unknown generation '$TB_GEN' (expected sid, trixie or bookworm)" ;;
  esac
  # NSH_TESTBED_INSTANCE (1-2 letters) gives a second, independent set of testbeds: its
  # own rootfs, namespaces and subnets (10.1xx.0) -- e.g. to try CI from a clean state
  # while the usual testbeds stay up.
  # Each instance has its own third octet and uid range, so several can be up at once
  # (two-letter names may share one: the number is taken modulo 250).
  local inst=${NSH_TESTBED_INSTANCE:-} tag=nshtb idx=0
  if [ -n "$inst" ]; then
    [[ $inst =~ ^[a-z]{1,2}$ ]] || tb_die "NSH_TESTBED_INSTANCE must be 1-2 lowercase letters"
    local c n=0
    for ((c = 0; c < ${#inst}; c++)); do
      n=$((n * 26 + $(printf '%d' "'${inst:c:1}") - 96))
    done
    idx=$((n % 250 + 1))
    octet=$((octet + 100)); tag=nsh$inst
  fi
  # Build users: every host of every testbed gets its own uids. All testbeds share the
  # host's PID namespace, and Nix kills every process of a build user before it uses it,
  # so a uid shared by two hosts kills builds on the other one.
  TB_UID_BASE=$((40000 + (octet - 97) * 100 + idx * 300))
  TB_NET=10.$octet.$idx
  TB_DIR=/var/lib/nsh-testbed/${inst:+$inst-}$TB_GEN
  TB_ROOT=$TB_DIR/root          # the Debian rootfs, shared by all hosts (like NFS /home, /etc)
  TB_STATE=$TB_DIR/state        # pids, logs, namespace handles, env file (host side)
  TB_NODES_DIR=$TB_DIR/nodes    # per-node /nix, /tmp and /scratch
  TB_SUBMIT_IP=$TB_NET.1
  TB_HOST_IP=$TB_NET.254        # the host's end of the link into the testbed
  TB_HOST_LINK=$tag-$TB_GEN     # <= 15 characters for every generation name
  TB_REST_PORT=6820
  TB_REST_TLS_PORT=6821         # stunnel (TLS) in front of slurmrestd
  declare -gA TB_IP=([submit]=$TB_NET.1 [node1]=$TB_NET.11 [node2]=$TB_NET.12)
  declare -gA TB_NETNS=([submit]=$tag-$TB_GEN-submit [node1]=$tag-$TB_GEN-node1 [node2]=$tag-$TB_GEN-node2)
  # paths inside the rootfs
  TB_CONF_DIR=/etc/nsh-testbed
  TB_STATE_DIR_IN=/var/lib/nsh-state
  TB_RELOC=/opt/nix-reloc
  TB_TLS_DIR=$TB_CONF_DIR/tls   # the testbed's CA, stunnel's certificate, a second ("wrong") CA
  # Debian's Torque-compatible wrappers (qsub, qstat, qdel over Slurm), moved off PATH into
  # TB_TORQUE_BIN; TB_TORQUE_LOGIN_BIN is empty but on TB_LOGIN_HOST, where it shows them
  # (a login host whose clients the submit host lacks)
  TB_TORQUE_BIN=/opt/torque/bin
  TB_TORQUE_LOGIN_BIN=/opt/torque-login/bin
  TB_LOGIN_HOST=node1
  # `private-link on`: a link of its own between node1 and node2, with an sshd on node2's end,
  # so that address is reachable from node1 (the login host) only (172.16-18, per generation)
  local private
  case $TB_GEN in sid) private=16 ;; bookworm) private=17 ;; trixie) private=18 ;; esac
  declare -gA TB_PRIVATE_IP=([node1]=172.$private.$idx.11 [node2]=172.$private.$idx.12)
}

tb_t0=$(date +%s%N)
tb_elapsed() { local ms=$((($(date +%s%N) - $1) / 1000000)); printf '%d.%03d' $((ms / 1000)) $((ms % 1000)); }
tb_log() { printf '[testbed %s +%ss] %s\n' "${TB_GEN:-?}" "$(tb_elapsed "$tb_t0")" "$*" >&2; }
tb_die() { printf 'testbed: %s\n' "$*" >&2; exit 1; }

# ---------------------------------------------------------------- process records
# A process is recorded as "PID STARTTIME" (field 22 of /proc/PID/stat), so a recycled PID
# is never mistaken for ours.

# Prints the start time of a live process; zombies count as dead (this VM's init reaps late).
tb_proc_start() {
  local stat
  stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
  stat=${stat##*) }
  set -- $stat
  [ "$1" != Z ] || return 1
  echo "${20}"
}

tb_daemon_alive() {
  local f=$TB_STATE/pids/$1.pid pid start
  [ -f "$f" ] && read -r pid start <"$f" && [ -n "$pid" ] &&
    [ "$(tb_proc_start "$pid" 2>/dev/null)" = "$start" ]
}

# tb_start_daemon NAME CMD... -- CMD must stay in the foreground.
tb_start_daemon() {
  local name=$1 pid
  shift
  tb_daemon_alive "$name" && return 0
  setsid "$@" </dev/null >>"$TB_STATE/log/$name.log" 2>&1 &
  pid=$!
  echo "$pid $(tb_proc_start "$pid")" >"$TB_STATE/pids/$name.pid"
  tb_log "started $name (pid $pid)"
}

# TERM, then KILL after 5 s; only if PID still is the process that was recorded.
tb_stop_pid() {
  local pid=$1 start=$2 what=$3 i
  [ "$(tb_proc_start "$pid" 2>/dev/null)" = "$start" ] || return 0
  kill -TERM "$pid" 2>/dev/null || true
  for i in $(seq 1 50); do
    [ "$(tb_proc_start "$pid" 2>/dev/null)" = "$start" ] || { tb_log "stopped $what (pid $pid)"; return 0; }
    sleep 0.1
  done
  kill -KILL "$pid" 2>/dev/null || true
  tb_log "killed $what (pid $pid) after 5 s"
}

tb_stop_daemon() {
  local f=$TB_STATE/pids/$1.pid pid start
  [ -f "$f" ] || return 0
  read -r pid start <"$f" || true
  [ -n "${pid:-}" ] && tb_stop_pid "$pid" "$start" "$1"
  rm -f "$f"
}

# ---------------------------------------------------------------- entering a host
# Each host has its own network, mount and UTS namespace.  The mount namespaces were
# pivot_root-ed into the rootfs, so entering one already lands inside it (a plain chroot
# is escaped by Nix 2.8, which setns()es back into its mount namespace before running ssh).

tb_is_up() { [ -e "$TB_STATE/ns/submit.mnt" ] && mountpoint -q "$TB_STATE/ns/submit.mnt"; }

# tb_enter_argv HOST -- sets the array TB_ENTER to the command prefix that enters HOST
tb_enter_argv() {
  TB_ENTER=(nsenter --mount="$TB_STATE/ns/$1.mnt" --uts="$TB_STATE/ns/$1.uts" --net="/run/netns/${TB_NETNS[$1]}")
}

# tb_enter HOST CMD... -- CMD runs as root inside HOST, with this process's environment.
tb_enter() {
  tb_enter_argv "$1"
  shift
  "${TB_ENTER[@]}" "$@"
}

# tb_exec_argv HOST USER CMD... -- sets the array TB_ARGV to a command that runs CMD in
# HOST as USER, in USER's home directory, with a clean environment (the host's PATH and
# variables mean nothing inside the rootfs).
tb_exec_argv() {
  local host=$1 user=$2
  shift 2
  local -a env=(/usr/bin/env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8)
  [ -n "${TERM:-}" ] && env+=("TERM=$TERM")
  local -a to_home=(/bin/sh -c 'cd "$HOME" 2>/dev/null || cd /; exec "$@"' sh)
  tb_enter_argv "$host"
  if [ "$user" = root ]; then
    TB_ARGV=("${TB_ENTER[@]}" "${env[@]}" HOME=/root USER=root LOGNAME=root "${to_home[@]}" "$@")
  else
    # runuser sets HOME, USER, LOGNAME and the supplementary groups
    TB_ARGV=("${TB_ENTER[@]}" "${env[@]}" runuser -u "$user" -- "${to_home[@]}" "$@")
  fi
}

tb_exec() {
  tb_exec_argv "$@"
  "${TB_ARGV[@]}"
}

# tb_wait_for SECONDS WHAT CMD... -- bounded poll every 0.2 s
tb_wait_for() {
  local secs=$1 what=$2 i
  shift 2
  for ((i = 0; i < secs * 5; i++)); do
    "$@" >/dev/null 2>&1 && return 0
    sleep 0.2
  done
  tb_die "timed out after ${secs}s waiting for $what"
}
