#!/bin/sh
# A direct-I/O fio randrw run on a null device completes without errors,
# and the daemon's counters saw the I/O without errors either.
. "$VDU_TESTDIR/cli-lib.sh"
need_cmd fio jq

vdev_create t11 --backend null --size 1G
node=$(vdev_attach t11) || exit 1
log "fio randrw on $node"
fio --name=randrw --filename="$node" --direct=1 --ioengine=libaio \
    --rw=randrw --bs=4k --iodepth=16 --runtime=3 --time_based \
    --output-format=json --output="$VDU_SCRATCH/fio.json" >"$VDU_SCRATCH/fio.log" 2>&1
rc=$?
cat "$VDU_SCRATCH/fio.log"
[ $rc = 0 ] || { cat "$VDU_SCRATCH/fio.json"; fail "fio exited with $rc"; }
j=$VDU_SCRATCH/fio.json
err=$(jqv "$j" '.jobs[0].error')
rio=$(jqv "$j" '.jobs[0].read.total_ios')
wio=$(jqv "$j" '.jobs[0].write.total_ios')
rbw=$(jqv "$j" '.jobs[0].read.bw')
wbw=$(jqv "$j" '.jobs[0].write.bw')
log "fio: error=$err read ios=$rio (${rbw} KiB/s) write ios=$wio (${wbw} KiB/s)"
assert_eq "$err" 0 "fio job error"
[ "$rio" -gt 0 ] || fail "fio did no reads"
[ "$wio" -gt 0 ] || fail "fio did no writes"
# no per-direction errors either (short I/O shows up here)
for k in read.short_ios write.short_ios read.drop_ios write.drop_ios; do
    v=$(jqv "$j" ".jobs[0].$k // 0")
    assert_eq "$v" 0 "fio $k"
done

vdusectl stats t11 --json >"$VDU_SCRATCH/st.json" || fail "stats failed"
cat "$VDU_SCRATCH/st.json"
reqs=$(jqv "$VDU_SCRATCH/st.json" '[.queues[].requests] | add')
errs=$(jqv "$VDU_SCRATCH/st.json" '[.queues[].errors] | add')
wb=$(jqv "$VDU_SCRATCH/st.json" '[.queues[].write_bytes] | add')
rb=$(jqv "$VDU_SCRATCH/st.json" '[.queues[].read_bytes] | add')
inflight=$(jqv "$VDU_SCRATCH/st.json" '[.queues[].inflight] | add')
assert_eq "$errs" 0 "daemon error count"
assert_eq "$inflight" 0 "requests in flight after fio"
[ "$reqs" -ge $((rio + wio)) ] || fail "daemon counted $reqs requests, fio did $((rio + wio))"
[ "$wb" -ge $((wio * 4096)) ] || fail "daemon write_bytes $wb < fio's $((wio * 4096))"
[ "$rb" -ge $((rio * 4096)) ] || fail "daemon read_bytes $rb < fio's $((rio * 4096))"
dmesg_check
log "ok"
