# shellcheck shell=bash
# Bringing the testbed's hosts up and down: mounts, namespaces, daemons, tokens.
#
#   host netns ── veth nshtb-GEN  NET.254
#   netns nshtb-GEN-submit  (UTS "submit", own mount ns on the rootfs)  br0 NET.1
#       munged, slurmctld, slurmrestd :6820 (also 127.0.0.1), sshd :22, nix-daemon,
#       stunnel :6821 (also 127.0.0.1) -> 127.0.0.1:6820, TLS with the testbed's own CA
#   ├─ veth ─ netns nshtb-GEN-node1 (UTS "node1", own mount ns; own /nix /tmp /scratch)
#   │         eth0 NET.11: slurmd, sshd, nix-daemon; the login host: /opt/torque-login/bin
#   │         is a bind of /opt/torque/bin (the Torque wrappers), empty everywhere else
#   └─ veth ─ netns nshtb-GEN-node2 ... NET.12
#
# One munged serves all hosts: its socket is reached by path, which works across network
# namespaces.  Everything but /nix, /tmp and /scratch is shared, like NFS /home and /etc.

TB_TOKEN_LIFESPAN=$((3 * 24 * 3600))

tb_dist_dir() { echo "$TB_REPO/target/dist"; }

# Host-side mounts under the rootfs; every host's mount namespace starts as a copy of them.
tb_mount_rootfs() {
  local r=$TB_ROOT
  # the Nix sandbox needs / to be a mount point (it remounts / MS_PRIVATE|MS_REC)
  mountpoint -q "$r" || { mount --bind "$r" "$r" && mount --make-private "$r"; }
  mountpoint -q "$r/proc" || mount -t proc proc "$r/proc"
  mountpoint -q "$r/sys" || { mount --rbind /sys "$r/sys" && mount --make-rslave "$r/sys"; }
  mountpoint -q "$r/dev" || { mount --rbind /dev "$r/dev" && mount --make-rslave "$r/dev"; }
  # /run is a fresh tmpfs per bring-up: tb_make_run_dirs recreates the daemons' directories
  mountpoint -q "$r/run" || mount -t tmpfs -o mode=755,size=256m tmpfs "$r/run"
}

tb_make_run_dirs() {
  mkdir -p "$TB_ROOT/run/munge" "$TB_ROOT/run/slurm" "$TB_ROOT/run/sshd"
  tb_chroot sh -c 'chown munge:munge /run/munge; chmod 0755 /run/munge /run/sshd; chown slurm:slurm /run/slurm'
}

# The workspace's binaries, live: whatever is copied into target/dist shows up at /opt/nsh/bin.
tb_mount_dist() {
  local dist
  dist=$(tb_dist_dir)
  mkdir -p "$dist" "$TB_ROOT/opt/nsh/bin"
  mountpoint -q "$TB_ROOT/opt/nsh/bin" || mount --bind "$dist" "$TB_ROOT/opt/nsh/bin"
  tb_dist_is_live || tb_log "WARNING: /opt/nsh/bin shows a deleted $dist (cargo clean?); run down, then up"
}

# False once target/dist was deleted and recreated: the mounts still show the old directory.
tb_dist_is_live() {
  [ "$(stat -c %d:%i "$(tb_dist_dir)")" = "$(stat -c %d:%i "$TB_ROOT/opt/nsh/bin")" ]
}

