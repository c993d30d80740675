#!/bin/sh
# vdusectl create/attach/detach/destroy of a null device: geometry, data
# path (reads are zeroes, writes succeed) and that every step cleans up.
. "$VDU_TESTDIR/cli-lib.sh"

vdev_create t10a --backend null --size 1G
node=$(vdev_attach t10a) || exit 1
log "t10a attached as $node"
assert_eq "$(sysblk "$node" size)" 2097152 "/sys/block size (512-byte sectors) of 1G"
assert_eq "$(sysblk "$node" queue/logical_block_size)" 512 "default logical block size"
run blockdev --getsize64 "$node"
assert_eq "$(blockdev --getsize64 "$node")" 1073741824 "blockdev --getsize64"

read_zero "$node" 256
log "direct reads return zeroes"
write_direct "$node" 64 || fail "direct write to $node failed: $(cat "$VDU_SCRATCH/dd.err")"
write_direct "$node" 16 262000 || fail "direct write near the end of $node failed"
log "direct writes succeed"
# buffered I/O too, through the page cache and a flush
run dd if=/dev/zero of="$node" bs=1M count=4 conv=fsync
read_zero "$node" 16

# the block device is listed by vdusectl with the node attach printed
vdusectl list >"$VDU_SCRATCH/list.txt" || fail "vdusectl list failed"
cat "$VDU_SCRATCH/list.txt"
grep -Eq "^t10a .*virtio_vdpa +$node +running" "$VDU_SCRATCH/list.txt" ||
    fail "vdusectl list does not show t10a attached as $node"
# --poll-us auto: one queue thread may poll when there are 2 CPUs or more
want=0; [ "$(grep -c '^processor' /proc/cpuinfo)" -ge 2 ] && want=500
vdusectl show t10a --json | grep -q "\"poll_us\":$want[,}]" ||
    fail "vdusectl show t10a: poll_us is not $want (auto, 1 queue): $(vdusectl show t10a --json)"

# a second device with 4 KiB logical blocks, beside the first
vdev_create t10b --backend null --size 64M --block-size 4096
node2=$(vdev_attach t10b) || exit 1
assert_ne "$node2" "$node" "node of the second device"
assert_eq "$(sysblk "$node2" queue/logical_block_size)" 4096 "--block-size 4096"
assert_eq "$(sysblk "$node2" size)" 131072 "sectors of 64M"
read_zero "$node2" 8
assert_eq "$(blockdev --getss "$node2")" 4096 "blockdev --getss"

# detach: the node goes away, the VDUSE device and daemon stay
run vdusectl detach t10a
wait_for_gone "$node" 10
[ -c /dev/vduse/t10a ] || fail "detach removed /dev/vduse/t10a"
kill -0 "$(daemon_pid t10a)" || fail "daemon of t10a died on detach"
expect_error 1 vdusectl detach t10a    # not attached any more

# attach again works and gives a block device of the same size
node=$(vdev_attach t10a) || exit 1
assert_eq "$(sysblk "$node" size)" 2097152 "size after re-attach"
read_zero "$node" 4
run vdusectl detach t10a
wait_for_gone "$node" 10

# destroy: /dev/vduse/NAME, the daemon and the state files go away
pid=$(daemon_pid t10a) || exit 1
run vdusectl destroy t10a
wait_for_gone /dev/vduse/t10a 10
[ ! -e /sys/class/vduse/t10a ] || fail "/sys/class/vduse/t10a still there"
i=0
while kill -0 "$pid" 2>/dev/null; do
    [ $i -lt 50 ] || fail "daemon $pid of t10a still running after destroy"
    sleep 0.1; i=$((i + 1))
done
for f in pid sock json; do
    [ ! -e "$VCTL_STATE/t10a.$f" ] || fail "$VCTL_STATE/t10a.$f left after destroy"
done
expect_error 3 vdusectl show t10a

run vdusectl destroy t10b --force
wait_for_gone "$node2" 10
wait_for_gone /dev/vduse/t10b 10
dmesg_check
log "ok"
