#!/bin/sh
# vdu-timeout: 240
# Live resize (vdusectl resize), attached through virtio_vdpa, no detach:
#   (a) null 256M: resize 512M, +256M, then 128M --shrink: each time
#       /sys/block/vdX/size follows within 1 s and show --json says the
#       size; refused (exit 2, one line, nothing changed): a shrink
#       without --shrink, a size not a multiple of the block size
#   (b) kill -9 of the resized null daemon + recover: the device keeps
#       128M (sysfs, show --json, the saved size=), and resizes again;
#       the same with --auto-recover (the supervisor's restart)
#   (c) file on a 64M file: resize 128M: the file grows, fio randwrite +
#       crc32c verify over the new region; 32M refused without --shrink
#       (file and disk unchanged); with --shrink the file is cut to 32M
#       and a read beyond the new end (through a partition that still
#       reaches past it) fails with an I/O error from the device, which
#       does not grow the file again
#   (d) no kernel trouble
. "$VDU_TESTDIR/cli-lib.sh"
. "$VDU_TESTDIR/lib-file.sh"
. "$VDU_TESTDIR/lib-recover.sh"
need_cmd fio jq dd blockdev stat

# wait_size NODE SECTORS: /sys/block/vdX/size is SECTORS within 1 s
wait_size() {
    _i=0
    while [ "$(sysblk "$1" size)" != "$2" ]; do
        [ $_i -lt 10 ] || fail "$1: $(sysblk "$1" size) sectors after 1 s, expected $2"
        sleep 0.1; _i=$((_i + 1))
    done
    log "$1: $2 sectors ($(($2 / 2048)) MiB) after $((_i * 100)) ms"
}

# show_size NAME: the size show --json reports
show_size() {
    vdusectl show "$1" --json >show.json || sfail "show $1 --json failed"
    jqv show.json .size
}

# ---- (a) null
vdev_create r1 --backend null --size 256M
# A failure between the kill and the recover would leave the cleanup's
# detach waiting: recover first.
on_exit "vdusectl recover r1 >/dev/null 2>&1"
node=$(vdev_attach r1) || exit 1
assert_eq "$(sysblk "$node" size)" $((256 * 2048)) "$node size at create"
run vdusectl resize r1 512M
wait_size "$node" $((512 * 2048))
assert_eq "$(show_size r1)" $((512 << 20)) "show --json size after 512M"
run vdusectl resize r1 +256M
wait_size "$node" $((768 * 2048))
assert_eq "$(show_size r1)" $((768 << 20)) "show --json size after +256M"
run dd if="$node" of=/dev/null bs=4096 skip=$(((768 << 20) / 4096 - 1)) count=1 iflag=direct

expect_error 2 vdusectl resize r1 128M
case "$err_text" in
*"refusing to shrink r1 from 768M to 128M: data beyond 128M would be lost; add --shrink") ;;
*) fail "unexpected refusal: $err_text" ;;
esac
expect_error 2 vdusectl resize r1 +100
sleep 0.3
assert_eq "$(sysblk "$node" size)" $((768 * 2048)) "$node size after the refusals"
assert_eq "$(show_size r1)" $((768 << 20)) "show --json size after the refusals"

run vdusectl resize r1 128M --shrink
wait_size "$node" $((128 * 2048))
assert_eq "$(show_size r1)" $((128 << 20)) "show --json size after --shrink"

# ---- (b) kill -9 + recover keeps the new size
kill9 r1
recover r1
sleep 0.5
assert_eq "$(sysblk "$node" size)" $((128 * 2048)) "$node size after recover"
assert_eq "$(show_size r1)" $((128 << 20)) "show --json size after recover"
assert_eq "$(jqv "$VCTL_STATE/r1.json" .params.size)" $((128 << 20)) "saved size= after recover"
run dd if="$node" of=/dev/null bs=4096 count=16 iflag=direct
run vdusectl resize r1 256M
wait_size "$node" $((256 * 2048))
run vdusectl destroy r1 --force

# ... and when the supervisor of --auto-recover restarts it
vdev_create r3 --backend null --size 64M --auto-recover
node=$(vdev_attach r3) || exit 1
run vdusectl resize r3 96M
wait_size "$node" $((96 * 2048))
kill9 r3
_i=0
while :; do
    _p=$(cat "$VCTL_STATE/r3.pid" 2>/dev/null | tr -d ' \n')
    if [ -n "$_p" ] && [ "$_p" != "$KILLED_PID" ] && kill -0 "$_p" 2>/dev/null &&
       vdusectl show r3 >/dev/null 2>&1; then
        break
    fi
    [ $_i -lt 150 ] || fail "r3: no new daemon 15 s after the kill"
    sleep 0.1; _i=$((_i + 1))
