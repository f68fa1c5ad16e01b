# shellcheck shell=bash
# `scripts/testbed smoke`: end-to-end checks of a running testbed, one line each.

tb_smoke_fails=0

# tb_check DESCRIPTION CMD... -- prints "ok" or "FAIL" and, on failure, the output's tail
tb_check() {
  local what=$1 out
  shift
  if out=$("$@" 2>&1); then
    echo "ok   $what"
  else
    echo "FAIL $what"
    printf '%s\n' "$out" | tail -n 8 | sed 's/^/       /'
    tb_smoke_fails=$((tb_smoke_fails + 1))
  fi
}

# A derivation that only succeeds inside the sandbox (where /usr does not exist).
tb_smoke_write_nix() {
  cat >"$TB_ROOT$TB_CONF_DIR/smoke.nix" <<'EOF'
{ tag }: derivation {
  name = "nsh-testbed-smoke-${tag}";
  builder = "/bin/sh";
  system = builtins.currentSystem;
  args = [ "-c" "test ! -e /usr && echo sandboxed-${tag} > $out" ];
}
EOF
  chmod 0644 "$TB_ROOT$TB_CONF_DIR/smoke.nix"
}

tb_smoke_sbatch_wait() { # NODE -- as alice, a batch job pinned to NODE reports NODE
  tb_exec submit alice bash -euo pipefail -c '
    id=$(sbatch --parsable --wait -p debug -w "$1" -o "$HOME/tb-smoke-%j.out" --wrap hostname)
    out=$(cat "$HOME/tb-smoke-$id.out"); rm -f "$HOME/tb-smoke-$id.out"
    [ "$out" = "$1" ] || { echo "job $id ran on \"$out\""; exit 1; }' sh "$1"
}

tb_smoke_held() { # a job in the held partition stays pending
  tb_exec submit alice bash -euo pipefail -c '
    id=$(sbatch --parsable -p held --wrap true)
    sleep 1
    state=$(squeue -h -j "$id" -o %T); scancel "$id"
    [ "$state" = PENDING ] || { echo "job $id is $state"; exit 1; }'
}

# Submit a long job as alice, see it run, DELETE it, see it cancelled.  The request body
# differs: v0.0.38 wants a top-level script and environment as an object.
tb_smoke_rest() {
  local version=$1
  tb_exec submit alice bash -euo pipefail -c '
    url=$1/slurm/$2
    h=(-H "X-SLURM-USER-NAME: alice" -H "X-SLURM-USER-TOKEN: $(cat /etc/nsh-testbed/token-alice)")
    script="#!/bin/sh\nsleep 300\n"
    if [ "$2" = v0.0.38 ]; then
      body="{\"script\":\"$script\",\"job\":{\"name\":\"tb-smoke\",\"partition\":\"debug\",\"current_working_directory\":\"/home/alice\",\"environment\":{\"PATH\":\"/usr/bin:/bin\"}}}"
    else
      body="{\"job\":{\"name\":\"tb-smoke\",\"partition\":\"debug\",\"current_working_directory\":\"/home/alice\",\"environment\":[\"PATH=/usr/bin:/bin\"],\"script\":\"$script\"}}"
    fi
    id=$(curl -sS -f -X POST "${h[@]}" -H "Content-Type: application/json" -d "$body" "$url/job/submit" | jq -e .job_id)
    # job_state is a string up to v0.0.38, a list of strings after
    state() { curl -sS -f "${h[@]}" "$url/job/$id" | jq -r "[.jobs[0].job_state] | flatten | join(\",\")"; }
    wait_state() {
      local i s
      for i in $(seq 1 100); do s=$(state); case ,$s, in *,$1,*) return 0 ;; esac; sleep 0.2; done
      echo "job $id: state $s, expected $1"; return 1
    }
    wait_state RUNNING
    curl -sS -f -X DELETE "${h[@]}" "$url/job/$id" >/dev/null
    wait_state CANCELLED' sh "http://$TB_SUBMIT_IP:$TB_REST_PORT" "$version"
}

