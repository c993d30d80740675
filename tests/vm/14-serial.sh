#!/bin/sh
# --serial S shows in /sys/block/vdX/serial; the default is the name.
. "$VDU_TESTDIR/cli-lib.sh"

vdev_create t14a --backend null --size 64M --serial SN-vdu-0042
node=$(vdev_attach t14a) || exit 1
assert_eq "$(sysblk "$node" serial)" SN-vdu-0042 "serial"

# 20 bytes is the virtio-blk maximum
vdev_create t14b --backend null --size 64M --serial ABCDEFGHIJ0123456789
node=$(vdev_attach t14b) || exit 1
assert_eq "$(sysblk "$node" serial)" ABCDEFGHIJ0123456789 "20-byte serial"

vdev_create t14c --backend null --size 64M
node=$(vdev_attach t14c) || exit 1
assert_eq "$(sysblk "$node" serial)" t14c "default serial (the name)"

# 21 bytes does not fit
expect_error 2 vdusectl create t14d --backend null --size 64M --serial ABCDEFGHIJ0123456789X
[ ! -e /dev/vduse/t14d ] || fail "t14d created despite the error"
dmesg_check
log "ok"