tb_setup_network() {
  local host ns n
  for host in $TB_HOSTS; do
    ns=${TB_NETNS[$host]}
    [ -e "/run/netns/$ns" ] || ip netns add "$ns"
    ip -n "$ns" link set lo up
  done
  ns=${TB_NETNS[submit]}
  ip -n "$ns" link show br0 >/dev/null 2>&1 || ip -n "$ns" link add br0 type bridge
  ip -n "$ns" addr replace "$TB_SUBMIT_IP/24" dev br0
  ip -n "$ns" link set br0 up
  for n in $TB_NODES; do
    ip -n "${TB_NETNS[$n]}" link show eth0 >/dev/null 2>&1 ||
      ip link add eth0 netns "${TB_NETNS[$n]}" type veth peer name "v$n" netns "$ns"
    ip -n "$ns" link set "v$n" master br0 up
    ip -n "${TB_NETNS[$n]}" addr replace "${TB_IP[$n]}/24" dev eth0
    ip -n "${TB_NETNS[$n]}" link set eth0 up
  done
  # lets the host reach the REST API and sshd directly
  ip link show "$TB_HOST_LINK" >/dev/null 2>&1 ||
    ip link add "$TB_HOST_LINK" type veth peer name host0 netns "$ns"
  ip addr replace "$TB_HOST_IP/24" dev "$TB_HOST_LINK"
  ip link set "$TB_HOST_LINK" up
  ip -n "$ns" link set host0 master br0 up
}

# Mount and UTS namespaces live as long as their handles, bind-mounted files in state/ns
# (unshare --mount=FILE needs FILE on a private mount).  Each is pivot_root-ed into the
# rootfs; nodes first get their own /nix, /tmp, /scratch and nix.conf (own build users).
tb_setup_host_namespaces() {
  local nsdir=$TB_STATE/ns host binds d
  mkdir -p "$nsdir"
  mountpoint -q "$nsdir" || { mount --bind "$nsdir" "$nsdir" && mount --make-private "$nsdir"; }
  for host in $TB_HOSTS; do
    mountpoint -q "$nsdir/$host.mnt" && continue
    mountpoint -q "$nsdir/$host.uts" && umount "$nsdir/$host.uts"
    touch "$nsdir/$host.mnt" "$nsdir/$host.uts"
    binds=""
    if [ "$host" != submit ]; then
      d=$TB_NODES_DIR/$host
      mkdir -p "$d/nix" "$d/tmp" "$d/scratch"
      chmod 1777 "$d/tmp"
      chmod 0755 "$d/scratch"   # a store root must not be world-writable
      binds="mount --bind '$d/nix' '$TB_ROOT/nix'
             mount --bind '$d/tmp' '$TB_ROOT/tmp'
             mount --bind '$d/scratch' '$TB_ROOT/scratch'
             mount --bind '$d/nix.conf' '$TB_ROOT/etc/nix/nix.conf'"
    fi
    unshare --mount="$nsdir/$host.mnt" --uts="$nsdir/$host.uts" --propagation private sh -e -c "
      hostname $host
      $binds
      cd '$TB_ROOT'
      pivot_root . mnt
      umount -l /mnt"
  done
  for host in $TB_NODES; do
    tb_enter "$host" sh -c 'mkdir -p /nix/var/nix/daemon-socket
      chown root:nix-users /nix/var/nix/daemon-socket; chmod 770 /nix/var/nix/daemon-socket'
  done
  # The login host alone shows the Torque wrappers at TB_TORQUE_LOGIN_BIN (in its own
  # namespace, so submit's stays empty). Here rather than in the unshare above, so that a
  # namespace made before this existed gets it on the next `up` too.
  tb_enter "$TB_LOGIN_HOST" sh -e -c 'mountpoint -q "$2" || mount --bind "$1" "$2"' \
    sh "$TB_TORQUE_BIN" "$TB_TORQUE_LOGIN_BIN"
}

# slurmrestd's content plugins: one per API version before 23.02, openapi/slurmctld after.
tb_rest_plugins() {
  local dir=$TB_ROOT/usr/lib/x86_64-linux-gnu/slurm-wlm
  if [ -e "$dir/openapi_slurmctld.so" ]; then
    echo openapi/slurmctld
  else
    (cd "$dir" && ls openapi_v*.so) | sed 's/^openapi_\(v[0-9_]*\)\.so$/openapi\/\1/; s/_/./g' | paste -sd,
  fi
}

