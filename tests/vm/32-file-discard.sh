#!/bin/sh
# vdu-timeout: 180
# file backend: DISCARD punches holes in the image (its allocated blocks
# shrink) and the range reads back zeroes; WRITE_ZEROES (blkdiscard -z)
# reads back zeroes and leaves the neighbours alone.  Image on ext4
# (O_DIRECT, ZERO_RANGE) and on tmpfs (page cache, no ZERO_RANGE).
. "$VDU_TESTDIR/lib.sh"
. "$VDU_TESTDIR/lib-file.sh"
need_project
need_cmd vdusectl blkdiscard mkfs.ext4

# zeroes DEV OFFSET_MIB LEN_MIB: succeeds when the range is all zero bytes
nonzero() {
    dd if="$1" bs=1M skip="$2" count="$3" iflag=direct 2>/dev/null | tr -d '\000' | wc -c
}

one() {  # NAME IMAGE
    vdu_create "$1" --backend file --path "$2" -o create=1 -o size=64M
    dev=${VDEV#/dev/}
    dmax=$(sysq "$VDEV" discard_max_bytes); zmax=$(sysq "$VDEV" write_zeroes_max_bytes)
    log "$VDEV: discard_max_bytes $dmax, write_zeroes_max_bytes $zmax"
    [ "$dmax" -gt 0 ] || fail "$VDEV does not take discards"
    [ "$zmax" -gt 0 ] || fail "$VDEV does not take write-zeroes"
    run dd if=/dev/urandom of="$VDEV" bs=1M count=48 oflag=direct conv=fsync 2>/dev/null
    b0=$(blocks "$2")
    log "image: $b0 blocks allocated after writing 48 MiB"
    [ "$b0" -ge $((48 * 2048)) ] || fail "image has only $b0 blocks after writing 48 MiB"

    run blkdiscard -o $((8 << 20)) -l $((16 << 20)) "$VDEV"
    b1=$(blocks "$2")
    log "image: $b1 blocks after discarding 16 MiB"
    [ "$b1" -le $((b0 - 16 * 2048)) ] || fail "discard did not punch holes: $b0 -> $b1 blocks"
    assert_eq "$(nonzero "$VDEV" 8 16)" 0 "discarded range reads back zeroes"
    [ "$(nonzero "$VDEV" 7 1)" -gt 0 ] || fail "the MiB before the discard lost its data"
    [ "$(nonzero "$VDEV" 24 1)" -gt 0 ] || fail "the MiB after the discard lost its data"

    run blkdiscard -z -o $((32 << 20)) -l $((8 << 20)) "$VDEV"
    b2=$(blocks "$2")
    log "image: $b2 blocks after write-zeroes of 8 MiB (no unmap)"
    assert_eq "$(nonzero "$VDEV" 32 8)" 0 "write-zeroes range reads back zeroes"
    [ "$(nonzero "$VDEV" 31 1)" -gt 0 ] && [ "$(nonzero "$VDEV" 40 1)" -gt 0 ] ||
        fail "write-zeroes touched its neighbours"
    # The same through the file, behind the device's back
    f=$(dd if="$2" bs=1M skip=32 count=8 2>/dev/null | tr -d '\000' | wc -c)
    assert_eq "$f" 0 "image file holds zeroes"
    assert_eq "$(stats_errors "$1")" 0 "request errors"
    vdu_destroy "$1"
}

nullb_new nullb1 128 512
ext4_on /dev/nullb1 /mnt/e
one dz1 /mnt/e/d.img
one dz2 /scratch/d.img
