#!/bin/sh
# vdu-timeout: 300
# Whose memory is under the bounce buffer, on a real kernel.  The file
# backend with O_DIRECT (an image on ext4 on a loop device, a raw null_blk
# disk) registers the daemon's own memory (VDUSE_IOTLB_REG_UMEM) at the
# first request: show says "user memory", the buffer is pinned, fio verify
# and mkfs pass, no request fails.  Detach/attach cycles deregister
# (nothing pinned while detached) and register again.  --bounce kernel
# keeps the kernel's pages: where the kernel refuses to pin them for
# direct I/O (6.12.118+: EFAULT) the backend copies and still no request
# fails.  cache=writeback and the null backend pin nothing.
. "$VDU_TESTDIR/cli-lib.sh"
. "$VDU_TESTDIR/lib-file.sh"
need_cmd fio mkfs.ext4 losetup jq

# fio_ok DEV TAG: randwrite + crc32c verify, 4k..1M, zero errors
fio_ok() {
    fio --output-format=terse --terse-version=3 --filename="$1" \
        --ioengine=libaio --direct=1 --rw=randwrite --verify=crc32c \
        --do_verify=1 --verify_fatal=1 --group_reporting=0 \
        --name=q32 --bs=4k --iodepth=32 --offset=0 --size=4m \
        --name=big --bsrange=4k-1m --iodepth=8 --offset=4m --size=12m \
        >"fio-$2.out" 2>"fio-$2.err" || { cat "fio-$2.err"; fail "fio $2 failed"; }
    _e=$(awk -F';' '$5 != 0' "fio-$2.out")
    [ -z "$_e" ] || fail "fio $2: job errors: $_e"
    log "fio $2: verified"
}

# bounce NAME: show --json into $VDU_SCRATCH/b.json; sets BMODE BPIN BCOPY
bounce() {
    vdusectl show "$1" --json >"$VDU_SCRATCH/b.json" || fail "show $1 --json failed"
    BMODE=$(jqv "$VDU_SCRATCH/b.json" '.bounce.mode') || exit 1
    BPIN=$(jqv "$VDU_SCRATCH/b.json" '.bounce.pinned') || exit 1
    BCOPY=$(jqv "$VDU_SCRATCH/b.json" '.bounce.copied') || exit 1
    log "$1: bounce $(jq -c .bounce "$VDU_SCRATCH/b.json"), memory $(jq -c .memory "$VDU_SCRATCH/b.json")"
}

bounce_size=$((8 << 20))

# (a) an image on ext4 on a loop device, default --bounce auto: ours.
run truncate -s 96M /scratch/loop.img
LOOP=$(losetup -f --show /scratch/loop.img) || fail "losetup failed"
on_exit "losetup -d $LOOP"
ext4_on "$LOOP" /mnt/lp
vdu_create bu1 --backend file --path /mnt/lp/img -o create=1 -o size=48M \
    --bounce-size "$bounce_size"
bounce bu1
fio_ok "$VDEV" a1
bounce bu1
assert_eq "$BMODE" user "bu1: bounce buffer mode"
assert_eq "$BPIN" "$bounce_size" "bu1: pinned bytes"
assert_eq "$BCOPY" 0 "bu1: requests copied"
vdusectl show bu1 | grep -q '^bounce: *user memory, 8.0 MiB' ||
    fail "show bu1: $(vdusectl show bu1 | grep '^bounce')"
grep -q 'of our memory registered' "$VCTL_STATE/bu1.log" || fail "bu1: no registration logged"
# io_uring (the default engine where the kernel has it) reads and writes
# that buffer as its registered buffer: no page pinning per request
if grep -q 'O_DIRECT, io_uring' "$VCTL_STATE/bu1.log"; then
    grep -q "is io_uring's fixed buffer" "$VCTL_STATE/bu1.log" ||
        fail "bu1: io_uring without the bounce buffer as its fixed buffer: $(grep 'file:' "$VCTL_STATE/bu1.log")"
    log "bu1: $(grep -m1 "is io_uring's fixed buffer" "$VCTL_STATE/bu1.log")"
else
    log "bu1: not on io_uring: $(grep -m1 'file: ' "$VCTL_STATE/bu1.log")"
fi

# mkfs and a file system on the device, checked
run mkfs.ext4 -q -F "$VDEV"
run fsck.ext4 -f -n "$VDEV"
assert_eq "$(stats_errors bu1)" 0 "bu1: request errors"