# The testbed's own CA and stunnel's certificate for submit (names: its IP as in
# NSH_TB_REST_URL, and "submit"), plus an unrelated CA for tests that must fail
# verification. Made with openssl in the rootfs; kept while the names still match.
tb_write_tls() {
  local d=$TB_ROOT$TB_TLS_DIR names="IP:$TB_SUBMIT_IP,DNS:submit"
  if [ -s "$d/ca.pem" ] && [ -s "$d/wrong-ca.pem" ] && [ -s "$d/server.pem" ] && [ -s "$d/server.key" ] &&
    [ "$(cat "$d/names" 2>/dev/null)" = "$names" ]; then
    tb_write_stunnel_conf
    return 0
  fi
  tb_log "making the testbed's CA and a certificate for $names"
  mkdir -p "$d"
  cat >"$d/openssl.cnf" <<EOF
[req]
distinguished_name = dn
prompt = no
[dn]
CN = nsh testbed
[ca]
basicConstraints = critical,CA:TRUE
keyUsage = critical,keyCertSign,cRLSign
subjectKeyIdentifier = hash
[server]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature
extendedKeyUsage = serverAuth
subjectAltName = $names
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
EOF
  tb_chroot /bin/sh -e -c '
    cd "$1"; umask 077
    key() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2>/dev/null; }
    for ca in ca wrong-ca; do
      key $ca.key
      openssl req -x509 -config openssl.cnf -extensions ca -key $ca.key -days 3650 \
        -subj "/CN=nsh testbed $ca" -out $ca.pem
    done
    key server.key
    openssl req -new -config openssl.cnf -key server.key -subj /CN=submit -out server.csr
    openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -set_serial "0x$(openssl rand -hex 8)" \
      -days 3650 -extfile openssl.cnf -extensions server -out server.pem 2>/dev/null
    rm -f server.csr
    openssl verify -CAfile ca.pem server.pem >/dev/null
    chmod 0644 ca.pem wrong-ca.pem server.pem; chmod 0600 ca.key wrong-ca.key server.key
    chmod 0755 .' sh "$TB_TLS_DIR"
  echo "$names" >"$d/names"
  tb_write_stunnel_conf
}

tb_write_stunnel_conf() {
  local d=$TB_ROOT$TB_TLS_DIR
  # foreground: tb_start_daemon records its PID; "pid =" empty: no pid file of its own.
  # It runs as root in submit's namespaces, like the other daemons the testbed starts.
  cat >"$d/stunnel.conf" <<EOF
foreground = yes
pid =
syslog = no
[slurmrestd]
accept = $TB_SUBMIT_IP:$TB_REST_TLS_PORT
connect = 127.0.0.1:$TB_REST_PORT
cert = $TB_TLS_DIR/server.pem
key = $TB_TLS_DIR/server.key
[slurmrestd-loopback]
accept = 127.0.0.1:$TB_REST_TLS_PORT
connect = 127.0.0.1:$TB_REST_PORT
cert = $TB_TLS_DIR/server.pem
key = $TB_TLS_DIR/server.key
EOF
}

tb_start_daemons() {
  local n as_munge=(chroot --userspec=munge:munge /) as_rest=(chroot --userspec=slurmrestd:slurmrestd /)
  tb_enter_argv submit
  tb_start_daemon munged "${TB_ENTER[@]}" "${as_munge[@]}" /usr/sbin/munged -F
  tb_wait_for 20 "munge" tb_enter submit sh -c 'munge -n | unmunge'
  tb_enter_argv submit
  tb_start_daemon slurmctld "${TB_ENTER[@]}" /usr/sbin/slurmctld -D
  tb_start_daemon sshd-submit "${TB_ENTER[@]}" /usr/sbin/sshd -D -e -o "ListenAddress=$TB_SUBMIT_IP" -o PidFile=none
  tb_start_daemon nix-daemon-submit "${TB_ENTER[@]}" /usr/bin/nix-daemon
  tb_start_rest
  tb_enter_argv submit
  tb_start_daemon stunnel "${TB_ENTER[@]}" /usr/bin/stunnel4 "$TB_TLS_DIR/stunnel.conf"
  for n in $TB_NODES; do
    tb_enter_argv "$n"
    tb_start_daemon "slurmd-$n" "${TB_ENTER[@]}" /usr/sbin/slurmd -D -N "$n"
    tb_start_daemon "sshd-$n" "${TB_ENTER[@]}" /usr/sbin/sshd -D -e -o "ListenAddress=${TB_IP[$n]}" -o PidFile=none
    [ -e "$TB_STATE/nix-off" ] || tb_start_daemon "nix-daemon-$n" "${TB_ENTER[@]}" /usr/bin/nix-daemon
  done
}

