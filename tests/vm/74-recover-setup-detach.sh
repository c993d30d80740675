#!/bin/sh
# vdu-timeout: 180
# Daemon deaths around device setup and teardown.  What the kernel does:
# a message the dead daemon had not answered stays queued (messages read
# but not answered are re-queued when /dev/vduse/NAME is closed) and the
# sender waits up to /sys/class/vduse/NAME/msg_timeout; a new daemon that
# opens the device within that time receives and answers it, so the
# operation completes as if nothing happened.  After the timeout the kernel
# fails the message and marks the device broken; destroy still works.
#  A. killed after create, before any attach (no DRIVER_OK ever): attach
#     refuses at once (no daemon); recover (no negotiation to restore),
#     then attach and I/O work.
#  B. killed while `attach` waits in the virtio probe for a SET_STATUS
#     reply (the daemon is SIGSTOPped first so the kill lands there):
#     recover -> the probe's message reaches the new daemon, attach
#     succeeds, I/O verified.
#  C. killed while `detach` waits for the reset's reply: recover -> detach
#     completes; destroy leaves no /dev/vduse/NAME.
#  D. as C, but nobody recovers and msg_timeout is 2 s: detach completes
#     after the timeout, the device is broken, destroy still works.
. "$VDU_TESTDIR/cli-lib.sh"
. "$VDU_TESTDIR/lib-recover.sh"
need_cmd od cmp

img="$VDU_SCRATCH/img"
truncate -s 16M "$img" || fail "cannot create $img"

# io_check NODE: 1 MiB of random data written with O_DIRECT reads back
io_check() {
    dd if=/dev/urandom of=pat bs=64k count=16 status=none
    dd if=pat of="$1" bs=64k oflag=direct conv=notrunc status=none || fail "write to $1 failed"
    dd if="$1" of=back bs=64k count=16 iflag=direct status=none || fail "read of $1 failed"
    cmp pat back || fail "$1: data read back differs"
    log "$1: 1 MiB written and read back"
}

# wait_blocked PID WHAT: PID is still running after 1 s (it waits for the
# stopped daemon's reply)
wait_blocked() {
    sleep 1
    kill -0 "$1" 2>/dev/null || fail "$2 did not wait for the stopped daemon"
}

# --- A: killed before the driver ever came
vdev_create rk1 --backend file --path "$img" --poll-us 0
kill9 rk1
expect_error '1' vdusectl attach rk1
echo "$err_text" | grep -q 'recover' || fail "attach refusal does not mention recover: $err_text"
[ ! -e /sys/bus/vdpa/devices/rk1 ] || fail "refused attach left a vdpa device"
recover rk1
grep -q 'reconnected (features 0x0)' "$VCTL_STATE/rk1.log" ||
    fail "rk1: no 'reconnected (features 0x0)' in the log"
# the saved --poll-us 0 stays 0 (not "unset", which would mean auto)
vdusectl show rk1 --json | grep -q '"poll_us":0[,}]' ||
    fail "rk1: --poll-us 0 not kept by recover: $(vdusectl show rk1 --json)"
node=$(vdev_attach rk1) || exit 1
io_check "$node"
run vdusectl detach rk1

# --- B: killed while attach waits for a reply
pid=$(daemon_pid rk1) || exit 1
kill -STOP "$pid"
log "+ vdusectl attach rk1 (daemon $pid stopped)"
vdusectl attach rk1 >attach.out 2>attach.err &
A=$!
wait_blocked $A attach
[ -e /sys/bus/vdpa/devices/rk1 ] || fail "attach is not in the probe"
kill9 rk1
log "daemon killed during the probe"
recover rk1
rc=0; wait $A || rc=$?
[ $rc = 0 ] || fail "attach failed after recovery (rc=$rc): $(cat attach.err)"
node=$(cat attach.out)
log "attach completed after recovery: $node"
grep -q 'driver ready' "$VCTL_STATE/rk1.log" || fail "the new daemon did not see DRIVER_OK"
io_check "$node"

# --- C: killed while detach waits for the reset's reply
pid=$(daemon_pid rk1) || exit 1
kill -STOP "$pid"
log "+ vdusectl detach rk1 (daemon $pid stopped)"
vdusectl detach rk1 >detach.out 2>&1 &
D=$!
wait_blocked $D detach
kill9 rk1
log "daemon killed during detach"
recover rk1
rc=0; wait $D || rc=$?
[ $rc = 0 ] || fail "detach failed after recovery (rc=$rc): $(cat detach.out)"
[ ! -e /sys/bus/vdpa/devices/rk1 ] || fail "rk1 is still attached"
log "detach completed after recovery"
vdusectl show rk1 --json >show.json || fail "show rk1 failed"
assert_eq "$(jqv show.json .kernel_broken 2>/dev/null || echo false)" false "rk1 broken after recovery"
run vdusectl destroy rk1
wait_for_gone /dev/vduse/rk1
[ ! -e "$VCTL_STATE/rk1.q0.inflight" ] || fail "destroy left rk1.q0.inflight"

# --- D: killed during detach, nobody recovers
vdev_create rk2 --backend file --path "$img"
node=$(vdev_attach rk2) || exit 1
echo 2 >/sys/class/vduse/rk2/msg_timeout || fail "cannot set msg_timeout"
pid=$(daemon_pid rk2) || exit 1
kill -STOP "$pid"
vdusectl detach rk2 >detach.out 2>&1 &
D=$!
wait_blocked $D detach
kill9 rk2
rc=0; wait $D || rc=$?
log "detach without a daemon returned $rc after the message timeout: $(cat detach.out)"
[ ! -e /sys/bus/vdpa/devices/rk2 ] || fail "rk2 still attached after the timeout"
dmesg_new | grep -qi 'vduse' && log "kernel: $(dmesg_new | grep -i vduse | tail -n 2 | tr '\n' ' ')"
run vdusectl destroy rk2
wait_for_gone /dev/vduse/rk2
no_dstate
dmesg_check
