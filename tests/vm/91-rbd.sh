#!/bin/sh
# vdu-timeout: 600
# vdu-needs: ceph
# rbd backend against a single-node Ceph cluster started in the guest
# (tests/ceph/ceph-cluster: a monitor and a BlueStore OSD on a file) that
# runs cephx, as real clusters do: the devices use client.vduse (caps
# profile rbd) with -o id= and -o keyring=.  (Auth none, and cephx without
# a device, are covered by the host test test-rbd.)  Through /dev/vdX:
#   (a) create --backend rbd (the plugin found by name), 2 queues: size
#       from the image; fio randwrite + crc32c verify, zero errors
#   (b) kill -9 of the OSD under fio verify, then a restart: fio completes
#       with no error (latency, never an error)
#   (c) live resize: vdusectl resize up (sysfs, show --json, rbd info
#       follow), `rbd resize` by another client up and down (the device
#       follows; how long it took is logged), shrink without --shrink
#       refused, with it done (requests beyond an end: host test-rbd)
#   (d) kill -9 of the daemon under fio verify, then recover: the new
#       daemon breaks the dead client's lock at once, fio completes with
#       no error
#   (e) the data: a pattern written through the device equals what
#       `rbd export` reads from the cluster
#   (f) a snapshot: read-only device with the snapshot's data
#   (g) two devices on one image, both writable (librbd hands the lock
#       over): what one writes, the other reads
#   (h) exclusive=on keeps the lock: a second exclusive=on device is
#       refused with one line, nothing created
#   (i) a wrong key, an id without a key, an unreachable cluster: one line
#       each, exit non-zero, nothing created
. "$VDU_TESTDIR/cli-lib.sh"
. "$VDU_TESTDIR/lib-file.sh"
. "$VDU_TESTDIR/lib-recover.sh"
. "$VDU_TESTDIR/lib-ceph.sh"
need_cmd fio jq cmp rbd ceph-authtool

MiB=1048576
ceph_start --cephx --bluestore
KEYRING=$CEPH_DIR/client.vduse.keyring
[ -s "$KEYRING" ] || fail "the cluster made no client.vduse keyring"
run rbd -c "$CEPH_CONF" create --size 64M rbd/img1
AUTH="-o conf=$CEPH_CONF -o id=vduse -o keyring=$KEYRING"

# sectors NODE: /sys/block/vdX/size
sectors() { cat "/sys/block/${1#/dev/}/size"; }
# wait_sectors NODE N: until the node has N sectors (10 s at most); prints ms
wait_sectors() {
    _t0=$(cut -d' ' -f1 /proc/uptime)
    _i=0
    while [ "$(sectors "$1")" != "$2" ] && [ $_i -lt 1000 ]; do sleep 0.01; _i=$((_i + 1)); done
    assert_eq "$(sectors "$1")" "$2" "$1: sectors"
    awk -v a="$_t0" -v b="$(cut -d' ' -f1 /proc/uptime)" 'BEGIN { printf "%d", (b - a) * 1000 }'
}
# rbd_size IMAGE: the image's size in bytes
rbd_size() { rbd -c "$CEPH_CONF" info --format json "$1" | jq -r .size; }
# (fio_bg's jobs are 2m and 4m here: the OSD shares the emulated guest)
# one_line_refusal WHAT ARGS...: vdusectl create ARGS fails with one line
# and leaves nothing behind
one_line_refusal() {
    _what=$1; shift
    _msg=$(vdusectl create r9 "$@" 2>&1) && fail "$_what: create succeeded"
    log "$_what: $_msg"
    assert_eq "$(echo "$_msg" | wc -l)" 1 "$_what: one line"
    [ ! -e /dev/vduse/r9 ] || fail "$_what: r9 was created"
    [ ! -e "$VCTL_STATE/r9.pid" ] || fail "$_what: r9 left state behind"
    REFUSAL=$_msg
}

# ---- (a)
# shellcheck disable=SC2086
vdev_create r1 --backend rbd --image rbd/img1 $AUTH --queues 2
node=$(vdev_attach r1) || exit 1
assert_eq "$(blockdev --getsize64 "$node")" $((64 * MiB)) "size from the image"
fio_bg "$node" a 2m 4m
fio_check a
assert_eq "$(stats_errors r1)" 0 "r1: request errors"
# what the daemon keeps resident, and its biggest mappings (the bounce
# buffer, librbd's heap)
vdusectl show r1 | grep -i 'memory\|bounce' | sed 's/^/r1 show: /'
awk '/^[0-9a-f]+-[0-9a-f]+ / { name = $6 ? $6 : "[anon " $1 "]" }
     /^Rss:/ && $2 >= 2048 { print "r1 mapping: " name " Rss " $2 " kB" }' \
    "/proc/$(daemon_pid r1)/smaps"

# ---- (b) the OSD dies under load and comes back
fio_bg "$node" b 2m 4m
sleep 1
ceph_kill_osd
log "OSD killed under fio"
ceph_start_osd
fio_check b
assert_eq "$(stats_errors r1)" 0 "r1: request errors after the OSD restart"