tb_start_rest() {
  local as_rest=(chroot --userspec=slurmrestd:slurmrestd /)
  tb_enter_argv submit
  # SLURM_JWT=daemon: clients authenticate per request with X-SLURM-USER-* headers
  tb_start_daemon slurmrestd "${TB_ENTER[@]}" "${as_rest[@]}" /usr/bin/env SLURM_JWT=daemon \
    /usr/sbin/slurmrestd -a rest_auth/jwt -s "$(tb_rest_plugins)" \
    "$TB_SUBMIT_IP:$TB_REST_PORT" "127.0.0.1:$TB_REST_PORT"
}

# `rest stop|start`: slurmrestd alone (by its recorded PID), for tests of an API outage;
# stunnel stays up and refuses nothing, so clients see the outage as slurmrestd sees it.
tb_rest() {
  tb_is_up || tb_die "testbed $TB_GEN is not up"
  case ${1:-} in
    stop) tb_stop_daemon slurmrestd ;;
    start)
      tb_start_rest
      tb_wait_for 30 "slurmrestd" tb_rest_get /openapi/v3 root
      ;;
    *) tb_die "rest: expected stop or start" ;;
  esac
}

tb_nodes_idle() {
  [ "$(tb_enter submit sinfo -h -N -p debug -o '%N %t' | awk '$2 ~ /^(idle|mix|alloc)$/' | wc -l)" = 2 ]
}

tb_rest_get() { # PATH TOKEN-USER -- GET from slurmrestd on submit's loopback
  tb_enter submit curl -sf -H "X-SLURM-USER-NAME: $2" -H "X-SLURM-USER-TOKEN: $(cat "$TB_ROOT$TB_CONF_DIR/token-$2")" \
    "http://127.0.0.1:$TB_REST_PORT$1"
}

tb_rest_get_tls() { # PATH TOKEN-USER -- the same through stunnel, verified with the testbed's CA
  tb_enter submit curl -sf --cacert "$TB_TLS_DIR/ca.pem" -H "X-SLURM-USER-NAME: $2" \
    -H "X-SLURM-USER-TOKEN: $(cat "$TB_ROOT$TB_CONF_DIR/token-$2")" "https://$TB_SUBMIT_IP:$TB_REST_TLS_PORT$1"
}

# The newest data-parser version the server serves, from its OpenAPI description.
tb_rest_version() {
  tb_rest_get /openapi/v3 root | jq -r '.paths | keys[]' |
    sed -n 's|^/slurm/\(v[0-9.]*\)/.*|\1|p' | sort -uV | tail -1
}

tb_wait_ready() {
  local host
  tb_wait_for 60 "slurmctld" tb_enter submit scontrol ping
  tb_wait_for 90 "node1 and node2 idle" tb_nodes_idle
  for host in $TB_HOSTS; do
    tb_wait_for 20 "sshd on $host" tb_enter submit ssh -o ConnectTimeout=2 "$host" true
  done
}

