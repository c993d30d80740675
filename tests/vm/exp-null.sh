#!/bin/sh
# experiment (not committed): where does a null request's time go?
. "$VDU_TESTDIR/lib.sh"
SECS=${1:-4}
cpu() { awk '/^cpu[0-9]/ {printf "%s %d %d ", $1, $2+$3+$4+$7+$8, $5+$6} END {print ""}' /proc/stat; }
ctx() { awk '/^ctxt/ {print $2}' /proc/stat; }
run() { # label dev fioargs...
    _l=$1; _d=$2; shift 2
    c0=$(cpu); x0=$(ctx)
    r=$(fio --name=b --filename="$_d" --ioengine=libaio --direct=1 --bs=4k --rw=randread \
        --size=512m --runtime="$SECS" --time_based --output-format=terse --terse-version=3 "$@" 2>/dev/null |
        awk -F';' '{printf "%d %.1f", $8, $40}')
    c1=$(cpu); x1=$(ctx)
    echo "$c0" "$c1" | awk -v l="$_l" -v r="$r" -v x="$((x1 - x0))" '{
        # fields: cpu0 busy idle cpu1 busy idle (x2)
        b0=$5-$2; i0=$6-$3; b1=$8-$5; 
        printf "X %-28s iops/lat %s  cpu0 %d%% cpu1 %d%% ctxsw %s\n", l, r, 100*($8-$2)/(($8-$2)+($9-$3)+1), 100*($11-$5)/(($11-$5)+($12-$6)+1), x }'
}
vd() { # label args...
    _l=$1; shift
    node=$(vdusectl create bn --backend null --size 1G -o read-zeroes=off "$@" --attach) || fail "create $*"
    vdusectl stats bn >/dev/null
    run "$_l rr32" "$node" --iodepth=32 --cpus_allowed=0
    s=$(vdusectl stats bn --json 2>/dev/null | tr -d '\n')
    echo "S $_l $s"
    run "$_l rr1" "$node" --iodepth=1
    run "$_l rr32-free" "$node" --iodepth=32
    vdusectl destroy bn --force
}
need_project
for nq in 1; do
    qemu-storage-daemon --object iothread,id=t0 \
        --blockdev driver=null-co,node-name=n,size=1073741824 \
        --export type=vduse-blk,id=e,node-name=n,name=qsd1,writable=on,num-queues=1,queue-size=256,iothread=t0 \
        >"$VDU_SCRATCH/qsd.log" 2>&1 &
    qpid=$!
    sleep 1
    vdpa dev add name qsd1 mgmtdev vduse
    sleep 1
    dev=/dev/$(ls /sys/bus/vdpa/devices/qsd1/virtio*/block/)
    run "qsd rr32" $dev --iodepth=32 --cpus_allowed=0
    run "qsd rr1" $dev --iodepth=1
    run "qsd rr32-free" $dev --iodepth=32
    vdpa dev del qsd1
    kill $qpid; wait $qpid
done
for cfg in "driver|--irq-cpu-list driver" "follow|" "followq1|--cpu-list 1" "fpoll50|--poll-us 50" "fpoll500|--poll-us 500" "fpoll500q1|--poll-us 500 --cpu-list 1" "poll500q1irq0|--poll-us 500 --cpu-list 1 --irq-cpu-list 0"; do
    l=${cfg%%|*}; a=${cfg#*|}
    # shellcheck disable=SC2086
    vd "$l" $a
done