tb_smoke_nsh_conf() { # seven keys, 0600, https with the testbed's CA, and its token is accepted
  tb_exec submit root bash -euo pipefail -c '
    f=/etc/nix/nsh.conf
    [ "$(stat -c %a "$f")" = 600 ] || { echo "mode $(stat -c %a "$f")"; exit 1; }
    keys=$(sed -n "s/^\([a-z-]*\) = .*/\1/p" "$f" | sort | paste -sd" ")
    [ "$keys" = "job-scheduler slurm-api-ca-file slurm-api-host slurm-api-port slurm-api-scheme slurm-jwt-token slurm-state-dir" ] || { echo "keys: $keys"; exit 1; }
    get() { sed -n "s/^$1 = //p" "$f"; }
    [ "$(get job-scheduler)" = slurm ] && [ "$(get slurm-api-port)" = 6821 ] && [ "$(get slurm-api-scheme)" = https ]
    [ -d "$(get slurm-state-dir)" ]
    jobs=jobs/; [ "$1" = v0.0.38 ] && jobs=jobs
    curl -sS -f -o /dev/null --cacert "$(get slurm-api-ca-file)" -H "X-SLURM-USER-NAME: root" \
      -H "X-SLURM-USER-TOKEN: $(get slurm-jwt-token)" \
      "https://$(get slurm-api-host):$(get slurm-api-port)/slurm/$1/$jobs"' sh "$1"
}

# stunnel is verified with the testbed's CA under both of the certificate's names, and a
# client that trusts only the wrong CA gets no answer (curl exit 60: certificate problem).
tb_smoke_tls() {
  tb_exec submit root bash -euo pipefail -c '
    curl -sS -o /dev/null --cacert "$1/ca.pem" "https://$2:$3/openapi/v3"
    curl -sS -o /dev/null --cacert "$1/ca.pem" --resolve "submit:$3:$2" "https://submit:$3/openapi/v3"
    rc=0; curl -sS -o /dev/null --cacert "$1/wrong-ca.pem" "https://$2:$3/openapi/v3" 2>/dev/null || rc=$?
    [ "$rc" = 60 ] || { echo "wrong CA: curl exit $rc, expected 60"; exit 1; }' sh "$TB_TLS_DIR" "$TB_SUBMIT_IP" "$TB_REST_TLS_PORT"
}

tb_smoke_nix_build_submit() { # USER -- root builds directly, alice through the nix-daemon
  local tag=$1$(date +%s%N)
  tb_exec submit "$1" bash -euo pipefail -c '
    out=$(nix-build --no-out-link /etc/nsh-testbed/smoke.nix --argstr tag "$1")
    grep -qx "sandboxed-$1" "$out"' sh "$tag"
}

# tb_smoke_node_store NODE NIXBIN -- build into a chroot store under the node's /scratch.
# With the relocatable Nix the build hook is named explicitly: Nix < 2.19 (bookworm's 2.8)
# runs its compiled-in /usr/libexec/nix/build-remote even with no builders, and that is
# hidden by nix-on-nodes off (an empty build-hook is no way out: 2.8 tries to exec "").
tb_smoke_node_store() {
  local tag=s$(date +%s%N) hook=()
  [ -n "$2" ] && hook=(--option build-hook "$TB_RELOC/libexec/nix/build-remote")
  tb_exec "$1" root bash -euo pipefail -c '
    store=/scratch/tb-smoke-store tag=$1 bin=$2
    shift 2
    drv=$("${bin}nix-instantiate" --store "$store" /etc/nsh-testbed/smoke.nix --argstr tag "$tag")
    out=$("${bin}nix-store" --store "$store" "$@" --realise "$drv")
    grep -qx "sandboxed-$tag" "$store$out"' sh "$tag" "$2" "${hook[@]}"
}