# JWTs for root and alice, renewed on every `up`; nsh.conf carries root's.
tb_write_tokens() {
  local user tok d=$TB_ROOT$TB_CONF_DIR
  for user in root alice; do
    tok=$(tb_enter submit scontrol token username=$user lifespan=$TB_TOKEN_LIFESPAN | sed -n 's/^SLURM_JWT=//p')
    [ -n "$tok" ] || tb_die "scontrol token username=$user failed"
    (umask 077 && printf '%s\n' "$tok" >"$d/token-$user.new")
    tb_chroot chown "$user:" "$TB_CONF_DIR/token-$user.new"
    mv "$d/token-$user.new" "$d/token-$user"
  done
  tb_wait_for 30 "slurmrestd" tb_rest_get /openapi/v3 root
  tb_wait_for 20 "stunnel (TLS to slurmrestd)" tb_rest_get_tls /openapi/v3 root
  # Builds and tests reach slurmrestd through TLS, as sites do; plain HTTP stays on :6820.
  (umask 077 && cat >"$TB_ROOT/etc/nix/nsh.conf.new" <<EOF
job-scheduler = slurm
slurm-api-scheme = https
slurm-api-host = $TB_SUBMIT_IP
slurm-api-port = $TB_REST_TLS_PORT
slurm-api-ca-file = $TB_TLS_DIR/ca.pem
slurm-jwt-token = $(cat "$d/token-root")
slurm-state-dir = $TB_STATE_DIR_IN
EOF
  )
  mv "$TB_ROOT/etc/nix/nsh.conf.new" "$TB_ROOT/etc/nix/nsh.conf"
}

tb_write_env() {
  local rest_version slurm_version nix_version
  rest_version=$(tb_rest_version)
  [ -n "$rest_version" ] || tb_die "slurmrestd lists no /slurm/ paths in /openapi/v3"
  slurm_version=$(tb_enter submit slurmctld -V | awk '{ print $2 }')
  nix_version=$(tb_enter submit nix --version | awk '{ print $NF }')
  {
    printf 'NSH_TB_GENERATION=%q\n' "$TB_GEN"
    printf 'NSH_TB_ROOT=%q\n' "$TB_ROOT"
    printf 'NSH_TB_SUBMIT_IP=%q\n' "$TB_SUBMIT_IP"
    printf 'NSH_TB_NODE1_IP=%q\n' "${TB_IP[node1]}"
    printf 'NSH_TB_NODE2_IP=%q\n' "${TB_IP[node2]}"
    printf 'NSH_TB_NETNS_SUBMIT=%q\n' "${TB_NETNS[submit]}"
    printf 'NSH_TB_NETNS_NODE1=%q\n' "${TB_NETNS[node1]}"
    printf 'NSH_TB_NETNS_NODE2=%q\n' "${TB_NETNS[node2]}"
    printf 'NSH_TB_REST_URL=%q\n' "http://$TB_SUBMIT_IP:$TB_REST_PORT"
    printf 'NSH_TB_REST_PORT=%q\n' "$TB_REST_PORT"
    printf 'NSH_TB_REST_TLS_URL=%q\n' "https://$TB_SUBMIT_IP:$TB_REST_TLS_PORT"
    printf 'NSH_TB_REST_TLS_PORT=%q\n' "$TB_REST_TLS_PORT"
    printf 'NSH_TB_SUBMIT_HOSTNAME=%q\n' submit
    printf 'NSH_TB_CA_FILE=%q\n' "$TB_TLS_DIR/ca.pem"
    printf 'NSH_TB_WRONG_CA_FILE=%q\n' "$TB_TLS_DIR/wrong-ca.pem"
    printf 'NSH_TB_REST_VERSION=%q\n' "$rest_version"
    printf 'NSH_TB_TOKEN_ROOT=%q\n' "$TB_CONF_DIR/token-root"
    printf 'NSH_TB_TOKEN_ALICE=%q\n' "$TB_CONF_DIR/token-alice"
    printf 'NSH_TB_NSH_CONF=%q\n' /etc/nix/nsh.conf
    printf 'NSH_TB_STATE_DIR=%q\n' "$TB_STATE_DIR_IN"
    printf 'NSH_TB_SCRATCH=%q\n' /scratch
    printf 'NSH_TB_NSH_BIN=%q\n' /opt/nsh/bin
    printf 'NSH_TB_DIST=%q\n' "$(tb_dist_dir)"
    printf 'NSH_TB_NIX_RELOC=%q\n' "$TB_RELOC/bin"
    printf 'NSH_TB_TORQUE_BIN=%q\n' "$TB_TORQUE_BIN"
    printf 'NSH_TB_TORQUE_LOGIN_BIN=%q\n' "$TB_TORQUE_LOGIN_BIN"
    printf 'NSH_TB_LOGIN_HOST=%q\n' "$TB_LOGIN_HOST"
    printf 'NSH_TB_PRIVATE_NODE1_IP=%q\n' "${TB_PRIVATE_IP[node1]}"
    printf 'NSH_TB_PRIVATE_NODE2_IP=%q\n' "${TB_PRIVATE_IP[node2]}"
    printf 'NSH_TB_SLURM_VERSION=%q\n' "$slurm_version"
    printf 'NSH_TB_NIX_VERSION=%q\n' "$nix_version"
    printf 'NSH_TB_EXEC=%q\n' "$TB_REPO/scripts/testbed exec --generation $TB_GEN"
  } >"$TB_STATE/env.new"
  mv "$TB_STATE/env.new" "$TB_STATE/env"
}

