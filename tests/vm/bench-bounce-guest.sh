#!/bin/sh
# bench-bounce-guest.sh ROUNDS SECS -- run by tests/bench/bench-bounce
# inside one guest boot (not a test: vm-run only runs [0-9]*.sh).  The file
# backend (O_DIRECT) with the bounce buffer in the daemon's own memory
# (--bounce user: REG_UMEM, direct I/O straight into it; its default size,
# 16 MiB, and user64 with --bounce-size 64M, the kernel's) against the same
# with the kernel's pages (--bounce kernel: direct I/O into them where the
# kernel still pins them, else the backend's aligned copy), and the kernel
# loop device (direct I/O) as the reference; the three images on one ext4
# on a memory-backed null_blk disk, all attached at once, the order
# rotated each round.  Prints "R DEVICE WORKLOAD IOPS MEAN_US P99_US ROUND"
# lines and the devices' bounce/memory state.
. "$VDU_TESTDIR/lib.sh"
. "$VDU_TESTDIR/lib-file.sh"
ROUNDS=${1:-3}
SECS=${2:-5}
need_cmd fio jq losetup
need_project
nullb_new nbb 2250 512
ext4_on /dev/nbb /mnt/b
for n in user user64 kernel loop; do
    run truncate -s 520M /mnt/b/$n.img
    dd if=/dev/zero of=/mnt/b/$n.img bs=1M count=520 oflag=direct conv=notrunc 2>/dev/null ||
        fail "cannot fill /mnt/b/$n.img"
done
for m in user user64 kernel; do
    case $m in user64) o="--bounce user --bounce-size 64M" ;; *) o="--bounce $m" ;; esac
    # shellcheck disable=SC2086
    d=$(vdusectl create bb$m --backend file --path /mnt/b/$m.img $o --attach) ||
        fail "vdusectl create bb$m"
    on_exit "vdusectl destroy bb$m --force >/dev/null 2>&1"
    echo mq-deadline >/sys/block/${d#/dev/}/queue/scheduler
    eval "dev_$m=$d"
done
dev_loop=$(losetup --direct-io=on -f --show /mnt/b/loop.img) || fail losetup
on_exit "losetup -d $dev_loop"
echo mq-deadline >/sys/block/${dev_loop#/dev/}/queue/scheduler
echo "# kernel $(uname -r); user $dev_user, user64 $dev_user64, kernel $dev_kernel, loop $dev_loop (dio $(cat /sys/block/${dev_loop#/dev/}/loop/dio)); all mq-deadline"
bench_fio "$dev_user" rr32 "$SECS" >/dev/null
bench_fio "$dev_kernel" rr32 "$SECS" >/dev/null
r=1
while [ $r -le "$ROUNDS" ]; do
    for w in rr32 rr1 rw32 sr128 sr1m; do
        for c in $(rotated "$r" user user64 kernel loop); do
            eval "d=\$dev_$c"
            bench_row "$d" "$w" "$SECS" "$r" "$c" "$w"
        done
    done
    r=$((r + 1))
done
for m in user user64 kernel; do
    vdusectl show bb$m --json | jq -c '{bounce, memory}' | sed "s/^/# bb$m: /"
    echo "# bb$m errors: $(stats_errors bb$m)"
done
echo "# done"
