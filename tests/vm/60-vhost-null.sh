#!/bin/sh
# vdu-timeout: 240
# vhost-vdpa path, null backend: `vdusectl attach --driver vhost_vdpa` gives
# /dev/vhost-vdpa-N, and the userspace virtio-blk driver (vduse-vhost-blk)
# runs its full scenario on it: I/O, flush, get-id, discard, write-zeroes,
# IOERR/UNSUPP, IOTLB updates with requests in flight, remapping the data
# area, a request on an unmapped IOVA, reset + re-initialisation.  The
# daemon must come out of it healthy and serve a second driver session.
. "$VDU_TESTDIR/lib.sh"
. "$VDU_TESTDIR/lib-vhost.sh"
need_vhost

vh_create n0 --backend null --size 256M --queues 2 --serial vhost-null-0
pid=$(daemon_pid n0)
[ -n "$pid" ] || fail "no daemon pid for n0"
vh_attach n0 vhost_vdpa

run "$CLIENT" --dev "$NODE" --null --serial vhost-null-0 --scenario full
vh_healthy n0
assert_eq "$(daemon_pid n0)" "$pid" "n0 daemon pid (it must survive)"

# A second session on the same node: the fd is re-opened (vhost-vdpa resets
# the device on open and release), flags instead of EVENT_IDX, small ring.
run "$CLIENT" --dev "$NODE" --null --serial vhost-null-0 --scenario basic,remap \
    --no-event-idx --queue-size 16
# A short benchmark run must work too (numbers: 62-vhost-bench).
run "$CLIENT" --dev "$NODE" --bench --qd 8 --seconds 2
vh_healthy n0

# Detach/destroy while the daemon is healthy.
vh_detach n0
run vdusectl destroy n0
log "ok"
