#!/bin/sh
# bench-rbd-guest.sh ROUNDS SECS -- run by tests/bench/bench-rbd inside one
# guest boot (not a test: vm-run only runs [0-9]*.sh).  One single-node Ceph
# cluster (memstore OSD, auth none) and three clients of it, each on its
# own image (written in full first, so reads reach real objects), all
# attached at once with their defaults:
#   ours  vdusectl create --backend rbd          -> /dev/vdX (virtio_vdpa)
#   oursb the same with CEPH_ARGS=--rbd_non_blocking_aio=false (librbd
#         runs a request on the submitting queue thread, no hand-off)
#   nbd   rbd-nbd map (Ceph's own)               -> /dev/nbdX (kernel NBD)
#   qsd   qemu-storage-daemon --blockdev driver=rbd, vduse-blk export
#                                                -> /dev/vdY (virtio_vdpa)
# Each round runs every workload on every device, the order rotated.  The
# client's CPU time (user + system of its process, from /proc/PID/stat) is
# taken around each run: per I/O it says what the client costs, which
# matters here, where the OSD shares the guest's two vCPUs with it.
# Prints "R DEVICE WORKLOAD IOPS MEAN_US P99_US ROUND CPU_US_PER_IO".
. "$VDU_TESTDIR/lib.sh"
. "$VDU_TESTDIR/lib-ceph.sh"
ROUNDS=${1:-3}
SECS=${2:-10}
need_cmd fio vdpa rbd rbd-nbd qemu-storage-daemon vdusectl
need_project
load_module nbd

IMG_MB=256
BENCH_SIZE=${IMG_MB}m
export BENCH_SIZE
ceph_start
for i in ours oursb nbd qsd; do
    run rbd -c "$CEPH_CONF" create --size ${IMG_MB}M rbd/b-$i
    # reads of objects that were never written cost the OSD nothing
    run rbd -c "$CEPH_CONF" bench --io-type write --io-size 4M --io-pattern seq \
        --io-total ${IMG_MB}M rbd/b-$i >/dev/null
done

dev_ours=$(vdusectl create bo --backend rbd --image rbd/b-ours -o conf="$CEPH_CONF" --attach) ||
    fail "vdusectl create bo"
on_exit "vdusectl destroy bo --force >/dev/null 2>&1"
pid_ours=$(cat /run/vduse/bo.pid)
dev_oursb=$(CEPH_ARGS=--rbd_non_blocking_aio=false vdusectl create bb --backend rbd \
    --image rbd/b-oursb -o conf="$CEPH_CONF" --attach) || fail "vdusectl create bb"
on_exit "vdusectl destroy bb --force >/dev/null 2>&1"
pid_oursb=$(cat /run/vduse/bb.pid)

dev_nbd=$(rbd-nbd map -c "$CEPH_CONF" rbd/b-nbd) || fail "rbd-nbd map"
on_exit "rbd-nbd unmap $dev_nbd >/dev/null 2>&1"
# the daemon rbd-nbd map forked (the guest has no pgrep)
pid_nbd=$(for p in /proc/[0-9]*; do
    tr '\0' ' ' <"$p/cmdline" 2>/dev/null | grep -q '^rbd-nbd map' && echo "${p#/proc/}"
done | head -n 1)

qsd_export bq 1 "driver=rbd,node-name=n,pool=rbd,image=b-qsd,conf=$CEPH_CONF"
dev_qsd=$qsd_dev
pid_qsd=$qsd_pid_bq
[ -n "$pid_ours" ] && [ -n "$pid_nbd" ] && [ -n "$pid_qsd" ] ||
    fail "client pids: ours '$pid_ours' nbd '$pid_nbd' qsd '$pid_qsd'"

log "ours $dev_ours (pid $pid_ours), oursb $dev_oursb (pid $pid_oursb), rbd-nbd $dev_nbd (pid $pid_nbd), qsd $dev_qsd (pid $pid_qsd); $ROUNDS rounds of ${SECS}s"
for d in $dev_ours $dev_oursb $dev_nbd $dev_qsd; do
    echo "# $d: scheduler $(sed 's/.*\[\(.*\)\].*/\1/' /sys/block/${d#/dev/}/queue/scheduler), $(ls /sys/block/${d#/dev/}/mq | wc -l) hardware queue(s), max_sectors_kb $(cat /sys/block/${d#/dev/}/queue/max_sectors_kb)"
done

# cpu_ticks PID: user + system clock ticks of the process (all threads)
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
hz=$(getconf CLK_TCK 2>/dev/null || echo 100)

# warm up every client
for c in ours oursb nbd qsd; do eval "d=\$dev_$c"; bench_fio "$d" rr32 3 >/dev/null; done

r=1
while [ "$r" -le "$ROUNDS" ]; do
    for w in rr32 rw32 rr1 rw1 sr1m; do
        for c in $(rotated "$r" ours oursb nbd qsd); do
            eval "d=\$dev_$c; p=\$pid_$c"
            t0=$(cpu_ticks "$p")
            res=$(bench_fio "$d" "$w" "$SECS")
            t1=$(cpu_ticks "$p")
            [ -n "$res" ] || fail "fio on $d ($w) gave no result"
            echo "R $c $w $res $r $(echo "$res" | awk -v t=$((t1 - t0)) -v hz="$hz" -v s="$SECS" \
                '{ n = $1 * s; printf "%.1f", n ? t * 1000000 / hz / n : 0 }')"
        done
    done
    r=$((r + 1))
done
vdusectl stats bo | sed 's/^/# bo stats: /'
# what each client keeps resident (all its threads and librbd's cache)
for c in ours oursb nbd qsd; do
    eval "p=\$pid_$c"
    echo "M $c $(awk '/^Pss:/ { p = $2 } /^Rss:/ { r = $2 } END { print p, r }' "/proc/$p/smaps_rollup") $(ls /proc/$p/task | wc -l)"
done
echo "# done"
