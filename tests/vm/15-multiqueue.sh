#!/bin/sh
# --queues 2: two blk-mq hardware queues, both carry I/O, and `vdusectl
# stats` counts requests on both; --poll-us auto polls with at most one
# queue per CPU and never on one CPU.
. "$VDU_TESTDIR/cli-lib.sh"
need_cmd fio jq

ncpu=$(grep -c '^processor' /proc/cpuinfo)
[ "$ncpu" -ge 2 ] || skip "needs 2 CPUs (VDU_VM_SMP), have $ncpu"

vdev_create t15 --backend null --size 1G --queues 2
node=$(vdev_attach t15) || exit 1
nq=$(ls "/sys/block/${node#/dev/}/mq" | wc -l)
assert_eq "$nq" 2 "entries in /sys/block/${node#/dev/}/mq"

vdusectl show t15 --json >"$VDU_SCRATCH/show.json" || fail "show failed"
assert_eq "$(jqv "$VDU_SCRATCH/show.json" .queues)" 2 "show .queues"
assert_eq "$(jqv "$VDU_SCRATCH/show.json" .vdpa.max_vqs)" 2 "show .vdpa.max_vqs"
# --poll-us auto: one polling queue thread per CPU at most
want=0; [ "$ncpu" -ge 2 ] && want=500
assert_eq "$(jqv "$VDU_SCRATCH/show.json" .poll_us)" "$want" "show .poll_us (auto, $ncpu CPUs)"
# ... and none with more queues than CPUs, or with one CPU to run on
vdev_create t15m --backend null --size 64M --queues $((ncpu + 1))
vdusectl show t15m --json >"$VDU_SCRATCH/show-m.json" || fail "show t15m failed"
assert_eq "$(jqv "$VDU_SCRATCH/show-m.json" .poll_us)" 0 "show .poll_us (auto, $((ncpu + 1)) queues, $ncpu CPUs)"
vdusectl destroy t15m || fail "destroy t15m"
vdev_cleanup t15s
run taskset -c 0 vdusectl create t15s --backend null --size 64M
vdusectl show t15s --json >"$VDU_SCRATCH/show-s.json" || fail "show t15s failed"
assert_eq "$(jqv "$VDU_SCRATCH/show-s.json" .poll_us)" 0 "show .poll_us (auto, 1 queue, run on 1 CPU)"
vdusectl destroy t15s || fail "destroy t15s"

# one job pinned to each CPU: blk-mq maps CPU n to hardware queue n
fio --name=mq --filename="$node" --direct=1 --ioengine=libaio --rw=randrw \
    --bs=4k --iodepth=8 --numjobs=2 --cpus_allowed=0-1 \
    --cpus_allowed_policy=split --runtime=3 --time_based --group_reporting \
    --output-format=json --output="$VDU_SCRATCH/fio.json" >"$VDU_SCRATCH/fio.log" 2>&1
rc=$?
cat "$VDU_SCRATCH/fio.log"
[ $rc = 0 ] || { cat "$VDU_SCRATCH/fio.json"; fail "fio exited with $rc"; }
assert_eq "$(jqv "$VDU_SCRATCH/fio.json" '.jobs[0].error')" 0 "fio error"

vdusectl stats t15 --json >"$VDU_SCRATCH/st.json" || fail "stats failed"
cat "$VDU_SCRATCH/st.json"
assert_eq "$(jqv "$VDU_SCRATCH/st.json" '.queues | length')" 2 "queues in stats"
for q in 0 1; do
    r=$(jqv "$VDU_SCRATCH/st.json" ".queues[] | select(.index == $q) | .requests")
    e=$(jqv "$VDU_SCRATCH/st.json" ".queues[] | select(.index == $q) | .errors")
    en=$(jqv "$VDU_SCRATCH/st.json" ".queues[] | select(.index == $q) | .enabled")
    log "queue $q: $r requests, $e errors, enabled=$en"
    [ "$r" -gt 100 ] || fail "queue $q carried only $r requests"
    assert_eq "$e" 0 "errors on queue $q"
    assert_eq "$en" true "queue $q enabled"
done
dmesg_check
log "ok"
