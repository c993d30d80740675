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
    case $3 in
    rr32) _a="--rw=randread --bs=4k --iodepth=32" ;;
    rr1) _a="--rw=randread --bs=4k --iodepth=1" ;;
    rw32) _a="--rw=randwrite --bs=4k --iodepth=32" ;;
    sr128) _a="--rw=read --bs=128k --iodepth=32" ;;
    esac
    # shellcheck disable=SC2086
    fio --name=b --filename="$2" --ioengine=libaio --direct=1 $_a --size=512m \
        --runtime="$SECS" --time_based --lat_percentiles=1 \
        --output-format=terse --terse-version=3 2>/dev/null |
    awk -F';' -v c="$1" -v w="$3" -v r="$4" '{
        o = (w == "rw32") ? 41 : 0      # write fields follow the read ones
        p = $(30 + o); sub(/.*=/, "", p)
        printf "R %s %s %d %.1f %s %s\n", c, w, $(8 + o), $(40 + o), p, r }'
}

qemu-storage-daemon --object iothread,id=t0 \
    --blockdev driver=null-co,node-name=n,size=1073741824 \
    --export type=vduse-blk,id=e,node-name=n,name=bpq,writable=on,num-queues=1,queue-size=256,iothread=t0 \
    >"$VDU_SCRATCH/qsd.log" 2>&1 &
qpid=$!
on_exit "kill $qpid 2>/dev/null"
wait_for_path /dev/vduse/bpq 10
vdpa dev add name bpq mgmtdev vduse || fail "vdpa dev add bpq"
on_exit "vdpa dev del bpq 2>/dev/null"
[ -e /sys/bus/vdpa/devices/bpq/driver ] ||
    echo bpq >/sys/bus/vdpa/drivers/virtio_vdpa/bind 2>/dev/null
dev_qsd=$(wait_vdpa_block bpq) || fail "qsd: no block device"
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