# ---- (c) resize
run vdusectl resize r1 96M
wait_sectors "$node" $((96 * 2048)) >/dev/null
assert_eq "$(vdusectl show r1 --json | jq -r .size)" $((96 * MiB)) "show --json size"
assert_eq "$(rbd_size rbd/img1)" $((96 * MiB)) "the image grew"
run rbd -c "$CEPH_CONF" resize --size 128M rbd/img1
ms=$(wait_sectors "$node" $((128 * 2048))) || exit 1
log "rbd resize to 128M by another client: the device followed in $ms ms"
must_fail vdusectl resize r1 32M
assert_eq "$(rbd_size rbd/img1)" $((128 * MiB)) "a refused shrink changes nothing"
run rbd -c "$CEPH_CONF" resize --size 80M --allow-shrink rbd/img1
ms=$(wait_sectors "$node" $((80 * 2048))) || exit 1
log "rbd resize to 80M (shrink) by another client: the device followed in $ms ms"
run vdusectl resize r1 48M --shrink
wait_sectors "$node" $((48 * 2048)) >/dev/null
assert_eq "$(rbd_size rbd/img1)" $((48 * MiB)) "vdusectl resize --shrink shrank the image"
run dd if="$node" of=/dev/null bs=4k count=1 skip=$((48 * 256 - 1)) iflag=direct

# ---- (d) kill -9 of the daemon under load, recover
on_exit "vdusectl recover r1 >/dev/null 2>&1"
fio_bg "$node" d 2m 4m
sleep 1
kill9 r1
log "daemon $KILLED_PID killed under fio"
recover r1
fio_check d
grep -q "broke the lock of" "$VCTL_STATE/r1.log" ||
    fail "the recovered daemon did not break the dead client's lock: $(tail -5 "$VCTL_STATE/r1.log")"
log "$(grep "broke the lock of" "$VCTL_STATE/r1.log" | tail -1)"
assert_eq "$(stats_errors r1)" 0 "r1: request errors after the recovery"

# ---- (e) the data, read back by rbd export
run dd if=/dev/urandom of=pat.bin bs=1M count=4
run dd if=pat.bin of="$node" bs=1M seek=8 oflag=direct conv=notrunc
run vdusectl destroy r1 --force
run rbd -c "$CEPH_CONF" export rbd/img1 img1.bin
run dd if=img1.bin of=back.bin bs=1M skip=8 count=4
cmp pat.bin back.bin || fail "rbd export differs from what was written through the device"
log "rbd export: the 4 MiB written through the device are in the image"
rm -f img1.bin

# ---- (f) a snapshot: read-only, the snapshot's data
run rbd -c "$CEPH_CONF" snap create rbd/img1@s1
# shellcheck disable=SC2086
vdev_create r2 --backend rbd --image rbd/img1@s1 $AUTH
node=$(vdev_attach r2) || exit 1
assert_eq "$(blockdev --getro "$node")" 1 "a snapshot is read-only"
run dd if="$node" of=back2.bin bs=1M skip=8 count=4 iflag=direct
cmp pat.bin back2.bin || fail "the snapshot's data differs"
run vdusectl destroy r2 --force

# ---- (g) two devices on one image
# shellcheck disable=SC2086
vdev_create r3 --backend rbd --image rbd/img1 $AUTH
node3=$(vdev_attach r3) || exit 1
# shellcheck disable=SC2086
vdev_create r4 --backend rbd --image rbd/img1 $AUTH
node4=$(vdev_attach r4) || exit 1
run dd if=/dev/urandom of=pat1.bin bs=64k count=16
run dd if=pat1.bin of="$node3" bs=64k seek=200 oflag=direct conv=notrunc,fsync
run dd if="$node4" of=back1.bin bs=64k skip=200 count=16 iflag=direct
cmp pat1.bin back1.bin || fail "r4 does not read what r3 wrote"
run dd if=/dev/urandom of=pat2.bin bs=64k count=16
run dd if=pat2.bin of="$node4" bs=64k seek=300 oflag=direct conv=notrunc,fsync
run dd if="$node3" of=back2.bin bs=64k skip=300 count=16 iflag=direct
cmp pat2.bin back2.bin || fail "r3 does not read what r4 wrote"
assert_eq "$(stats_errors r3)" 0 "r3: request errors"
assert_eq "$(stats_errors r4)" 0 "r4: request errors"
log "two devices on rbd/img1 both write, each reads the other's data"
run vdusectl destroy r3 --force
run vdusectl destroy r4 --force

# ---- (h) exclusive=on
# shellcheck disable=SC2086
vdev_create r5 --backend rbd --image rbd/img1 $AUTH -o exclusive=on
# shellcheck disable=SC2086
one_line_refusal "a second exclusive device" --backend rbd --image rbd/img1 $AUTH -o exclusive=on
echo "$REFUSAL" | grep -q "exclusive lock" || fail "unexpected message: $REFUSAL"
run vdusectl destroy r5

# ---- (i) refusals
run ceph-authtool --create-keyring "$VDU_SCRATCH/bad.keyring" --gen-key -n client.vduse
one_line_refusal "wrong key" --backend rbd --image rbd/img1 -o conf="$CEPH_CONF" \
    -o id=vduse -o keyring="$VDU_SCRATCH/bad.keyring" -o connect-timeout=10
echo "$REFUSAL" | grep -q "refused client.vduse" || fail "unexpected message: $REFUSAL"
one_line_refusal "no key for the id" --backend rbd --image rbd/img1 -o conf="$CEPH_CONF" \
    -o id=nobody -o keyring="$KEYRING" -o connect-timeout=10
echo "$REFUSAL" | grep -q "client.nobody" || fail "unexpected message: $REFUSAL"
printf '[global]\nmon_host = v2:127.0.0.1:9\n' >bad.conf
one_line_refusal "unreachable" --backend rbd --image rbd/img1 -o conf="$VDU_SCRATCH/bad.conf" \
    -o id=vduse -o keyring="$KEYRING" -o connect-timeout=5
echo "$REFUSAL" | grep -q "cannot reach the Ceph cluster within 5 s" || fail "unexpected message: $REFUSAL"
dmesg_check
log "all verified"
