#!/bin/bash
# keep-failed: a build that writes a marker file and fails, built with --keep-failed, leaves
# its build directory on the node, and nsh names it; the directory exists there and holds
# the marker. Without --keep-failed the same failure leaves no directory with the marker.
# Both with the default store (`auto`: the testbed's jobs run as root, so the node's Nix
# opens its local store and builds itself, in TMPDIR = <state-dir>/kept-builds on Nix 2.8 and
# in /nix/var/nix/builds on 2.30+) and with a chroot store (remote-store, as t07), where the
# agent also sets build-dir on Nix 2.26+: always <state-dir>/kept-builds. nsh's message says
# "not nsh's" exactly when the directory is outside the state dir.
. "$(dirname "$0")/lib.sh"

TAG=$(printf %s "$NONCE" | sha256sum | cut -c1-8)
RSTORE=/scratch/nsh-store
cleanup() { on_submit rm -rf "$WORK"; }
trap cleanup EXIT
trap 'exit 130' INT TERM

{ prelude; cat <<NIX
let
  f = name: mk { name = "kf-\${name}-$TAG"; requiredSystemFeatures = [ "nsh" ];
    script = "echo kept-$TAG > marker-\${name}-$TAG; echo failing-on-purpose; exit 3"; };
in { auto = f "auto"; autoNo = f "autoNo"; chroot = f "chroot"; chrootNo = f "chrootNo"; }
NIX
} | put_file "$WORK/kf.nix"

KEPT_RE="nsh: the failed build's directory is kept on [^ ]+ at [^ ;]+;"
# kept_case NAME STORE-CONF: builds NAME with -K; asserts the named directory holds the
# marker on the node. Sets KEPT_DIR, KEPT_NODE.
kept_case() {
  [ -z "$2" ] || BUILD_ENV=(NSH_CONFIG="$2")
  nsh_build "$1" "$WORK/kf.nix" -A "$1" --keep-failed
  unset BUILD_ENV
  [ "$BUILD_RC" != 0 ] || fail "$1: the failing build succeeded"
  assert_log "$1" '^failing-on-purpose'
  assert_log "$1" "$KEPT_RE"
  local line
  line=$(grep -m1 -oE "$KEPT_RE" "$LOGS/$1.log")
  KEPT_NODE=$(sed -E 's/.* kept on ([^ ]+) at .*/\1/' <<<"$line")
  KEPT_DIR=$(sed -E 's/.* at ([^ ;]+);$/\1/' <<<"$line")
  assert_log "$1" "look with: ssh $KEPT_NODE ls $KEPT_DIR"
  on "$KEPT_NODE" test -d "$KEPT_DIR" || fail "$1: $KEPT_DIR does not exist on $KEPT_NODE"
  local marker
  marker=$(on "$KEPT_NODE" find "$KEPT_DIR" -name "marker-$1-$TAG" | head -n1)
  [ -n "$marker" ] || fail "$1: no marker-$1-$TAG in $KEPT_DIR on $KEPT_NODE"
  [ "$(on "$KEPT_NODE" cat "$marker")" = "kept-$TAG" ] || fail "$1: wrong marker content in $marker"
  case $KEPT_DIR in
    "$NSH_TB_STATE_DIR"/*) refute_log "$1" "not nsh's" ;;
    *) assert_log "$1" "not nsh's" ;;
  esac
  say "ok: $1 kept $KEPT_DIR on $KEPT_NODE, holding $marker"
}

# gone_case NAME STORE-CONF: the same failure without -K: nsh names no directory and NAME's
# marker is left on neither node where Nix or nsh would put a build directory.
gone_case() {
  [ -z "$2" ] || BUILD_ENV=(NSH_CONFIG="$2")
  nsh_build "$1" "$WORK/kf.nix" -A "$1"
  unset BUILD_ENV
  [ "$BUILD_RC" != 0 ] || fail "$1: the failing build succeeded"
  assert_log "$1" '^failing-on-purpose'
  refute_log "$1" "directory is kept|keeping build directory"
  local n left
  for n in node1 node2; do
    left=$(on "$n" sh -c "find /tmp '$NSH_TB_STATE_DIR' /nix/var/nix/builds '$RSTORE/nix/var/nix/builds' \
      -name 'marker-$1-$TAG' 2>/dev/null | head -n3" || true)
    [ -z "$left" ] || fail "$1: without --keep-failed, $n still has: $left"
  done
  say "ok: $1 without --keep-failed left nothing"
}

kept_case auto ""
kept_dir_auto=$KEPT_DIR node_auto=$KEPT_NODE
gone_case autoNo ""
CHROOT=$(printf 'remote-store = %s' "$RSTORE")
kept_case chroot "$CHROOT"
# The agent's own Nix builds in <state-dir>/kept-builds (TMPDIR, or build-dir on 2.26+).
case $KEPT_DIR in
  "$NSH_TB_STATE_DIR"/kept-builds/*) ;;
  *) fail "chroot: the kept directory $KEPT_DIR is not in $NSH_TB_STATE_DIR/kept-builds" ;;
esac
gone_case chrootNo "$CHROOT"
# The kept directories outlive their jobs: the jobs are over and nsh's cleanup ran.
assert_no_live_jobs
on "$node_auto" test -d "$kept_dir_auto" || fail "$kept_dir_auto is gone after the jobs ended"
on "$KEPT_NODE" test -d "$KEPT_DIR" || fail "$KEPT_DIR is gone after the jobs ended"
on "$node_auto" rm -rf "$kept_dir_auto"
on "$KEPT_NODE" rm -rf "$KEPT_DIR"