tb_up() {
  [ "$(id -u)" = 0 ] || tb_die "must run as root"
  # What a testbed shows at /opt/nsh/bin is fixed when its namespaces are made. If it shows
  # another checkout's target/dist (a clone's CI run on a machine where this testbed was left
  # up, or mounts left after its processes were killed), start over rather than test the
  # wrong binaries.
  if mountpoint -q "$TB_ROOT/opt/nsh/bin" && ! tb_dist_is_live; then
    tb_log "/opt/nsh/bin shows a directory other than $(tb_dist_dir); taking the testbed down first"
    tb_down
  fi
  mkdir -p "$TB_STATE/pids" "$TB_STATE/log" "$TB_STATE/ns" "$TB_NODES_DIR"
  tb_build_rootfs
  tb_mount_rootfs
  tb_make_run_dirs
  tb_build_nix_reloc
  tb_configure_rootfs
  tb_write_tls
  tb_mount_dist
  tb_setup_network
  tb_setup_host_namespaces
  tb_start_daemons
  tb_wait_ready
  tb_write_tokens
  tb_write_env
  tb_log "up: $(grep -E '^NSH_TB_(REST_URL|REST_VERSION|SLURM_VERSION|NIX_VERSION)=' "$TB_STATE/env" | tr '\n' ' ')"
}

