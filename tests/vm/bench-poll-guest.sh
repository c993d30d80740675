#!/bin/sh
# bench-poll-guest.sh ROUNDS SECS -- run by tests/bench/bench-poll inside
# one guest boot (not a test: vm-run only runs [0-9]*.sh).  The --poll-us
# choices side by side: qsd's vduse-blk null-co and the null backend with
# --poll-us 0, 100 and 500, all four devices attached at once and their
# fio runs interleaved, the order rotated every round, so that a guest
# that speeds up or slows down during the boot (seen: 30-40%) does not
# favour whichever config runs first or last.  1 queue; 4k randread QD32
# and QD1, 4k randwrite QD32, 128k read QD32.
# Prints "R config workload iops mean_us p99_us round" lines.
. "$VDU_TESTDIR/lib.sh"
ROUNDS=${1:-4}
SECS=${2:-5}
need_cmd fio vdpa qemu-storage-daemon
need_project

fio_run() { # CONFIG DEV WORKLOAD ROUND
    bench_fio "$2" "$3" "$SECS" | sed "s/^/R $1 $3 /; s/\$/ $4/"
}

qsd_export bpq 1 driver=null-co,node-name=n,size=1073741824
dev_qsd=$qsd_dev
for p in 0 100 500; do
    d=$(vdusectl create bp$p --backend null --size 1G -o read-zeroes=off \
        --queues 1 --poll-us $p --attach) || fail "vdusectl create bp$p"
    on_exit "vdusectl destroy bp$p --force >/dev/null 2>&1"
    eval "dev_p$p=$d"
done
log "qsd $dev_qsd, p0 $dev_p0, p100 $dev_p100, p500 $dev_p500; $ROUNDS rounds of ${SECS}s"
# one unrecorded run each to warm up the boot
fio_run warm "$dev_qsd" rr32 0 >/dev/null
fio_run warm "$dev_p0" rr32 0 >/dev/null
configs="qsd p0 p100 p500"
r=1
while [ $r -le "$ROUNDS" ]; do
    for w in rr32 rr1 rw32 sr128; do
        for c in $configs; do
            eval "d=\$dev_$c"
            fio_run "$c" "$d" "$w" "$r"
        done
    done
    # rotate: next round starts with the next config
    configs="${configs#* } ${configs%% *}"
    r=$((r + 1))
done
echo "# done"
