#!/bin/sh
# The guest kernel has working VDUSE/VDPA plumbing.
. "$VDU_TESTDIR/lib.sh"

[ -c /dev/vduse/control ] || fail "/dev/vduse/control missing"
log "/dev/vduse/control present"

need_cmd vdpa
out=$(vdpa mgmtdev show 2>&1) || fail "vdpa mgmtdev show failed: $out"
echo "$out"
echo "$out" | grep -q 'vduse' || fail "vdpa mgmtdev show does not list vduse"

for d in virtio_vdpa vhost_vdpa; do
    [ -d "/sys/bus/vdpa/drivers/$d" ] || fail "/sys/bus/vdpa/drivers/$d missing"
done
log "vdpa drivers: $(ls /sys/bus/vdpa/drivers | tr '\n' ' ')"
