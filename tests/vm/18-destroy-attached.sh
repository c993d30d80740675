#!/bin/sh
# destroy refuses an attached device (one-line error naming detach) and
# leaves it working; destroy --force detaches and destroys it.
. "$VDU_TESTDIR/cli-lib.sh"

vdev_create t18 --backend null --size 128M
node=$(vdev_attach t18) || exit 1
pid=$(daemon_pid t18) || exit 1

expect_error 1 vdusectl destroy t18
echo "$err_text" | grep -q 'detach' || fail "error does not mention detach: $err_text"
echo "$err_text" | grep -q -- '--force' || log "note: error does not mention --force"

# nothing was torn down
[ -b "$node" ] || fail "$node gone after refused destroy"
[ -c /dev/vduse/t18 ] || fail "/dev/vduse/t18 gone after refused destroy"
kill -0 "$pid" || fail "daemon $pid gone after refused destroy"
for f in pid sock json; do
    [ -e "$VCTL_STATE/t18.$f" ] || fail "$VCTL_STATE/t18.$f gone after refused destroy"
done
read_zero "$node" 16
write_direct "$node" 16 || fail "write after refused destroy failed"
vdusectl show t18 >/dev/null || fail "show after refused destroy failed"

run vdusectl destroy t18 --force
wait_for_gone "$node" 10
wait_for_gone /dev/vduse/t18 10
[ ! -e /sys/bus/vdpa/devices/t18 ] || fail "vdpa device t18 still there"
i=0
while kill -0 "$pid" 2>/dev/null; do
    [ $i -lt 50 ] || fail "daemon $pid still running after destroy --force"
    sleep 0.1; i=$((i + 1))
done
for f in pid sock json; do
    [ ! -e "$VCTL_STATE/t18.$f" ] || fail "$VCTL_STATE/t18.$f left after destroy --force"
done
vdusectl list >"$VDU_SCRATCH/list.txt" || fail "list failed"
! grep -q '^t18 ' "$VDU_SCRATCH/list.txt" || fail "t18 still listed: $(cat "$VDU_SCRATCH/list.txt")"
expect_error 3 vdusectl destroy t18
expect_error 3 vdusectl destroy t18 --force
dmesg_check
log "ok"