# Detach/attach cycles: deregistered while detached, registered again;
# data written before a detach reads back after the attach.
run dd if=/dev/urandom of=/scratch/pat bs=1M count=4
sum=$(sha256sum </scratch/pat)
for i in 1 2 3; do
    run dd if=/scratch/pat of="$VDEV" bs=1M seek=40 oflag=direct conv=fsync
    run vdusectl detach bu1
    bounce bu1
    assert_eq "$BPIN" 0 "bu1: pinned while detached (cycle $i)"
    assert_ne "$BMODE" user "bu1: mode while detached (cycle $i)"
    VDEV=$(vdev_attach bu1) || exit 1
    assert_eq "$(dd if="$VDEV" bs=1M skip=40 count=4 iflag=direct 2>/dev/null | sha256sum)" \
        "$sum" "bu1: data after attach $i"
    fio_ok "$VDEV" "c$i"   # 0-16 MiB
    bounce bu1
    assert_eq "$BMODE" user "bu1: mode after attach $i"
    assert_eq "$BPIN" "$bounce_size" "bu1: pinned after attach $i"
done
regs=$(grep -c 'of our memory registered' "$VCTL_STATE/bu1.log")
assert_eq "$regs" 4 "bu1: registrations (one per attach)"
assert_eq "$(stats_errors bu1)" 0 "bu1: request errors after the cycles"
vdu_destroy bu1

# (b) a raw null_blk disk with 4 KiB sectors, 2 queues: ours.
nullb_new nbb 64 4096
vdu_create bu2 --backend file --path /dev/nbb --queues 2
fio_ok "$VDEV" b
bounce bu2
assert_eq "$BMODE" user "bu2: bounce buffer mode"
assert_eq "$BPIN" $((16 << 20)) "bu2: pinned bytes (the default for our memory)"
assert_eq "$(cat /sys/class/vduse/bu2/bounce_size)" $((16 << 20)) "bu2: kernel's bounce_size"
vdusectl show bu2 | grep -q '^bounce size: *16M$' || fail "show bu2: $(vdusectl show bu2 | grep '^bounce size')"
assert_eq "$BCOPY" 0 "bu2: requests copied"
assert_eq "$(stats_errors bu2)" 0 "bu2: request errors"
vdu_destroy bu2

# (c) --bounce kernel on the same disk: the kernel's pages.  The backend
# copies where the kernel will not pin them; no request may fail.
vdu_create bk1 --backend file --path /dev/nbb --bounce kernel
fio_ok "$VDEV" c
run mkfs.ext4 -q -F "$VDEV"
bounce bk1
assert_eq "$BMODE" kernel "bk1: bounce buffer mode"
assert_eq "$BPIN" 0 "bk1: pinned bytes"
assert_eq "$(cat /sys/class/vduse/bk1/bounce_size)" $((64 << 20)) "bk1: the kernel's default bounce_size"
assert_eq "$(stats_errors bk1)" 0 "bk1: request errors"
if [ "$BCOPY" -gt 0 ]; then
    log "kernel $VDU_KVER refuses to pin its bounce pages: $BCOPY requests copied"
    vdusectl show bk1 | grep -q 'kernel pages, copy for direct I/O' ||
        fail "show bk1: $(vdusectl show bk1 | grep '^bounce')"
else
    log "kernel $VDU_KVER pins its bounce pages for direct I/O: nothing copied"
fi
vdu_destroy bk1

# (d) what needs no pinning pins nothing: page cache, null backend.
vdu_create bw1 --backend file --path /dev/nbb -o cache=writeback
fio_ok "$VDEV" d
bounce bw1
assert_eq "$BMODE" kernel "bw1 (cache=writeback): bounce buffer mode"
assert_eq "$BPIN" 0 "bw1: pinned bytes"
vdu_destroy bw1
vdu_create bn1 --backend null --size 64M
run dd if="$VDEV" of=/dev/null bs=1M count=16 iflag=direct
bounce bn1
assert_eq "$BMODE" kernel "bn1 (null): bounce buffer mode"
assert_eq "$BPIN" 0 "bn1: pinned bytes"
vdu_destroy bn1
dmesg_check
log "bounce buffer: user memory for O_DIRECT, kernel pages otherwise; no request failed"
