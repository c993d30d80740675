#!/bin/sh
# bench-peers-guest.sh ROUNDS SECS -- run by tests/bench/bench-peers inside
# one guest boot (not a test: vm-run only runs [0-9]*.sh).  The null
# backend with its defaults against its peers, on equal terms: kernel
# null_blk (irqmode=0, 2 submit queues), qemu-storage-daemon's vduse-blk
# null-co with 1 and 2 queues, and vdusectl's null backend with 1 and 2
# queues, all attached at once.  Every run first sets its device's I/O
# scheduler, so that each comparison is made under the same one, for
# "none" and for "mq-deadline" (a 1-queue virtio disk gets mq-deadline by
# default, null_blk and 2-queue disks get none).  The 2-queue devices
# also run one job (QD32 and QD1), and beside vdusectl's defaults runs
# ours2k, 2 queues that sleep until kicked (--poll-us 0, interrupts where
# the driver puts them: the defaults for 2 queues on 2 CPUs before
# polling queues followed their threads).  Each round runs every
# workload on every device, the device order rotated each round, so a
# guest whose speed drifts during the boot favours no device.
# Prints "R SCHED DEVICE WORKLOAD IOPS MEAN_US P99_US ROUND" lines.
. "$VDU_TESTDIR/lib.sh"
ROUNDS=${1:-4}
SECS=${2:-5}
need_cmd fio vdpa qemu-storage-daemon
need_project
nullb_ceiling || fail "bench-peers needs kernel null_blk"
dev_nb=/dev/nullb0
qsd_export pq1 1 driver=null-co,node-name=n,size=1073741824
dev_qsd1=$qsd_dev
qsd_export pq2 2 driver=null-co,node-name=n,size=1073741824
dev_qsd2=$qsd_dev
for v in "1|--queues 1" "2|--queues 2" "2k|--queues 2 --poll-us 0 --irq-cpu-list driver"; do
    n=${v%%|*}
    # shellcheck disable=SC2086
    d=$(vdusectl create pv$n --backend null --size 1G -o read-zeroes=off \
        ${v#*|} --attach) || fail "vdusectl create pv$n"
    on_exit "vdusectl destroy pv$n --force >/dev/null 2>&1"
    eval "dev_ours$n=$d"
done
log "null_blk $dev_nb, qsd $dev_qsd1 $dev_qsd2, ours $dev_ours1 $dev_ours2 $dev_ours2k; $ROUNDS rounds of ${SECS}s"
for d in $dev_nb $dev_qsd1 $dev_qsd2 $dev_ours1 $dev_ours2 $dev_ours2k; do
    echo "# $d: default scheduler $(sed 's/.*\[\(.*\)\].*/\1/' /sys/block/${d#/dev/}/queue/scheduler), $(ls /sys/block/${d#/dev/}/mq | wc -l) hardware queue(s)"
done
# unrecorded runs to warm up the boot
bench_fio "$dev_qsd1" rr32 "$SECS" >/dev/null
bench_fio "$dev_ours1" rr32 "$SECS" >/dev/null

# the devices each workload runs on (rr32q2, rr1q2: rr32, rr1 on 2 queues)
one="nb qsd1 ours1"
two="nb qsd2 ours2 ours2k"
twoone="qsd2 ours2 ours2k"
r=1
while [ $r -le "$ROUNDS" ]; do
    for s in none mq-deadline; do
        for w in rr32 rr1 rr32x2 rr32q2 rr1q2; do
            case $w in rr32x2) devs=$two ;; *q2) devs=$twoone ;; *) devs=$one ;; esac
            # shellcheck disable=SC2086
            for c in $(rotated "$r" $devs); do
                eval "d=\$dev_$c"
                echo "$s" >/sys/block/"${d#/dev/}"/queue/scheduler ||
                    fail "cannot set scheduler $s on $d"
                bench_row "$d" "${w%q2}" "$SECS" "$r" "$s" "$c" "$w"
            done
        done
    done
    r=$((r + 1))
done
for n in 1 2 2k; do vdusectl stats pv$n | sed "s/^/# pv$n stats: /"; done
echo "# done"
