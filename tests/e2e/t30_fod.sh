#!/bin/bash
# Fixed-output derivations. (a) A flat FOD (sha256, given in Nix base-32) and a recursive
# one (sha1, given in base16) build through nsh; each output is valid, holds what it
# should, and carries the `ca` Nix records for an FOD it builds itself, which `nix store
# verify` accepts as the path's trust (no signature needed). (b) With an agent that sends a
# well-formed NAR of the wrong contents (true narHash, NSH_FAULT mode wrong-fod), the build
# fails with "hash mismatch in fixed-output derivation", naming the output, the specified
# and the received hash (SRI); the path is not valid, nothing is left in the store, not
# even a temporary dir, and no job is left behind.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/lib_hostile.sh"

NIXCMD=(--extra-experimental-features nix-command)

# sri ALGO TEXT: the SRI hash of TEXT (coreutils only; independent of Nix and nsh).
sri() {
  local hex
  hex=$(printf '%s' "$2" | "${1}sum" | cut -d' ' -f1)
  printf '%s-%s\n' "$1" "$(printf "$(printf '%s' "$hex" | sed 's/../\\x&/g')" | base64 -w0)"
}

# The expected hashes, computed on submit by Nix's own nix-hash over the same contents the
# builders write (the nonce makes every run's paths new).
flat_text="fod flat $NONCE"
on_submit sh -c "mkdir -p '$WORK/nar/sub' && printf '%s\n' '$flat_text' > '$WORK/flat' &&
  printf '%s\n' 'fod rec $NONCE' > '$WORK/nar/sub/f' && ln -s sub/f '$WORK/nar/l'"
flat32=$(on_submit nix-hash --flat --type sha256 --base32 "$WORK/flat")
rec16=$(on_submit nix-hash --type sha1 "$WORK/nar")
rec32=$(on_submit nix-hash --type sha1 --to-base32 "$rec16")
[ ${#flat32} = 52 ] && [ ${#rec16} = 40 ] && [ ${#rec32} = 32 ] ||
  fail "nix-hash gave '$flat32' '$rec16' '$rec32'"

{ prelude; cat <<'NIX'
{
  flat = mk { name = "nshfod-flat-${nonce}"; requiredSystemFeatures = [ "nsh" ];
    outputHashMode = "flat"; outputHashAlgo = "sha256"; outputHash = "@FLAT32@";
    script = "echo 'fod flat ${nonce}' > $out"; };
  nar = mk { name = "nshfod-rec-${nonce}"; requiredSystemFeatures = [ "nsh" ];
    outputHashMode = "recursive"; outputHashAlgo = "sha1"; outputHash = "@REC16@";
    script = "mkdir -p $out/sub && echo 'fod rec ${nonce}' > $out/sub/f && ln -s sub/f $out/l"; };
}
NIX
} | sed -e "s/@FLAT32@/$flat32/" -e "s/@REC16@/$rec16/" | put_file "$WORK/fod.nix"

# check_fod NAME ATTR CA CONTENT-FILE: built through nsh, valid, right contents, ca recorded.
check_fod() {
  local name=$1 attr=$2 ca=$3 inner=$4 out json
  nsh_build "$name" "$WORK/fod.nix" -A "$attr"
  assert_rc 0 "$name"
  assert_log "$name" 'as job [0-9]+'
  out=$(out_paths "$name" | tail -n1)
  [ -n "$out" ] || fail "$name: no output path printed"
  on_submit nix-store --verify-path "$out" || fail "$name: $out is not valid"
  on_submit cmp "$out$inner" "$WORK/$attr$inner" || fail "$name: wrong contents in $out$inner"
  # Nix 2.34 wants a --json-format; older Nix knows no such option.
  json=$(on_submit nix "${NIXCMD[@]}" path-info --json --json-format 1 "$out" 2>/dev/null ||
    on_submit nix "${NIXCMD[@]}" path-info --json "$out")
  grep -qF "\"ca\":\"$ca\"" <<<"$json" || fail "$name: path-info lacks \"ca\":\"$ca\": $json"
  # Nix checks a ca against the path itself (it must produce that store path): a wrong one
  # is "untrusted" here, as is a path with neither ca nor signature.
  on_submit nix "${NIXCMD[@]}" store verify --sigs-needed 1 "$out" ||
    fail "$name: nix store verify does not accept $out as content-addressed"
  say "ok: $name: $out has ca $ca"
}
check_fod fod-flat flat "fixed:sha256:$flat32" ""
check_fod fod-rec nar "fixed:r:sha1:$rec32" "/sub/f"
[ -z "$(on_submit sh -c 'ls -A /nix/store | grep "^tmp-nsh-"' || true)" ] ||
  fail "temporary dirs left in /nix/store"

# (b) The faulty agent: the remote build is right, what comes back is not.
wrong_text='not the fixed output: sent by a faulty agent'  # fault.rs WRONG_FOD_CONTENTS
{ prelude; cat <<'NIX'
mk { name = "nshfod-wrong-${nonce}"; requiredSystemFeatures = [ "nsh" ];
     outputHashMode = "flat"; outputHashAlgo = "sha256"; outputHash = "@FLAT32@";
     script = "echo 'fod flat ${nonce}' > $out"; }
NIX
} | sed -e "s/@FLAT32@/$flat32/" | put_file "$WORK/wrong.nix"
specified=$(sri sha256 "$flat_text"$'\n')
got=$(sri sha256 "$wrong_text"$'\n')
begin_watch
set_fault wrong-fod
check_refused wrong "$WORK/wrong.nix"
on_submit rm -f "$FAULT_FILE"
assert_log wrong "hash mismatch in fixed-output derivation '[^']+\.drv', output 'out'"
# SRI has + / = in it: compared as fixed strings.
for want in "specified: $specified" "got:    $got"; do
  grep -qF -- "$want" "$LOGS/wrong.log" || { tail -n 20 "$LOGS/wrong.log" >&2; fail "wrong: output lacks '$want'"; }
done
assert_log wrong 'nothing was registered'
wrong_out=$(on_submit nix-store -q --outputs "$(on_submit nix-instantiate "$WORK/wrong.nix" 2>/dev/null | tail -n1)")
! on_submit nix "${NIXCMD[@]}" path-info "$wrong_out" >/dev/null 2>&1 ||
  fail "nix path-info knows $wrong_out"
[ -z "$(on_submit sh -c 'ls -A /nix/store | grep "^tmp-nsh-"' || true)" ] ||
  fail "temporary dirs left in /nix/store after the refused build"
end_watch
assert_no_live_jobs