# Stops what `up` started (by recorded PID), then whatever else still lives in the
# testbed's own network namespaces (job steps, ssh masters of tests), then unmounts.
# The rootfs and the node stores are kept.
tb_down() {
  [ "$(id -u)" = 0 ] || tb_die "must run as root"
  local name f host ns pid start round left d
  for name in stunnel slurmrestd slurmd-node1 slurmd-node2 slurmctld sshd-submit sshd-node1 sshd-node2 \
    nix-daemon-submit nix-daemon-node1 nix-daemon-node2 munged; do
    tb_stop_daemon "$name"
  done
  for f in "$TB_STATE"/pids/*.pid; do [ -e "$f" ] && tb_stop_daemon "$(basename "$f" .pid)"; done
  # leftovers get TERM, up to 2 s, then KILL
  for round in 1 2 3 4 5 6 7 8 9 10 KILL; do
    left=0
    for host in $TB_HOSTS; do
      ns=${TB_NETNS[$host]}
      [ -e "/run/netns/$ns" ] || continue
      for pid in $(ip netns pids "$ns" 2>/dev/null); do
        start=$(tb_proc_start "$pid") || continue
        left=1
        case $round in
          1) tb_log "leftover in $host: pid $pid ($(tr '\0' ' ' <"/proc/$pid/cmdline" | cut -c1-60))"
             kill -TERM "$pid" 2>/dev/null || true ;;
          KILL) tb_log "killing leftover pid $pid"; kill -KILL "$pid" 2>/dev/null || true ;;
        esac
      done
    done
    [ $left = 0 ] && break
    sleep 0.2
  done
  if [ -d "$TB_STATE/ns" ]; then
    for f in "$TB_STATE"/ns/*.mnt "$TB_STATE"/ns/*.uts; do
      [ -e "$f" ] || continue
      mountpoint -q "$f" && umount "$f"
      rm -f "$f"
    done
    mountpoint -q "$TB_STATE/ns" && umount "$TB_STATE/ns"
  fi
  for host in $TB_HOSTS; do
    ns=${TB_NETNS[$host]}
    [ -e "/run/netns/$ns" ] && ip netns del "$ns"
  done
  ip link show "$TB_HOST_LINK" >/dev/null 2>&1 && ip link del "$TB_HOST_LINK"
  if mountpoint -q "$TB_ROOT"; then
    umount -R "$TB_ROOT" 2>/dev/null || { tb_log "umount -R $TB_ROOT failed, detaching lazily"; umount -R -l "$TB_ROOT"; }
  fi
  for d in opt/nsh/bin run dev sys proc; do
    mountpoint -q "$TB_ROOT/$d" 2>/dev/null && umount -R -l "$TB_ROOT/$d"
  done
  rm -f "$TB_STATE/env" "$TB_STATE/nix-off"
  tb_log "down"
}

# Hides (off) or restores (on) the system Nix on both nodes, inside each node's mount
# namespace: an empty 0644 file is bind-mounted over /usr/bin/nix (nix-store etc. are
# symlinks to it) and over the libnix* libraries, and the node's nix-daemon is stopped.
tb_nix_on_nodes() {
  local mode=$1 n
  tb_is_up || tb_die "testbed $TB_GEN is not up"
  local list='{ echo /usr/bin/nix; find /usr/lib -name "libnix*.so*" -type f; }'
  for n in $TB_NODES; do
    case $mode in
      off)
        tb_stop_daemon "nix-daemon-$n"
        tb_enter "$n" sh -e -c "$list"' | while read -r f; do
            grep -q " $f " /proc/self/mountinfo || mount --bind /etc/nsh-testbed/hidden "$f"
          done'
        ;;
      on)
        tb_enter "$n" sh -e -c "$list"' | while read -r f; do
            while grep -q " $f " /proc/self/mountinfo; do umount "$f"; done
          done'
        ;;
      *) tb_die "usage: testbed nix-on-nodes off|on" ;;
    esac
  done
  if [ "$mode" = off ]; then
    touch "$TB_STATE/nix-off"
  else
    rm -f "$TB_STATE/nix-off"
    for n in $TB_NODES; do
      tb_enter_argv "$n"
      tb_start_daemon "nix-daemon-$n" "${TB_ENTER[@]}" /usr/bin/nix-daemon
    done
  fi
  tb_log "system Nix on nodes: $mode"
}

# Restarts the submit host's nix-daemon with (on) or without (off) nsh as its build hook in
# nix.conf, as a site deploys it: then every client of the daemon, trusted or not, builds
# through nsh. "on" points the daemon at NIX_CONF_DIR=/etc/nsh-testbed/daemon-hook, holding
# the usual nix.conf plus `build-hook` and a link to the usual nsh.conf (the hook runs as the
# daemon's child and reads $NIX_CONF_DIR/nsh.conf).
tb_daemon_hook() {
  local mode=$1 dir=/etc/nsh-testbed/daemon-hook
  tb_is_up || tb_die "testbed $TB_GEN is not up"
  case $mode in
    on | env)
      # env: the hook in the daemon's NIX_CONFIG instead of its nix.conf (for Nix 2.25-2.33,
      # which overwrite nix.conf's build-hook with their built-in default at start-up)
      mkdir -p "$TB_ROOT$dir"
      { cat "$TB_ROOT/etc/nix/nix.conf"; [ "$mode" = env ] || echo "build-hook = /opt/nsh/bin/nsh"; } >"$TB_ROOT$dir/nix.conf"
      ln -sfn /etc/nix/nsh.conf "$TB_ROOT$dir/nsh.conf"
      local -a env=(NIX_CONF_DIR=$dir)
      [ "$mode" = on ] || env+=("NIX_CONFIG=build-hook = /opt/nsh/bin/nsh")
      tb_stop_daemon nix-daemon-submit
      tb_enter_argv submit
      tb_start_daemon nix-daemon-submit "${TB_ENTER[@]}" /usr/bin/env "${env[@]}" /usr/bin/nix-daemon
      ;;
    off)
      tb_stop_daemon nix-daemon-submit
      tb_enter_argv submit
      tb_start_daemon nix-daemon-submit "${TB_ENTER[@]}" /usr/bin/nix-daemon
      ;;
    *) tb_die "usage: testbed daemon-hook on|env|off" ;;
  esac
  tb_wait_for 20 "nix-daemon on submit" tb_enter submit nix store ping --store daemon
  tb_log "nsh as the submit daemon's build hook: $mode"
}

# Adds (on) or removes (off) a private link between node1 and node2 and an sshd listening on
# node2's end of it, as on a cluster whose nodes only the login host reaches: submit has no
# route to that address, so `ssh` from submit gets there only with `ProxyJump node1`.
tb_private_link() {
  local mode=$1 n1=${TB_NETNS[node1]} n2=${TB_NETNS[node2]}
  tb_is_up || tb_die "testbed $TB_GEN is not up"
  case $mode in
    on)
      ip -n "$n1" link show priv0 >/dev/null 2>&1 ||
        ip link add priv0 netns "$n1" type veth peer name priv0 netns "$n2"
      ip -n "$n1" addr replace "${TB_PRIVATE_IP[node1]}/24" dev priv0
      ip -n "$n2" addr replace "${TB_PRIVATE_IP[node2]}/24" dev priv0
      ip -n "$n1" link set priv0 up
      ip -n "$n2" link set priv0 up
      tb_daemon_alive sshd-node2-private || {
        tb_enter_argv node2
        tb_start_daemon sshd-node2-private "${TB_ENTER[@]}" /usr/sbin/sshd -D -e \
          -o "ListenAddress=${TB_PRIVATE_IP[node2]}" -o PidFile=none
      }
      tb_wait_for 20 "sshd on ${TB_PRIVATE_IP[node2]}" tb_enter node1 \
        bash -c "exec 3<>/dev/tcp/${TB_PRIVATE_IP[node2]}/22"
      ;;
    off)
      tb_stop_daemon sshd-node2-private
      ip -n "$n1" link del priv0 2>/dev/null || true
      ;;
    *) tb_die "usage: testbed private-link on|off" ;;
  esac
  tb_log "private link node1 <-> node2 (${TB_PRIVATE_IP[node2]}): $mode"
}

tb_status() {
  local f name pid start
  if ! tb_is_up; then
    echo "testbed $TB_GEN: down (rootfs: $([ -e "$TB_ROOT/.nsh-testbed-packages" ] && echo "$TB_ROOT" || echo none))"
    return 3
  fi
  echo "testbed $TB_GEN: up, rootfs $TB_ROOT, system Nix on nodes: $([ -e "$TB_STATE/nix-off" ] && echo off || echo on)"
  for f in "$TB_STATE"/pids/*.pid; do
    [ -e "$f" ] || continue
    name=$(basename "$f" .pid)
    read -r pid start <"$f"
    if tb_daemon_alive "$name"; then echo "  running  $name (pid $pid)"; else echo "  DEAD     $name"; fi
  done
  tb_dist_is_live || echo "  WARNING  /opt/nsh/bin shows a deleted $(tb_dist_dir); run down, then up"
  [ -f "$TB_STATE/env" ] && sed 's/^/  /' "$TB_STATE/env"
  tb_enter submit sinfo 2>/dev/null | sed 's/^/  /'
}
