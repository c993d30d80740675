#!/bin/sh
# vdu-timeout: 300
# Packed virtqueue end to end: create --ring packed --attach, the guest's
# virtio driver negotiates VIRTIO_F_RING_PACKED (bit 34 of
# /sys/bus/virtio/devices/virtioN/features is 1) and fio randrw with
# crc32c verification passes over it; with --ring split bit 34 is 0.
# Also the performance knobs: queue threads pinned (--cpu-list),
# --poll-us, --bounce-size (sysfs before attach) and --irq-cpu-list
# (sysfs after attach), saved in the state json and shown.
. "$VDU_TESTDIR/cli-lib.sh"
need_cmd fio

# ring_bit NODE: bit 34 of the virtio device's negotiated features
ring_bit() {
    _f=$(cat "/sys/block/${1#/dev/}/device/features") ||
        fail "no features file for $1"
    echo "$_f" | cut -c35
}

# verify NODE SIZE_MB: fio randrw + crc32c, QD 1 and 32, several sizes
verify() {
    log "+ fio randrw verify on $1"
    fio --output-format=terse --terse-version=3 --filename="$1" \
        --ioengine=libaio --direct=1 --rw=randrw --verify=crc32c \
        --do_verify=1 --verify_fatal=1 --verify_backlog=0 --group_reporting=0 \
        --name=q1 --bs=4k --iodepth=1 --offset=0 --size=2m \
        --name=q32 --bs=4k --iodepth=32 --offset=4m --size=8m \
        --name=big --bsrange=512-256k --iodepth=16 --offset=16m --size=$(( $2 - 16 ))m \
        >fio.out 2>fio.err
    rc=$?
    errs=$(awk -F';' '$5 != 0 { print $3 ": error " $5 }' fio.out)
    if [ $rc != 0 ] || [ -n "$errs" ] || grep -qi 'verify' fio.err; then
        cat fio.err; echo "$errs"
        fail "fio verify on $1 failed (rc=$rc)"
    fi
    log "fio: $(wc -l <fio.out) jobs verified"
}

img="$VDU_SCRATCH/img"
truncate -s 64M "$img" || fail "cannot create $img"

# 1. packed, one queue
vdev_cleanup pk0
log "+ vdusectl create pk0 --backend file --path $img --ring packed --attach"
node=$(vdusectl create pk0 --backend file --path "$img" --ring packed --attach) ||
    fail "create --ring packed --attach failed"
log "pk0 is $node"
assert_eq "$(ring_bit "$node")" 1 "pk0: VIRTIO_F_RING_PACKED negotiated"
verify "$node" 64
vdusectl show pk0 | tee show.out
grep -q '^ring: *packed offered, packed in use' show.out ||
    fail "show does not say the packed ring is in use"
grep -q '"ring":"packed"' /run/vduse/pk0.json || fail "pk0.json lacks ring packed"
run vdusectl destroy pk0 --force
dmesg_check

# 2. packed, two pinned queues, polling, kernel knobs
ncpu=$(nproc)
cpus="0,$((ncpu > 1 ? 1 : 0))"
irqs="$((ncpu > 1 ? 1 : 0)),0"
vdev_cleanup pk1
log "+ vdusectl create pk1 ... --queues 2 --cpu-list $cpus --poll-us 50 --bounce-size 16M --irq-cpu-list $irqs --attach"
node=$(vdusectl create pk1 --backend file --path "$img" --ring packed --queues 2 \
       --cpu-list "$cpus" --poll-us 50 --bounce-size 16M --irq-cpu-list "$irqs" \
       --attach 2>warn.out) || { cat warn.out; fail "create pk1 failed"; }
cat warn.out
assert_eq "$(ring_bit "$node")" 1 "pk1: packed negotiated"
if [ -e /sys/class/vduse/pk1/bounce_size ]; then
    assert_eq "$(cat /sys/class/vduse/pk1/bounce_size)" 16777216 "bounce_size"
    log "bounce_size: $(cat /sys/class/vduse/pk1/bounce_size)"
else
    log "kernel has no bounce_size attribute"
fi
if [ -e /sys/class/vduse/pk1/vq0/irq_cb_affinity ]; then
    log "irq_cb_affinity: vq0 $(cat /sys/class/vduse/pk1/vq0/irq_cb_affinity) vq1 $(cat /sys/class/vduse/pk1/vq1/irq_cb_affinity)"
    want=$(printf '%x' $((1 << ${irqs%%,*})))
    cat /sys/class/vduse/pk1/vq0/irq_cb_affinity | grep -q "$want\$" ||
        fail "vq0 irq_cb_affinity is not CPU ${irqs%%,*}"
fi
pid=$(cat /run/vduse/pk1.pid)
nthr=$(ls /proc/"$pid"/task | wc -l)
log "daemon $pid has $nthr threads: $(cat /proc/"$pid"/task/*/comm | tr '\n' ' ')"
grep -q vduse-q1 /proc/"$pid"/task/*/comm || fail "no thread for queue 1"
verify "$node" 64
vdusectl show pk1 | tee show.out
grep -q "^queue CPUs: *$cpus" show.out || fail "show lacks the queue CPUs"
grep -q '^poll: *50 us' show.out || fail "show lacks poll 50 us"
grep -q '^bounce size: *16M' show.out || fail "show lacks bounce size 16M"
run vdusectl destroy pk1 --force
dmesg_check

# 3. split: not negotiated
vdev_cleanup sp0
node=$(vdusectl create sp0 --backend file --path "$img" --ring split --attach) ||
    fail "create --ring split failed"
assert_eq "$(ring_bit "$node")" 0 "sp0: packed not negotiated"
verify "$node" 32
run vdusectl destroy sp0 --force
dmesg_check
log "packed ring: negotiated and verified; split: not negotiated"