# The PBS clients (Torque wrappers): not on submit's PATH and not in the login directory
# there, but in the login directory on the login host, where qstat answers for a job
# submitted with them (sleeps, so it is still known).
tb_smoke_torque_layout() {
  local c
  for c in qsub qstat qdel sbatch scontrol scancel squeue; do
    case $c in q*) if tb_exec submit root sh -c "command -v $c"; then echo "$c is on submit's PATH"; return 1; fi ;; esac
    if tb_exec submit root test -e "$TB_TORQUE_LOGIN_BIN/$c"; then echo "$TB_TORQUE_LOGIN_BIN/$c exists on submit"; return 1; fi
    tb_exec "$TB_LOGIN_HOST" root test -x "$TB_TORQUE_LOGIN_BIN/$c" ||
      { echo "no $TB_TORQUE_LOGIN_BIN/$c on $TB_LOGIN_HOST"; return 1; }
  done
  tb_exec "$TB_LOGIN_HOST" alice bash -euo pipefail -c '
    f=$HOME/tb-smoke-qsub.sh; trap "rm -f $f" EXIT
    printf "#!/bin/sh\nsleep 30\n" >"$f"
    id=$("$1/qsub" -N tb-smoke-qsub -o /dev/null -e /dev/null "$f")
    rc=0; "$1/qstat" -f "$id" | grep -q "Job_Name = tb-smoke-qsub" || rc=$?
    "$1/qdel" "$id"
    [ $rc = 0 ] || { echo "qstat -f $id on $(hostname) does not show the job"; exit 1; }' sh "$TB_TORQUE_LOGIN_BIN"
}

tb_smoke_dist_visible() { # /opt/nsh/bin on submit is the workspace's target/dist
  [ "$(stat -c %d:%i "$(tb_dist_dir)")" = "$(tb_exec submit root stat -c %d:%i /opt/nsh/bin)" ]
}

tb_smoke() {
  tb_is_up && [ -f "$TB_STATE/env" ] || tb_die "testbed $TB_GEN is not up"
  local version host user
  version=$(sed -n 's/^NSH_TB_REST_VERSION=//p' "$TB_STATE/env")
  tb_smoke_write_nix
  echo "smoke: $TB_GEN, $(sed -n 's/^NSH_TB_SLURM_VERSION=/Slurm /p' "$TB_STATE/env"), $(sed -n 's/^NSH_TB_NIX_VERSION=/Nix /p' "$TB_STATE/env"), REST $version"

  tb_check "munge round trip" tb_exec submit root sh -c 'munge -n | unmunge'
  for host in node1 node2; do
    tb_check "sbatch --wait -w $host (alice)" tb_smoke_sbatch_wait "$host"
  done
  tb_check "job in partition 'held' stays pending" tb_smoke_held
  tb_check "REST $version submit / query / delete (alice's token)" tb_smoke_rest "$version"
  tb_check "nsh.conf: seven keys, 0600, https, token accepted" tb_smoke_nsh_conf "$version"
  tb_check "TLS on :$TB_REST_TLS_PORT: the testbed's CA verifies both names, the wrong CA is refused" tb_smoke_tls
  for user in root alice; do
    for host in node1 node2; do
      tb_check "ssh $host true (from submit as $user)" tb_exec submit "$user" ssh "$host" true
    done
  done
  tb_check "sandboxed nix-build on submit (root)" tb_smoke_nix_build_submit root
  tb_check "sandboxed nix-build on submit via nix-daemon (alice)" tb_smoke_nix_build_submit alice
  if [ -e "$TB_STATE/nix-off" ]; then
    tb_check "system Nix hidden on node1" tb_exec node1 root sh -c '! nix-store --version'
  else
    tb_check "chroot-store build in /scratch on node1" tb_smoke_node_store node1 ""
  fi
  tb_check "relocatable Nix builds into /scratch on node2" tb_smoke_node_store node2 "$TB_RELOC/bin/"
  tb_check "/opt/nsh/bin on submit is target/dist" tb_smoke_dist_visible
  tb_check "Torque wrappers and Slurm client links: only $TB_LOGIN_HOST has them in $TB_TORQUE_LOGIN_BIN" tb_smoke_torque_layout

  if [ "$tb_smoke_fails" = 0 ]; then echo "smoke: all checks passed"; else echo "smoke: $tb_smoke_fails failed"; fi
  [ "$tb_smoke_fails" = 0 ]
}
