#!/bin/sh
# bench-ublk-guest.sh ROUNDS SECS -- run by tests/bench/bench-ublk inside
# one guest boot (not a test: vm-run only runs [0-9]*.sh).  Our null and
# file backends against ublk (ublksrv's null and loop targets),
# qemu-storage-daemon's vduse-blk export and the kernel's own devices, all
# attached at once, one queue each:
#   null group: null_blk (the ceiling), ublk -t null, qsd null-co, ours null
#   file group, one image on ext4 on a memory-backed null_blk disk:
#     kernel loop (direct I/O), ublk -t loop (O_DIRECT, io_uring), qsd
#     (aio=native, cache.direct=on), ours file (defaults)
# Every device runs under the "none" scheduler (ublk and one-queue virtio
# disks default to mq-deadline, null_blk and loop to none): the same for
# all.  Each round runs every workload on every device of its group, the
# order rotated each round.  Prints "R GROUP DEVICE WORKLOAD IOPS MEAN_US
# P99_US ROUND" lines and "# ..." facts.
. "$VDU_TESTDIR/lib.sh"
. "$VDU_TESTDIR/lib-file.sh"
ROUNDS=${1:-3}
SECS=${2:-4}
FILE_ARGS=${BENCH_FILE_ARGS:-}
# set (even to ""): a second ours file device "ofileb" with these
# arguments, for an A/B of an option in the same boot
FILE_ARGS_B=${BENCH_FILE_ARGS_B-unset}
NULL_ARGS=${BENCH_NULL_ARGS:-}
NULL_ARGS_B=${BENCH_NULL_ARGS_B-unset}   # the same for "onullb"
IMG_MB=${BENCH_IMG_MB:-512}
need_cmd fio vdpa qemu-storage-daemon losetup mkfs.ext4
need_project
nullb_ceiling || fail "bench-ublk needs kernel null_blk"
dev_nb=/dev/nullb0

# --- null group
ublk_add -t null -q 1 -d 256 || fail "bench-ublk needs ublk (UBLK=, ublk_drv)"
dev_unull=$ublk_dev
qsd_export qnull 1 driver=null-co,node-name=n,size=1073741824
dev_qnull=$qsd_dev
# shellcheck disable=SC2086
dev_onull=$(vdusectl create onull --backend null --size 1G -o read-zeroes=off $NULL_ARGS --attach) ||
    fail "vdusectl create onull"
on_exit "vdusectl destroy onull --force >/dev/null 2>&1"
ndevs="nb unull qnull onull"
if [ "$NULL_ARGS_B" != unset ]; then
    # shellcheck disable=SC2086
    dev_onullb=$(vdusectl create onullb --backend null --size 1G -o read-zeroes=off $NULL_ARGS_B --attach) ||
        fail "vdusectl create onullb"
    on_exit "vdusectl destroy onullb --force >/dev/null 2>&1"
    ndevs="$ndevs onullb"
    echo "# ours-b null: $NULL_ARGS_B"
fi

# --- file group
nullb_new nullb1 $((IMG_MB + 128)) 4096
ext4_on /dev/nullb1 /mnt/b
img=/mnt/b/bench.img
dd if=/dev/zero of=$img bs=1M count="$IMG_MB" oflag=direct 2>/dev/null || fail "dd image"
sync
dev_kloop=$(losetup --direct-io=on -f --show $img) || fail losetup
on_exit "losetup -d $dev_kloop"
ublk_add -t loop -q 1 -d 256 -f $img || fail "ublk loop"
dev_uloop=$ublk_dev
qsd_export qfile 1 driver=file,node-name=n,filename=$img,aio=native,cache.direct=on
dev_qfile=$qsd_dev
# shellcheck disable=SC2086
dev_ofile=$(vdusectl create ofile --backend file --path $img $FILE_ARGS --attach) ||
    fail "vdusectl create ofile"
on_exit "vdusectl destroy ofile --force >/dev/null 2>&1"
fdevs="kloop uloop qfile ofile"
if [ "$FILE_ARGS_B" != unset ]; then
    # shellcheck disable=SC2086
    dev_ofileb=$(vdusectl create ofileb --backend file --path $img $FILE_ARGS_B --attach) ||
        fail "vdusectl create ofileb"
    on_exit "vdusectl destroy ofileb --force >/dev/null 2>&1"
    fdevs="$fdevs ofileb"
    echo "# ours-b file: $FILE_ARGS_B; $(grep -o 'file: .*' /run/vduse/ofileb.log | head -n 1)"
fi

echo "# kernel $(uname -r), $(nproc) vCPUs; fio $(fio --version); $(qemu-storage-daemon --version | head -n 1)"
echo "# image $IMG_MB MiB on ext4 on null_blk (memory_backed, 4k blocks); ours file: $(grep -o 'file: .*' /run/vduse/ofile.log | head -n 1)"
for c in $ndevs $fdevs; do
    eval "d=\$dev_$c"
    echo none >/sys/block/"${d#/dev/}"/queue/scheduler || fail "cannot set scheduler none on $d"
    echo "# $c $d: $(ls /sys/block/${d#/dev/}/mq | wc -l) hardware queue(s), max_sectors_kb $(cat /sys/block/${d#/dev/}/queue/max_sectors_kb)"
done
log "$ROUNDS rounds of ${SECS}s"
# unrecorded runs to warm up the boot
bench_fio "$dev_unull" rr32 "$SECS" >/dev/null
bench_fio "$dev_onull" rr32 "$SECS" >/dev/null

r=1
while [ $r -le "$ROUNDS" ]; do
    for w in rr32 rr1; do
        # shellcheck disable=SC2086
        for c in $(rotated "$r" $ndevs); do
            eval "d=\$dev_$c"
            bench_row "$d" "$w" "$SECS" "$r" null "$c" "$w"
        done
    done
    for w in rr32 rr1 rw32 sr1m8; do
        # shellcheck disable=SC2086
        for c in $(rotated "$r" $fdevs); do
            eval "d=\$dev_$c"
            BENCH_SIZE=$((IMG_MB - 16))m bench_row "$d" "$w" "$SECS" "$r" file "$c" "$w"
        done
    done
    r=$((r + 1))
done
for c in onull ${dev_onullb:+onullb} ofile ${dev_ofileb:+ofileb}; do vdusectl stats $c | sed "s/^/# $c stats: /"; done
echo "# done"
