#!/bin/sh
# Guest half of tests/bench/bench-tcp (run through vm-run --cmd; not a
# test).  One boot, one nbdkit memory export (1 GiB) on 127.0.0.1:10809
# (or, with BENCH_SERVER_HOST, the host's nbdkit at that address and
# BENCH_PORT), two NBD clients back to back on it:
#   ours    vdusectl --backend nbd (virtio_vdpa block device)
#   kernel  the kernel's nbd driver, connected by nbd-client (netlink)
# Each config is QxC: Q queues of C connections each for ours (Q*C
# connections in all), nbd-client -C Q*C for the kernel; fio runs Q jobs.
# Prints one "BENCH engine=E cfg=QxC conns=N round=R job=J iops=N bw_kib=N lat_us=N
# err=N cpu=N" line per run (cpu = guest CPU busy %, all vCPUs, over the
# run); the host half makes the table.
. /tests/lib.sh
RUNTIME=${BENCH_RUNTIME:-5}
CONFIGS=${BENCH_CONFIGS:-"1x1 2x1"}
ROUNDS=${BENCH_ROUNDS:-1}
OURS_ARGS=${BENCH_OURS_ARGS:-}   # more vdusectl create options for ours
SIZE_MB=1024
HOST=${BENCH_SERVER_HOST:-127.0.0.1}
PORT=${BENCH_PORT:-10809}
URL="nbd://$HOST:$PORT/"
export PATH=$PATH:/usr/local/bin:/usr/sbin:/sbin
need_cmd vdusectl nbd-client fio ip

ip link set lo up || fail "cannot bring lo up"
if [ -z "${BENCH_SERVER_HOST:-}" ]; then
    need_cmd nbdkit
    nbdkit -f -i 127.0.0.1 -p $PORT -P /tmp/nbdkit.pid memory ${SIZE_MB}M \
        >/tmp/nbdkit.log 2>&1 &
    nbdkit_pid=$!
    on_exit "kill $nbdkit_pid 2>/dev/null"
    i=0
    while [ ! -s /tmp/nbdkit.pid ]; do
        kill -0 $nbdkit_pid 2>/dev/null || { cat /tmp/nbdkit.log; fail "nbdkit did not start"; }
        [ $i -lt 100 ] || fail "nbdkit did not start in 10 s"
        sleep 0.1; i=$((i + 1))
    done
fi
[ -e /dev/nbd0 ] || fail "no /dev/nbd0 (nbd.ko not loaded?)"
echo "# kernel $(uname -r), $(nproc) vCPUs, $(free -m | awk '/^Mem:/ {print $2}') MiB RAM"
echo "# $(fio --version), $(nbdkit --version | head -n 1), $(nbd-client -V 2>&1 | head -n 1)"
if [ -z "${BENCH_SERVER_HOST:-}" ]; then
    echo "# server: \`nbdkit -f -i 127.0.0.1 -p $PORT memory ${SIZE_MB}M\` in the guest (default 16 threads, parallel, advertises multi-conn)"
else
    echo "# server: the same nbdkit command on the host, reached at $HOST:$PORT through QEMU's user-mode network (virtio-net, slirp); guest CPU % is the clients' alone"
fi

# job NAME RW BS QD
JOBS="randread-4k-qd32 randread 4k 32
read-1m-qd8 read 1m 8"

cpustat() { awk '/^cpu / { print $2 + $3 + $4 + $7 + $8, $5 + $6 }' /proc/stat; }  # busy idle

