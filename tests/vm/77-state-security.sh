#!/bin/sh
# vdu-timeout: 120
# The state directory is 0700 root, every file in it (pid, socket, json,
# log, inflight logs) 0600 root; a symlink planted where an inflight log
# goes is not followed (create fails clearly, the target is untouched).
# With VDUSE_GROUP at create time, that group may look (list, show, stats
# through the socket) but not stop the daemon; anyone else is refused
# with a message that says why.
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
# --- a group that may look, not touch (a state directory of its own, so
# that /run/vduse stays root's for the other tests)
gdir=/run/vduse-grp
rm -rf "$gdir"
on_exit "vdusectl destroy rgrp --state-dir $gdir --force >/dev/null 2>&1; rm -rf $gdir"
run env VDUSE_GROUP=4242 vdusectl create rgrp --backend null --size 16M --state-dir "$gdir"
assert_eq "$(stat -c '%a %u %g' "$gdir")" "750 0 4242" "group state dir mode/owner/group"
for f in rgrp.pid rgrp.json rgrp.log; do
    assert_eq "$(stat -c '%a %u %g' "$gdir/$f")" "640 0 4242" "$f with VDUSE_GROUP"
done
assert_eq "$(stat -c '%a %u %g' "$gdir/rgrp.sock")" "660 0 4242" "socket with VDUSE_GROUP"
member() { setpriv --reuid=1000 --regid=4242 --clear-groups "$@"; }
other() { setpriv --reuid=1000 --regid=1000 --clear-groups "$@"; }
out=$(member vdusectl show rgrp --state-dir "$gdir" --json) ||
    fail "a member of the group cannot show rgrp: $out"
echo "$out" | grep -q '"daemon":true' || fail "member's show has no live daemon info: $out"
member vdusectl stats rgrp --state-dir "$gdir" >/dev/null || fail "a member cannot read stats"
member vdusectl list --state-dir "$gdir" | grep -q rgrp || fail "a member cannot list rgrp"
err_text=$(member vdusectl destroy rgrp --state-dir "$gdir" 2>&1) &&
    fail "a group member destroyed rgrp"
log "member's destroy refused: $err_text"
[ -e /sys/class/vduse/rgrp ] || fail "rgrp is gone after a member's refused destroy"
err_text=$(other vdusectl show rgrp --state-dir "$gdir" 2>&1) && fail "a non-member could show rgrp"
echo "$err_text" | grep -q "cannot read the state directory $gdir: run vdusectl as root, or as a member" ||
    fail "unclear refusal for a non-member: $err_text"
run vdusectl destroy rgrp --state-dir "$gdir"
log "VDUSE_GROUP: members look, only root stops, others refused"
dmesg_check
