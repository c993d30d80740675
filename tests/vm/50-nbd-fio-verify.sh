#!/bin/sh
# vdu-timeout: 300
# nbd backend on nbdkit inside the guest: fio randwrite + crc32c verify
# (1 queue; then 2 queues x 2 multi-conn connections), ext4 mkfs/mount/fsck.
. "$VDU_TESTDIR/lib.sh"
. "$VDU_TESTDIR/lib-file.sh"
. "$VDU_TESTDIR/lib-tcp.sh"
need_project
need_cmd vdusectl fio nbdkit mkfs.ext4 fsck.ext4

nbd_start
URL="nbd://127.0.0.1:$NBD_PORT/"

vdu_create t1 --backend nbd --url "$URL"
assert_eq "$(blockdev --getsize64 "$VDEV")" $((128 * 1024 * 1024)) "size from the server"
vdusectl show t1 --json | grep -q '"poll_us":0[,}]' ||
    fail "t1: --poll-us auto polls a network backend: $(vdusectl show t1 --json)"
fio_verify_tcp "$VDEV"
assert_eq "$(stats_errors t1)" 0 "t1: request errors"
vdu_destroy t1

vdu_create t2 --backend nbd --url "$URL" --queues 2 -o connections=2
grep -q '2 connection(s) per queue' /run/vduse/t2.log ||
    fail "t2 does not use 2 connections per queue: $(cat /run/vduse/t2.log)"
fio_verify_tcp "$VDEV" --numjobs=1
assert_eq "$(stats_errors t2)" 0 "t2: request errors"

run mkfs.ext4 -q -F "$VDEV"
mkdir -p /mnt/t
run mount -t ext4 "$VDEV" /mnt/t
on_exit "umount /mnt/t 2>/dev/null"
run dd if=/dev/urandom of=/mnt/t/f bs=1M count=8 status=none
sum1=$(md5sum </mnt/t/f)
run umount /mnt/t
run mount -t ext4 "$VDEV" /mnt/t
assert_eq "$(md5sum </mnt/t/f)" "$sum1" "file content after remount"
run umount /mnt/t
run fsck.ext4 -f -n "$VDEV"
vdu_destroy t2
log "all verified"