done
log "r3: the supervisor started daemon $_p"
sleep 0.5
assert_eq "$(sysblk "$node" size)" $((96 * 2048)) "$node size after the supervisor's recovery"
assert_eq "$(show_size r3)" $((96 << 20)) "show --json size after the supervisor's recovery"
run vdusectl destroy r3 --force

# ---- (c) file
img=$VDU_SCRATCH/img
truncate -s 64M "$img" || fail "cannot create $img"
vdev_create r2 --backend file --path "$img"
node=$(vdev_attach r2) || exit 1
run vdusectl resize r2 128M
wait_size "$node" $((128 * 2048))
assert_eq "$(stat -c %s "$img")" $((128 << 20)) "file size after the grow"
log "+ fio verify over 64M..128M of $node"
fio --output-format=terse --terse-version=3 --filename="$node" \
    --ioengine=libaio --direct=1 --rw=randwrite --verify=crc32c \
    --do_verify=1 --verify_fatal=1 --group_reporting=0 \
    --name=q16 --bs=4k --iodepth=16 --offset=64m --size=8m \
    --name=big --bsrange=4k-256k --iodepth=8 --offset=96m --size=32m \
    >fio.out 2>fio.err
rc=$?
errs=$(awk -F';' '$5 != 0 { print $3 ": error " $5 }' fio.out)
if [ $rc != 0 ] || [ -n "$errs" ] || grep -qi 'verify' fio.err; then
    cat fio.err; echo "$errs"
    fail "fio verify over the grown region failed (rc=$rc)"
fi
log "fio: $(wc -l <fio.out) jobs verified over the grown region"

# A partition up to the old end (an MBR written by hand: sectors 2048 +
# 258048, type 83): the kernel checks a partition's I/O against the
# partition, not the disk, so what lies beyond the disk's new end reaches
# the device.
head -c 446 /dev/zero >mbr
printf '\000\000\000\000\203\000\000\000\000\010\000\000\000\360\003\000' >>mbr
head -c 48 /dev/zero >>mbr
printf '\125\252' >>mbr
assert_eq "$(wc -c <mbr)" 512 "MBR bytes"
run dd if=mbr of="$node" bs=512 count=1 oflag=direct conv=notrunc
run blockdev --rereadpt "$node"
wait_for_path "${node}1" 10
assert_eq "$(sysblk "$node" "${node#/dev/}1/size")" 258048 "${node}1 sectors"

expect_error 2 vdusectl resize r2 32M
case "$err_text" in
*"refusing to shrink r2 from 128M to 32M: data beyond 32M would be lost; add --shrink") ;;
*) fail "unexpected refusal: $err_text" ;;
esac
sleep 0.3
assert_eq "$(stat -c %s "$img")" $((128 << 20)) "file size after the refusal"
assert_eq "$(sysblk "$node" size)" $((128 * 2048)) "$node size after the refusal"

run vdusectl resize r2 32M --shrink
wait_size "$node" $((32 * 2048))
assert_eq "$(stat -c %s "$img")" $((32 << 20)) "file size after --shrink"
assert_eq "$(show_size r2)" $((32 << 20)) "show --json size after --shrink"
errs0=$(stats_errors r2)
log "+ ! dd if=${node}1 skip=64M (beyond the new end)"
if dd if="${node}1" of=/dev/null bs=4096 skip=$((64 << 20 >> 12)) count=1 iflag=direct 2>dd.err; then
    fail "a read beyond the new end succeeded"
fi
cat dd.err
grep -qi 'input/output error' dd.err || fail "the read beyond the end failed without an I/O error"
[ "$(stats_errors r2)" -gt "$errs0" ] || fail "the device counted no error for it"
log "+ ! dd of=${node}1 seek=64M (a write beyond the new end)"
if dd if=/dev/zero of="${node}1" bs=4096 seek=$((64 << 20 >> 12)) count=1 oflag=direct conv=notrunc 2>dd.err; then
    fail "a write beyond the new end succeeded"
fi
assert_eq "$(stat -c %s "$img")" $((32 << 20)) "file size after a write beyond the end"
run dd if="$node" of=/dev/null bs=4096 skip=$(((32 << 20) / 4096 - 1)) count=1 iflag=direct
run vdusectl destroy r2 --force

# ---- (d)
dmesg_check
log "resize: null and file grew and shrank live; recover kept the size"
