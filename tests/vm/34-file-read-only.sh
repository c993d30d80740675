#!/bin/sh
# vdu-timeout: 120
# file backend read-only: (a) --read-only on a writable image, (b) an image
# on a read-only mount (the backend cannot open it for writing and falls
# back to read-only).  The disk is read-only in the guest (VIRTIO_BLK_F_RO),
# writes fail, reads return the image, and the image does not change.
. "$VDU_TESTDIR/lib.sh"
. "$VDU_TESTDIR/lib-file.sh"
need_project
need_cmd vdusectl mkfs.ext4 sha256sum

nullb_new nullb1 64 512
ext4_on /dev/nullb1 /mnt/e
run dd if=/dev/urandom of=/mnt/e/ro.img bs=1M count=16 2>/dev/null
sum0=$(sha256sum </mnt/e/ro.img)

check_ro() {  # NAME
    assert_eq "$(cat /sys/block/${VDEV#/dev/}/ro)" 1 "$VDEV ro flag"
    assert_eq "$(blockdev --getro "$VDEV")" 1 "blockdev --getro $VDEV"
    must_fail dd if=/dev/zero of="$VDEV" bs=4k count=1 oflag=direct 2>/dev/null
    assert_eq "$(dd if="$VDEV" bs=1M iflag=direct 2>/dev/null | sha256sum)" "$sum0" "$VDEV content"
    assert_eq "$(sha256sum </mnt/e/ro.img)" "$sum0" "image unchanged"
}

vdu_create ro1 --backend file --path /mnt/e/ro.img --read-only
check_ro ro1
vdu_destroy ro1

run mount -o remount,ro /mnt/e
vdu_create ro2 --backend file --path /mnt/e/ro.img
grep -q 'read-only' /run/vduse/ro2.log || fail "no read-only notice in the log: $(cat /run/vduse/ro2.log)"
log "log: $(grep -o 'is not writable.*' /run/vduse/ro2.log | head -n 1)"
check_ro ro2
vdu_destroy ro2
run mount -o remount,rw /mnt/e
