#!/bin/sh
# vdu-timeout: 240
# vdu_main(): examples/ramdisk.c, a whole device program built out of tree
# by vm-run against the staged install (/usr/lib/vduse-examples/ramdisk).
#   (a) `ramdisk vm0 128 virtio_vdpa` attaches itself and logs the node;
#       fio randwrite + crc32c verify on it; SIGTERM while a random write
#       job runs: fio ends with an I/O error (its disk went away) instead
#       of hanging, the program detaches, drains, destroys and exits 0
#       within 30 s; the VDUSE device, the vdpa device and the disk are
#       gone
#   (b) `ramdisk vm1 64` waits to be attached; attached by hand (vdpa dev
#       add) it serves I/O; SIGINT does not take the disk away from under
#       whoever attached it: it keeps serving and says it waits for a
#       detach; after `vdpa dev del vm1` it exits 0 within a few seconds
#       and the device is gone
. "$VDU_TESTDIR/cli-lib.sh"
. "$VDU_TESTDIR/lib-recover.sh"
need_cmd fio vdpa cmp

PROG=/usr/lib/vduse-examples/ramdisk
[ -x "$PROG" ] || fail "$PROG missing: the example did not build (see example-build)"

alive() {  # PID: running and not a zombie
    _st=$(cut -d' ' -f3 "/proc/$1/stat" 2>/dev/null)
    [ -n "$_st" ] && [ "$_st" != Z ]
}
# stop_prog NAME PID: cleanup: stop the program and the device, whatever
# state they are in
stop_prog() {
    if alive "$2"; then
        kill -TERM "$2" 2>/dev/null
        _i=0
        while alive "$2" && [ $_i -lt 100 ]; do sleep 0.1; _i=$((_i + 1)); done
    fi
    if alive "$2"; then
        vdpa dev del "$1" 2>/dev/null
        kill -KILL "$2" 2>/dev/null
    fi
    vdusectl destroy "$1" --force >/dev/null 2>&1
}
# wait_log FILE REGEX SECS: wait until a line of FILE matches; print it
wait_log() {
    _i=0
    while ! grep -Eq "$2" "$1" 2>/dev/null; do
        [ $_i -lt $(($3 * 10)) ] || { cat "$1" >&2; sfail "no line matching '$2' in $1 after $3 s"; }
        sleep 0.1; _i=$((_i + 1))
    done
    grep -E "$2" "$1" | head -n 1
}
# wait_exit PID SECS: wait until our child PID has exited, its exit status
# in WRC; 1 if it still runs after SECS (not in $(...): a subshell cannot
# wait for this shell's children)
wait_exit() {
    _i=0
    while alive "$1"; do
        [ $_i -lt $(($2 * 10)) ] || return 1
        sleep 0.1; _i=$((_i + 1))
    done
    WRC=0
    wait "$1" || WRC=$?
}
# gone NAME NODE: no VDUSE device, no vdpa device, no disk left
gone() {
    wait_for_gone "/dev/vduse/$1" 15
    [ ! -e "/sys/class/vduse/$1" ] || fail "/sys/class/vduse/$1 still there"
    [ ! -e "/sys/bus/vdpa/devices/$1" ] || fail "/sys/bus/vdpa/devices/$1 still there"
    if vdpa dev show "$1" >/dev/null 2>&1; then fail "vdpa dev show $1 still finds it"; fi
    wait_for_gone "$2" 15
}
pattern_rw() {  # NODE SEEK_4K COUNT_4K: write random data, read it back
    dd if=/dev/urandom of=pat.bin bs=4096 count="$3" 2>/dev/null
    dd if=pat.bin of="$1" bs=4096 seek="$2" count="$3" oflag=direct conv=notrunc 2>dd.err ||
        fail "write to $1 failed: $(cat dd.err)"
    dd if="$1" of=back.bin bs=4096 skip="$2" count="$3" iflag=direct 2>dd.err ||
        fail "read of $1 failed: $(cat dd.err)"
    cmp pat.bin back.bin || fail "$1: data read back differs from what was written"
}

