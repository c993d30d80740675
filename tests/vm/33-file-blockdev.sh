#!/bin/sh
# vdu-timeout: 180
# file backend over a block device: a memory-backed null_blk disk with
# 4 KiB sectors.  The VDUSE disk takes its logical block size (4096) and
# size from it; fio verify passes; discard goes through (BLKDISCARD).
# Then an image on ext4 on that disk: block size 4096 as well.
. "$VDU_TESTDIR/lib.sh"
. "$VDU_TESTDIR/lib-file.sh"
need_project
need_cmd vdusectl fio blkdiscard

nullb_new nullb2 64 4096 1
vdu_create bd1 --backend file --path /dev/nullb2 --queues 2
assert_eq "$(sysq "$VDEV" logical_block_size)" 4096 "$VDEV logical block size"
assert_eq "$(blockdev --getsize64 "$VDEV")" $((64 << 20)) "$VDEV size"
log "$VDEV: logical $(sysq "$VDEV" logical_block_size), physical $(sysq "$VDEV" physical_block_size), discard_max_bytes $(sysq "$VDEV" discard_max_bytes)"

fio --output-format=terse --terse-version=3 --filename="$VDEV" --ioengine=libaio \
    --direct=1 --rw=randwrite --verify=crc32c --do_verify=1 --verify_fatal=1 \
    --name=a --bs=4k --iodepth=32 --offset=0 --size=8m \
    --name=b --bs=64k --iodepth=8 --offset=8m --size=8m \
    --name=c --bsrange=4k-1m --iodepth=16 --offset=16m --size=16m \
    >fio.out 2>fio.err || { cat fio.err; fail "fio verify failed"; }
errs=$(awk -F';' '$5 != 0' fio.out)
[ -z "$errs" ] || fail "fio job errors: $errs"
log "fio verify: $(wc -l <fio.out) jobs OK"

# The data is really on the null_blk disk
run dd if=/dev/urandom of=/scratch/pat bs=64k count=4 2>/dev/null
run dd if=/scratch/pat of="$VDEV" bs=64k seek=600 oflag=direct conv=fsync 2>/dev/null
a=$(sha256sum </scratch/pat)
b=$(dd if=/dev/nullb2 bs=64k skip=600 count=4 iflag=direct 2>/dev/null | sha256sum)
assert_eq "$b" "$a" "data on /dev/nullb2"

if [ "$(sysq "$VDEV" discard_max_bytes)" -gt 0 ]; then
    run blkdiscard -o $((600 * 65536)) -l $((4 * 65536)) "$VDEV"
    z=$(dd if=/dev/nullb2 bs=64k skip=600 count=4 iflag=direct 2>/dev/null | tr -d '\000' | wc -c)
    assert_eq "$z" 0 "discarded range of the null_blk disk reads zeroes"
else
    fail "no discard on $VDEV although /dev/nullb2 has it"
fi
assert_eq "$(stats_errors bd1)" 0 "request errors"
vdu_destroy bd1

# An image with O_DIRECT on a filesystem over 4 KiB sectors: the backend
# takes the file's direct-I/O alignment (statx DIOALIGN) as block size.
ext4_on /dev/nullb2 /mnt/e4k
vdu_create bd2 --backend file --path /mnt/e4k/img -o create=1 -o size=16M
assert_eq "$(sysq "$VDEV" logical_block_size)" 4096 "image on a 4Kn disk: logical block size"
run dd if=/scratch/pat of="$VDEV" bs=64k seek=10 oflag=direct conv=fsync 2>/dev/null
assert_eq "$(dd if="$VDEV" bs=64k skip=10 count=4 iflag=direct 2>/dev/null | sha256sum)" "$a" "data read back"
assert_eq "$(stats_errors bd2)" 0 "request errors"
vdu_destroy bd2
