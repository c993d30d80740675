#!/bin/sh
# vdu-timeout: 240
# Benchmark line: 4 KiB random reads at QD32 on one device, same boot,
# through vhost-vdpa (vduse-vhost-blk --bench) and through virtio_vdpa's
# /dev/vdX (fio libaio O_DIRECT).  Informational (TCG numbers), but both
# must run without errors.  VDU_BENCH_SECONDS (default 10) per run.
. "$VDU_TESTDIR/lib.sh"
. "$VDU_TESTDIR/lib-vhost.sh"
need_vhost
need_cmd fio

secs=${VDU_BENCH_SECONDS:-10}
vh_create b0 --backend null --size 1G
vh_attach b0 vhost_vdpa
out=$("$CLIENT" --dev "$NODE" --bench --qd 32 --bs 4096 --seconds "$secs") ||
    fail "vhost bench failed: $out"
echo "$out"
vhost_iops=$(echo "$out" | sed -n 's/.*IOPS \([0-9]*\).*/\1/p')
[ -n "$vhost_iops" ] || fail "no IOPS in: $out"
vh_detach b0

vh_attach b0 virtio_vdpa
fio --name=rr --filename="$NODE" --ioengine=libaio --direct=1 --rw=randread \
    --bs=4k --iodepth=32 --time_based --runtime="$secs" --size=1G \
    --output-format=terse --terse-version=3 >fio.out 2>fio.err ||
    { cat fio.err; fail "fio failed"; }
# terse v3: field 8 is read IOPS, field 5 the error code
virtio_iops=$(awk -F';' '{ print $8 }' fio.out)
err=$(awk -F';' '{ print $5 }' fio.out)
assert_eq "$err" 0 "fio error"
vh_detach b0
vh_healthy b0

ratio=$(awk -v a="$vhost_iops" -v b="$virtio_iops" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "n/a" }')
log "BENCH 4k randread QD32 null backend: vhost-vdpa client $vhost_iops IOPS, virtio-vdpa fio $virtio_iops IOPS, ratio $ratio"