runfio() {  # ENGINE CFG CONNS NJOBS DEV ROUND
    echo "$JOBS" | while read -r name rw bs qd; do
        per=$((SIZE_MB / $4))
        c0=$(cpustat)
        out=$(fio --output-format=terse --terse-version=3 --name="$name" \
            --filename="$5" --ioengine=libaio --direct=1 --rw="$rw" --bs="$bs" \
            --iodepth="$qd" --numjobs="$4" --group_reporting --time_based \
            --runtime="$RUNTIME" --ramp_time=1 --size=${per}M --offset_increment=${per}M \
            --randrepeat=0 --norandommap 2>&1 | tail -n 1)
        f=$(echo "$out" | awk -F';' '{printf "iops=%d bw_kib=%d lat_us=%.1f err=%s", $8, $7, $40, $5}')
        # whole-guest CPU busy % over the run (incl. ramp): is it CPU bound?
        cpu=$(echo "$c0 $(cpustat)" | awk '{ b = $3 - $1; i = $4 - $2; printf "%d", (b + i > 0 ? 100 * b / (b + i) : 0) }')
        echo "BENCH engine=$1 cfg=$2 conns=$3 round=$6 job=$name $f cpu=$cpu"
    done
}

qinfo() {  # DEV: scheduler and limits, for the notes
    b=/sys/block/${1#/dev/}/queue
    echo "sched=$(sed 's/.*\[\(.*\)\].*/\1/' $b/scheduler) nr_hw_queues=$(ls -d /sys/block/${1#/dev/}/mq/* 2>/dev/null | wc -l) max_sectors_kb=$(cat $b/max_sectors_kb) lbs=$(cat $b/logical_block_size)"
}

# Fill the export once (through our device, 1 connection) so that both
# clients read real pages, not nbdkit's sparse holes.
dev=$(vdusectl create fill --backend nbd --url "$URL" --attach) || fail "vdusectl create fill"
fio --name=fill --filename="$dev" --ioengine=libaio --direct=1 --rw=write --bs=1m \
    --iodepth=8 --size=${SIZE_MB}M >/tmp/fill.out 2>&1 || { cat /tmp/fill.out; fail "fill"; }
vdusectl destroy --force fill >/dev/null || fail "vdusectl destroy fill"
echo "# export filled: fio --rw=write --bs=1m --iodepth=8 --size=${SIZE_MB}M (ours, 1 connection)"

run_ours() {  # CFG Q C N ROUND
    # shellcheck disable=SC2086
    dev=$(vdusectl create t0 --backend nbd --url "$URL" -o connections=$3 --queues $2 $OURS_ARGS --attach) ||
        fail "vdusectl create t0 ($1)"
    [ "$5" = 1 ] && echo "# ours $1: \`vdusectl create t0 --backend nbd --url $URL -o connections=$3 --queues $2 $OURS_ARGS --attach\` -> $dev, $(qinfo $dev); $(grep -o '[a-z]* replies, flags.*' /run/vduse/t0.log | head -n 1)"
    runfio ours $1 $4 $2 $dev $5
    vdusectl stats t0 | sed "s/^/# stats $1 round $5: /"
    vdusectl destroy --force t0 >/dev/null || fail "vdusectl destroy t0"
}

k=0   # a fresh /dev/nbdK per connect: no waiting for the last one to let go
run_kernel() {  # CFG Q C N ROUND
    nd=/dev/nbd$k
    [ -e $nd ] || fail "no $nd (nbd.ko has nbds_max=16: fewer rounds or configs)"
    nbd_client_connect $HOST $PORT $nd $4
    [ "$5" = 1 ] && echo "# kernel $1: \`nbd-client $HOST $PORT $nd -N '' -C $4\` -> $nd, $(qinfo $nd)"
    runfio kernel $1 $4 $2 $nd $5
    nbd-client -d $nd >/dev/null 2>&1 || fail "nbd-client -d $nd"
    k=$((k + 1))
}

# Rounds: every config once per round; odd rounds run ours first, even
# rounds the kernel first, so a drifting host load hits both alike.
r=1
while [ $r -le "$ROUNDS" ]; do
    for cfg in $CONFIGS; do
        q=${cfg%x*} c=${cfg#*x}
        if [ $((r % 2)) = 1 ]; then
            run_ours $cfg $q $c $((q * c)) $r; run_kernel $cfg $q $c $((q * c)) $r
        else
            run_kernel $cfg $q $c $((q * c)) $r; run_ours $cfg $q $c $((q * c)) $r
        fi
    done
    r=$((r + 1))
done
echo "# done"
