#!/bin/sh
# vdu-timeout: 90
# The state directory is 0700 root, every file in it (pid, socket, json,
# log, inflight logs) 0600 root; a symlink planted where an inflight log
# goes is not followed (create fails clearly, the target is untouched).
. "$VDU_TESTDIR/cli-lib.sh"

img="$VDU_SCRATCH/img"
truncate -s 16M "$img" || fail "cannot create $img"
vdev_create rsec --backend file --path "$img" --queues 2
node=$(vdev_attach rsec) || exit 1
dd if="$node" of=/dev/null bs=4k count=1 iflag=direct status=none || fail "read failed"

assert_eq "$(stat -c '%a %u' "$VCTL_STATE")" "700 0" "state dir mode/owner"
for f in rsec.pid rsec.sock rsec.json rsec.log rsec.q0.inflight rsec.q1.inflight; do
    [ -e "$VCTL_STATE/$f" ] || fail "$VCTL_STATE/$f missing"
    assert_eq "$(stat -c '%a %u' "$VCTL_STATE/$f")" "600 0" "$f mode/owner"
done
log "state dir 0700, files 0600, owner root"
run vdusectl destroy rsec --force
for f in rsec.pid rsec.sock rsec.json rsec.q0.inflight rsec.q1.inflight; do
    [ ! -e "$VCTL_STATE/$f" ] || fail "destroy left $f"
done

# a planted symlink
echo precious >"$VDU_SCRATCH/target"
ln -s "$VDU_SCRATCH/target" "$VCTL_STATE/rsym.q0.inflight"
on_exit "rm -f '$VCTL_STATE/rsym.q0.inflight'"
vdev_cleanup rsym
expect_error '1' vdusectl create rsym --backend file --path "$img"
echo "$err_text" | grep -qi 'symbolic link' || fail "unclear error for the planted link: $err_text"
assert_eq "$(cat "$VDU_SCRATCH/target")" precious "symlink target content"
[ ! -e /dev/vduse/rsym ] || fail "a failed create left /dev/vduse/rsym"
dmesg_check
