# tests/e2e/lib.sh -- helpers for end-to-end tests: real nix-build on the testbed's submit
# host, with nsh as its build hook, building on real Slurm nodes over real SSH.
# Each test file sources this, defines its checks, and exits non-zero on failure.
set -euo pipefail

E2E_DIR=$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")
REPO=$(dirname "$(dirname "$E2E_DIR")")
GEN=${NSH_TESTBED_GENERATION:-sid}
export NSH_TESTBED_GENERATION=$GEN
TB=("$REPO/scripts/testbed")
eval "$("${TB[@]}" env)"
# Unique per run, so every derivation is new to both stores.
NONCE=${NONCE:-$(date +%s%N)-$$}
TEST=$(basename "$0" .sh)
WORK=/root/e2e/$TEST-$NONCE
LOGS=${E2E_LOGS:-$REPO/target/e2e-logs/$GEN}
mkdir -p "$LOGS"

say() { printf '  [%s] %s\n' "$TEST" "$*"; }
fail() { printf '  [%s] FAIL: %s\n' "$TEST" "$*" >&2; exit 1; }

on() { local host=$1; shift; "${TB[@]}" exec "$host" -- "$@"; }
on_submit() { on submit "$@"; }

# put_file PATH: stdin -> PATH on submit
put_file() { on_submit sh -c "mkdir -p \"\$(dirname '$1')\" && cat > '$1'"; }

# A Nix expression prelude: derivations built with busybox (the sandbox has nothing else).
# `mk { name; script; ... }` builds `script` with busybox sh; other attributes pass through.
prelude() {
  printf '%s\n' 'let' "  nonce = \"$NONCE\";" \
    '  mk = args@{ name, script, ... }: derivation ({' \
    '    inherit name nonce;' \
    '    system = "x86_64-linux";' \
    '    builder = "/bin/busybox";' \
    '    args = [ "sh" "-c" script ];' \
    '  } // builtins.removeAttrs args [ "script" ]);' \
    'in'
}

# nsh_build NAME NIXFILE [nix-build args...]: nix-build with nsh as the build hook; its
# output goes to $LOGS/NAME.log; sets BUILD_RC. Optional: an array BUILD_ENV of K=V words
# set in nix-build's environment, e.g.
#   BUILD_ENV=(NSH_CONFIG="$(printf 'k = v\nk2 = v2')"); nsh_build …; unset BUILD_ENV
nsh_build() {
  local name=$1 file=$2; shift 2
  set +e
  on_submit env ${BUILD_ENV[@]+"${BUILD_ENV[@]}"} timeout "${BUILD_TIMEOUT:-300}" \
    nix-build "$file" --no-out-link \
    --option build-hook /opt/nsh/bin/nsh "$@" >"$LOGS/$name.log" 2>&1
  BUILD_RC=$?
  set -e
}

# build_input_locally NIXFILE NAME: builds the input derivation NAME of NIXFILE's top
# derivation on submit without nsh (so a cluster build of the top has to send it); sets
# INPUT to its output path.
build_input_locally() {
  local drv in_drv
  drv=$(on_submit nix-instantiate "$1" 2>/dev/null | tail -n1)
  in_drv=$(on_submit nix-store -q --references "$drv" | grep -- "-$2.drv\$") ||
    fail "no input named $2 in $1"
  INPUT=$(on_submit nix-store --realise "$in_drv" 2>/dev/null | tail -n1)
  [ -n "$INPUT" ] || fail "cannot build $2 locally"
}

# The build-hook protocol by hand (what Nix writes to a hook's stdin), for offers Nix itself
# may never make: wire_u64 N, wire_str S (u64 LE length, bytes, zero padding to 8).
wire_u64() { local n=$1 i; for i in 0 1 2 3 4 5 6 7; do printf "\\x$(printf %02x $(( (n >> (8 * i)) & 255 )))"; done; }
wire_str() { wire_u64 ${#1}; printf %s "$1"; local pad=$(( (8 - ${#1} % 8) % 8 )); [ $pad = 0 ] || head -c $pad /dev/zero; }
# hook_offer DRV [FEATURE...]: no settings, one `try` of DRV for x86_64-linux, then EOF.
hook_offer() {
  local drv=$1 f; shift
  wire_u64 0; wire_str try; wire_u64 1; wire_str x86_64-linux; wire_str "$drv"
  wire_u64 $#; for f in "$@"; do wire_str "$f"; done
}

assert_rc() { [ "$BUILD_RC" = "$1" ] || { tail -n 40 "$LOGS/$2.log" >&2; fail "$2: nix-build exited $BUILD_RC, expected $1"; }; }
assert_log() { grep -qE -- "$2" "$LOGS/$1.log" || { tail -n 40 "$LOGS/$1.log" >&2; fail "$1: output lacks /$2/"; }; }
refute_log() { ! grep -qE -- "$2" "$LOGS/$1.log" || { grep -E -- "$2" "$LOGS/$1.log" >&2; fail "$1: output has /$2/"; }; }
# The store paths nix-build printed.
out_paths() { grep -E '^/nix/store/[^ ]+$' "$LOGS/$1.log" || true; }
job_ids() { grep -oE 'as job [0-9]+' "$LOGS/$1.log" | awk '{print $3}'; }
# The node the (last) job of NAME ran on, from "job N is running on nodeX".
job_node() { grep -oE 'job [0-9]+ is running on [^ ]+' "$LOGS/$1.log" | tail -n1 | awk '{print $NF}'; }

# Jobs of ours Slurm still has pending or running.
our_live_jobs() { on_submit squeue -h -o '%i %j %T' | awk '$2 ~ /^nsh-/' || true; }
assert_no_live_jobs() {
  local i left=""
  for i in $(seq 1 "${1:-30}"); do
    left=$(our_live_jobs); [ -z "$left" ] && return 0; sleep 1
  done
  fail "jobs left behind: $left"
}
# assert_jobs_gone SECONDS ID...: these jobs are neither pending nor running (others' jobs
# on a shared testbed do not count).
assert_jobs_gone() {
  local secs=$1 i left=""; shift
  for i in $(seq 1 "$secs"); do
    left=$(on_submit squeue -h -o '%i %T' | awk -v ids=" $* " 'index(ids, " " $1 " ")' || true)
    [ -z "$left" ] && return 0; sleep 1
  done
  fail "jobs left behind: $left"
}