# ---- (a) attached by the program itself, stopped by SIGTERM under I/O
log "+ $PROG vm0 128 virtio_vdpa 2>vm0.log &"
"$PROG" vm0 128 virtio_vdpa 2>vm0.log &
pid0=$!
on_exit "stop_prog vm0 $pid0"
line=$(wait_log vm0.log 'vm0: attached to virtio_vdpa as /dev/vd[a-z]+$' 30) || exit 1
node=${line##* }
log "vm0: $line"
[ -b "$node" ] || fail "$node (from the log) is not a block device"
assert_eq "$(sysblk "$node" size)" $((128 * 2048)) "$node size in sectors"
[ -e /sys/class/vduse/vm0 ] || fail "no /sys/class/vduse/vm0"
[ -e /sys/bus/vdpa/devices/vm0 ] || fail "no vdpa device vm0"
assert_eq "$(basename "$(readlink /sys/bus/vdpa/devices/vm0/driver)")" virtio_vdpa "vm0's vdpa driver"
fio_bg "$node" a1
fio_check a1

log "+ fio randwrite (10 s) on $node; SIGTERM to $pid0 after 2 s"
fio --name=t --filename="$node" --ioengine=libaio --direct=1 --rw=randwrite \
    --bs=4k --iodepth=16 --runtime=10 --time_based \
    --output-format=terse --terse-version=3 >fio-t.out 2>fio-t.err &
fpid=$!
on_exit "kill -9 $fpid 2>/dev/null"
# The SIGTERM must come under I/O: wait until fio's writes reach the disk
# (a loaded emulator can take seconds to start fio), then 2 s more.
w0=$(awk '{ print $5 }' "/sys/block/${node#/dev/}/stat")
i=0
while [ "$(awk '{ print $5 }' "/sys/block/${node#/dev/}/stat")" = "$w0" ] && [ $i -lt 300 ]; do
    alive "$fpid" || break
    sleep 0.1; i=$((i + 1))
done
sleep 2
alive "$fpid" || { cat fio-t.out fio-t.err; fail "fio ended before the SIGTERM"; }
t0=$(cut -d' ' -f1 /proc/uptime)
kill -TERM "$pid0" || fail "kill -TERM $pid0"
wait_exit "$pid0" 30 || {
    cat vm0.log; no_dstate
    fail "ramdisk vm0 still running 30 s after SIGTERM"
}
prc=$WRC
log "ramdisk vm0 exited with $prc, $(awk -v a="$t0" -v b="$(cut -d' ' -f1 /proc/uptime)" 'BEGIN { printf "%.1f", b - a }') s after SIGTERM"
echo "--- vm0.log"; cat vm0.log; echo "---"
assert_eq "$prc" 0 "ramdisk vm0 exit status after SIGTERM"
grep -q 'vm0: SIGTERM' vm0.log || fail "vm0.log does not show the SIGTERM"
grep -q 'still in flight' vm0.log && fail "vm0 stopped with requests still in flight"
wait_exit "$fpid" 15 || { no_dstate; fail "fio still running 15 s after the program exited"; }
frc=$WRC
cat fio-t.err
# terse v3 lines start with "3;"; field 5 is the job's error code
ferr=$(awk -F';' '$1 == 3 { print $5 }' fio-t.out)
log "fio exited with $frc, job error '$ferr'"
# The disk went away under a 10 s job: the writes after that fail (the
# removed disk has no capacity left: ENOSPC from the block device's write
# path; EIO, ENXIO or ENODEV from lower down), fio reports the error and
# stops: no hang, no success.
assert_eq "$frc" 1 "fio exit status after its disk went away"
case "$ferr" in 5|6|19|28) ;; *) cat fio-t.out; fail "fio job error '$ferr', expected an I/O error (EIO 5, ENXIO 6, ENODEV 19 or ENOSPC 28)" ;; esac
gone vm0 "$node"
no_dstate
log "vm0: detached, drained, destroyed"

# ---- (b) attached by someone else: SIGINT waits for the detach
log "+ $PROG vm1 64 2>vm1.log &"
"$PROG" vm1 64 2>vm1.log &
pid1=$!
on_exit "stop_prog vm1 $pid1"
wait_log vm1.log 'vm1: ready; attach with: vdpa dev add name vm1 mgmtdev vduse$' 30 >/dev/null || exit 1
[ -e /dev/vduse/vm1 ] || fail "no /dev/vduse/vm1 once ready"
run vdpa dev add name vm1 mgmtdev vduse
# virtio_vdpa makes the disk; vhost_vdpa may have taken the device
drv=$(basename "$(readlink /sys/bus/vdpa/devices/vm1/driver 2>/dev/null)")
if [ "$drv" != virtio_vdpa ]; then
    [ -z "$drv" ] || echo vm1 >/sys/bus/vdpa/drivers/"$drv"/unbind
    echo vm1 >/sys/bus/vdpa/drivers/virtio_vdpa/bind || fail "vm1: cannot bind virtio_vdpa"
fi
node1=$(wait_vdpa_block vm1) || fail "vm1: no block device"
log "vm1 is $node1"
assert_eq "$(sysblk "$node1" size)" $((64 * 2048)) "$node1 size in sectors"
pattern_rw "$node1" 0 256
log "+ kill -INT $pid1"
kill -INT "$pid1" || fail "kill -INT $pid1"
wait_log vm1.log 'vm1: attached by someone else: serving until it is detached' 10 >/dev/null || exit 1
alive "$pid1" || { cat vm1.log; fail "ramdisk vm1 exited on SIGINT while attached by someone else"; }
pattern_rw "$node1" 1000 256
log "vm1 still serves after SIGINT"
sleep 2
alive "$pid1" || { cat vm1.log; fail "ramdisk vm1 exited while still attached"; }
[ -e /sys/bus/vdpa/devices/vm1 ] || fail "vm1 was detached by the program"
run vdpa dev del vm1
# The kernel lets go of the VDUSE device some time after sysfs stops
# showing the vdpa device (seconds in a loaded guest): the program retries
wait_exit "$pid1" 15 || { cat vm1.log; fail "ramdisk vm1 still running 15 s after vdpa dev del"; }
prc=$WRC
echo "--- vm1.log"; cat vm1.log; echo "---"
assert_eq "$prc" 0 "ramdisk vm1 exit status"
gone vm1 "$node1"
no_dstate
dmesg_check 'blocked for more than|hung_task'
log "ok"
