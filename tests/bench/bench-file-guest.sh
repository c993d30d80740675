#!/bin/sh
# Guest half of tests/bench/bench-file (run through vm-run --cmd; not a
# test).  One boot, one image on ext4 on a memory-backed null_blk disk,
# three engines back to back on it:
#   ours  vdusectl --backend file (O_DIRECT + libaio), virtio_vdpa
#   poll  the same with --poll-us $POLL_US (unless POLL_US is empty)
#   qsd   qemu-storage-daemon vduse-blk export, aio=native, cache.direct=on
#   loop  the kernel loop device, --direct-io=on
# Prints one "BENCH engine=E q=Q job=J iops=N bw_kib=N lat_us=N" line
# per run; the host half makes the table.
. /tests/lib.sh
. /tests/lib-file.sh
RUNTIME=${BENCH_RUNTIME:-5}
POLL_US=${BENCH_POLL_US:-}
QUEUES=${BENCH_QUEUES:-"1 2"}
IMG_MB=${BENCH_IMG_MB:-512}
export PATH=$PATH:/usr/local/bin

nullb_new nullb1 $((IMG_MB + 128)) 512
ext4_on /dev/nullb1 /mnt/b
img=/mnt/b/bench.img
dd if=/dev/zero of=$img bs=1M count=$IMG_MB oflag=direct 2>/dev/null || fail "dd image"
sync
echo "# kernel $(uname -r), $(nproc) vCPUs, image $IMG_MB MiB on ext4 on null_blk (memory_backed)"
echo "# fio $(fio --version), $(qemu-storage-daemon --version | head -n 1)"

# job NAME RW BS QD
JOBS="randread-4k-qd1 randread 4k 1
randread-4k-qd32 randread 4k 32
randwrite-4k-qd1 randwrite 4k 1
randwrite-4k-qd32 randwrite 4k 32
read-1m-qd8 read 1m 8
write-1m-qd8 write 1m 8"

runfio() {  # ENGINE Q DEV
    echo "$JOBS" | while read -r name rw bs qd; do
        out=$(fio --output-format=terse --terse-version=3 --name="$name" \
            --filename="$3" --ioengine=libaio --direct=1 --rw="$rw" --bs="$bs" \
            --iodepth="$qd" --numjobs="$2" --group_reporting --time_based \
            --runtime="$RUNTIME" --ramp_time=1 --size=$((IMG_MB - 16))M \
            --randrepeat=0 --norandommap 2>&1 | tail -n 1)
        case $rw in
        *read) f=$(echo "$out" | awk -F';' '{printf "iops=%d bw_kib=%d lat_us=%.1f err=%s", $8, $7, $40, $5}') ;;
        *) f=$(echo "$out" | awk -F';' '{printf "iops=%d bw_kib=%d lat_us=%.1f err=%s", $49, $48, $81, $5}') ;;
        esac
        echo "BENCH engine=$1 q=$2 job=$name $f"
    done
}

for q in $QUEUES; do
    # (a) ours
    dev=$(vdusectl create vb --backend file --path $img --queues $q --attach) || fail "vdusectl create"
    echo "# ours q=$q: $dev $(grep -o 'file: .*' /run/vduse/vb.log | head -n 1)"
    runfio ours $q $dev
    vdusectl stats vb | sed 's/^/# stats: /'
    vdusectl destroy --force vb >/dev/null || fail "vdusectl destroy"
    # (a') ours, tuned for latency: busy-poll the ring after each batch
    if [ -n "$POLL_US" ]; then
        dev=$(vdusectl create vb --backend file --path $img --queues $q --poll-us $POLL_US --attach) ||
            fail "vdusectl create --poll-us"
        echo "# poll q=$q: $dev --poll-us $POLL_US"
        runfio poll $q $dev
        vdusectl destroy --force vb >/dev/null || fail "vdusectl destroy"
    fi

    # (b) qemu-storage-daemon
    qemu-storage-daemon \
        --blockdev driver=file,node-name=f,filename=$img,aio=native,cache.direct=on \
        --export type=vduse-blk,id=e,node-name=f,name=qsd0,writable=on,num-queues=$q,queue-size=256 \
        >/tmp/qsd.log 2>&1 &
    qsd=$!
    wait_for_path /sys/class/vduse/qsd0 10
    vdpa dev add name qsd0 mgmtdev vduse || fail "vdpa dev add qsd0"
    sleep 0.5
    drv=$(basename "$(readlink /sys/bus/vdpa/devices/qsd0/driver 2>/dev/null)")
    if [ "$drv" != virtio_vdpa ]; then
        [ -n "$drv" ] && echo qsd0 >/sys/bus/vdpa/drivers/$drv/unbind
        echo qsd0 >/sys/bus/vdpa/drivers/virtio_vdpa/bind || fail "bind qsd0"
    fi
    qdev=$(wait_vdpa_block qsd0) || { cat /tmp/qsd.log; fail "qsd0: no block device"; }
    echo "# qsd q=$q: $qdev"
    runfio qsd $q $qdev
    vdpa dev del qsd0
    kill $qsd; wait $qsd 2>/dev/null

    # (c) loop, direct I/O (one queue whatever q is; numjobs=q as for the others)
    ldev=$(losetup --direct-io=on -f --show $img) || fail losetup
    echo "# loop q=$q: $ldev dio=$(cat /sys/block/${ldev#/dev/}/loop/dio)"
    runfio loop $q $ldev
    losetup -d $ldev
done
echo "# done"
