# tests/e2e/lib_hostile.sh -- helpers for the hostile-agent tests (t20, t21), sourced after
# lib.sh: builds whose agent is the fault-injection build (/opt/nsh/bin/nsh-remote-faulty,
# from `scripts/build --faulty`) with a mode from the state dir's `fault-injection` file
# (read only by that binary), and the checks that a refused output left nothing behind.

FAULTY=/opt/nsh/bin/nsh-remote-faulty
FAULT_FILE=/var/lib/nsh-state/fault-injection
PWNED=nsh-fault-pwned
on_submit test -x "$FAULTY" || fail "$FAULTY is missing: run scripts/build --faulty"
trap 'on_submit rm -f "$FAULT_FILE"' EXIT

set_fault() { printf '%s\n' "$1" | on_submit sh -c "cat > '$FAULT_FILE.tmp' && chmod 0644 '$FAULT_FILE.tmp' && mv -f '$FAULT_FILE.tmp' '$FAULT_FILE'"; }

# Entries of the submit host's store, without the .drv and .lock files Nix writes itself.
store_list() { on_submit sh -c 'ls -A /nix/store | grep -vE "\.(drv|lock)$" | sort'; }

# Files under these trees on submit newer than the stamp (nothing of ours may be written
# there: the hook writes only into /nix/store and its runtime dir).
SENSITIVE="/etc /root /usr /bin /sbin /lib /var/lib/nsh-state /opt /home"
begin_watch() {
  STAMP=$WORK/stamp
  on_submit sh -c "mkdir -p '$WORK' && touch '$STAMP'"
  sleep 1
  STORE_BEFORE=$(store_list)
}

# check_refused NAME NIXFILE: nix-build of NIXFILE (one output) with the faulty agent
# failed, its error names the output path, and nothing was registered or left on disk.
check_refused() {
  local name=$1 file=$2 drv out
  drv=$(on_submit nix-instantiate "$file" 2>/dev/null | tail -n1)
  out=$(on_submit nix-store -q --outputs "$drv")
  BUILD_ENV=(NSH_REMOTE_BINARY="$FAULTY"); nsh_build "$name" "$file"; unset BUILD_ENV
  [ "$BUILD_RC" != 0 ] || fail "$name: nix-build succeeded with a hostile agent"
  assert_log "$name" 'as job [0-9]+'
  # nsh's own error (Nix's "Output paths:" list names it anyway).
  grep -aE '^error: nsh:' "$LOGS/$name.log" | grep -qF -- "$out" ||
    { tail -n 20 "$LOGS/$name.log" >&2; fail "$name: nsh's error does not name $out"; }
  ! on_submit nix-store --check-validity "$out" 2>/dev/null || fail "$name: $out is valid"
  ! on_submit test -e "$out" -o -L "$out" || fail "$name: $out was left on disk"
  say "ok: $name: $(grep -a -m1 -E '^error: nsh:' "$LOGS/$name.log" | sed 's/^error: nsh: job [0-9]* on [^:]*: //' | cut -c1-200)"
}

# end_watch: no new store entry is left that is not valid (entries another concurrent
# build is still unpacking get a few seconds to become valid or go), no file named after
# the hostile payloads exists anywhere on submit, nothing under $SENSITIVE changed.
end_watch() {
  local new left="" e i
  new=$(comm -13 <(printf '%s\n' "$STORE_BEFORE") <(store_list))
  for i in 1 2 3 4 5; do
    left=""
    for e in $new; do
      on_submit sh -c "test -e '/nix/store/$e' -o -L '/nix/store/$e'" || continue
      on_submit nix-store --check-validity "/nix/store/$e" 2>/dev/null && continue
      left="$left $e"
    done
    [ -z "$left" ] && break
    new=$left; sleep 2
  done
  [ -z "$left" ] || fail "unregistered entries left in /nix/store:$left"
  local pwned
  pwned=$(on_submit sh -c "find / -xdev \( -path /proc -o -path /sys \) -prune -o -name '*$PWNED*' -print 2>/dev/null" || true)
  [ -z "$pwned" ] || fail "hostile payload written: $pwned"
  local changed
  changed=$(on_submit sh -c "find $SENSITIVE -xdev -newer '$STAMP' ! -path '$WORK*' ! -path '$FAULT_FILE*' ! -path '/root/.cache/*' ! -path '/root/.local/*' ! -path '/root/e2e' ! -path /var/lib/nsh-state ! -path '/var/lib/nsh-state/jobs*' ! -path '/var/lib/nsh-state/agents*' -print 2>/dev/null" || true)
  [ -z "$changed" ] || fail "files changed outside the store: $changed"
  say "ok: nothing outside the refused outputs was written ($(printf '%s\n' $new | grep -c . || true) new store entries, all valid or gone)"
}
