#!/bin/sh
# vdu-timeout: 240
# file backend: fio randwrite + crc32c verify, 512 B .. 1 MiB blocks, QD 1
# and 32, 1 and 2 queues, over (a) a file on tmpfs (page cache: tmpfs has
# no real O_DIRECT) and (b) an image on ext4 on a memory-backed null_blk
# disk (O_DIRECT + libaio).  Zero verify errors, zero I/O errors.
. "$VDU_TESTDIR/lib.sh"
. "$VDU_TESTDIR/lib-file.sh"
need_project
need_cmd vdusectl fio mkfs.ext4

# fio_verify DEV: concurrent jobs on disjoint ranges of DEV (64 MiB)
fio_verify() {
    log "+ fio verify on $1"
    fio --output-format=terse --terse-version=3 \
        --filename="$1" --ioengine=libaio --direct=1 --rw=randwrite \
        --verify=crc32c --do_verify=1 --verify_fatal=1 --verify_backlog=0 \
        --group_reporting=0 \
        --name=b512q1 --bs=512 --iodepth=1 --offset=0 --size=256k \
        --name=b512q32 --bs=512 --iodepth=32 --offset=1m --size=512k \
        --name=b4kq1 --bs=4k --iodepth=1 --offset=2m --size=1m \
        --name=b4kq32 --bs=4k --iodepth=32 --offset=4m --size=4m \
        --name=b64kq32 --bs=64k --iodepth=32 --offset=8m --size=8m \
        --name=b1mq1 --bs=1m --iodepth=1 --offset=16m --size=8m \
        --name=b1mq32 --bs=1m --iodepth=32 --offset=24m --size=24m \
        --name=mixed --bsrange=512-1m --iodepth=16 --offset=48m --size=16m \
        >fio.out 2>fio.err
    rc=$?
    # terse v3: field 5 is the job's error code
    errs=$(awk -F';' '$5 != 0 { print $3 ": error " $5 }' fio.out)
    if [ $rc != 0 ] || [ -n "$errs" ] || grep -qi 'verify' fio.err; then
        cat fio.err; echo "$errs"
        fail "fio verify on $1 failed (rc=$rc)"
    fi
    log "fio: $(wc -l <fio.out) jobs verified, no errors"
}

# check_stats NAME: every queue served I/O, no errors counted
check_stats() {
    reqs=$(stats_requests "$1")
    errs=$(stats_errors "$1")
    log "$1: requests per queue: $reqs; errors: $errs"
    assert_eq "$errs" 0 "$1: request errors"
    for r in $reqs; do
        [ "$r" -gt 0 ] || fail "$1: a queue served no requests ($reqs)"
    done
}

one() {  # NAME PATH QUEUES EXTRA...
    _nm=$1 _p=$2 _q=$3; shift 3
    vdu_create "$_nm" --backend file --path "$_p" --queues "$_q" "$@"
    assert_eq "$(sysq "$VDEV" logical_block_size)" 512 "$VDEV logical block size"
    nq=$(ls -d /sys/block/${VDEV#/dev/}/mq/* | wc -l)
    assert_eq "$nq" "$_q" "$VDEV hardware queues"
    fio_verify "$VDEV"
    check_stats "$_nm"
    vdu_destroy "$_nm"
}

# (a) tmpfs: the backend's page-cache path
one ft1 /scratch/tmpfs.img 1 -o create=1 -o size=64M
one ft2 /scratch/tmpfs.img 2

# (b) ext4 on a memory-backed null_blk disk: O_DIRECT
nullb_new nullb1 160 512
ext4_on /dev/nullb1 /mnt/e
one fe1 /mnt/e/disk.img 1 -o create=1 -o size=64M
grep -q 'O_DIRECT' /run/vduse/fe1.log || fail "fe1 is not using O_DIRECT: $(cat /run/vduse/fe1.log)"
one fe2 /mnt/e/disk.img 2
log "all verified"
