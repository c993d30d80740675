#!/bin/sh
# vdu-timeout: 240
# Backend plugins: examples/ramdisk-plugin.c, built out of tree by vm-run
# against the staged install (/usr/lib/vduse-examples/ramdisk.so).
#   (a) create --dry-run with the plugin's path describes a 256M disk and
#       creates nothing; create --backend PATH --help lists its keys
#   (b) p1 from the path, attached: fio randwrite + crc32c verify, zero
#       errors; the disk's size; show --json names the plugin's real path
#   (c) kill -9 of p1's daemon under fio, then recover: fio completes
#       without errors, the recovered daemon serves fresh verified writes,
#       the saved config still names the plugin (the ramdisk's memory died
#       with the daemon: old data reads as zeroes, by design)
#   (d) p2 found as NAME.so on $VDUSE_BACKEND_PATH: data written reads
#       back; its config records the absolute path, so recover works
#       without $VDUSE_BACKEND_PATH
#   (e) an unknown key: exit 2, one line, nothing created
#   (f) destroy all, no kernel trouble
. "$VDU_TESTDIR/cli-lib.sh"
. "$VDU_TESTDIR/lib-file.sh"
. "$VDU_TESTDIR/lib-recover.sh"
need_cmd fio jq cmp

EXDIR=/usr/lib/vduse-examples
SO=$EXDIR/ramdisk.so
[ -f "$SO" ] || fail "$SO missing: the example did not build (see example-build)"

# pattern_write NODE SEEK_4K COUNT_4K: random data, O_DIRECT; kept in pat.bin
pattern_write() {
    dd if=/dev/urandom of=pat.bin bs=4096 count="$3" 2>/dev/null
    dd if=pat.bin of="$1" bs=4096 seek="$2" count="$3" oflag=direct conv=notrunc 2>dd.err ||
        fail "write to $1 failed: $(cat dd.err)"
}
# pattern_check NODE SKIP_4K COUNT_4K: what pattern_write wrote reads back
pattern_check() {
    dd if="$1" of=back.bin bs=4096 skip="$2" count="$3" iflag=direct 2>dd.err ||
        fail "read of $1 failed: $(cat dd.err)"
    cmp pat.bin back.bin || fail "$1: data read back differs from what was written"
}

# ---- (a) --dry-run and --help
log "+ vdusectl create p0 --dry-run --backend $SO --size 256M"
vdusectl create p0 --dry-run --backend "$SO" --size 256M >dry.out 2>dry.err ||
    { cat dry.out dry.err; fail "create --dry-run failed"; }
cat dry.out
grep -Eq '^size: +256M \(268435456 bytes\)$' dry.out || fail "--dry-run does not say size 256M"
grep -Eq "^backend: +$SO\$" dry.out || fail "--dry-run does not name the backend $SO"
[ ! -s dry.err ] || fail "--dry-run wrote to stderr: $(cat dry.err)"
[ ! -e /dev/vduse/p0 ] || fail "--dry-run created /dev/vduse/p0"
ls "$VCTL_STATE"/p0.* >/dev/null 2>&1 && fail "--dry-run left state files: $(ls "$VCTL_STATE"/p0.*)"
vdusectl create --backend "$SO" --help >help.out 2>&1 || { cat help.out; fail "create --backend $SO --help failed"; }
grep -q 'Keys of the ramdisk backend' help.out || { cat help.out; fail "--help does not list the plugin's keys"; }
grep -Eq '^ +size=SIZE .*\(required\)' help.out || { cat help.out; fail "--help does not list size=SIZE (required)"; }

# ---- (b) p1 from the plugin's path
vdu_create p1 --backend "$SO" --size 256M
# A failure between a kill and its recover would leave the cleanup's
# detach waiting for ever: recover first (runs before the destroy).
on_exit "vdusectl recover p1 >/dev/null 2>&1"
assert_eq "$(sysblk "$VDEV" size)" $((256 * 2048)) "$VDEV size in sectors"
vdusectl show p1 --json >show.json || fail "show p1 --json failed"
assert_eq "$(jqv show.json .backend)" "$SO" "show p1: backend"
assert_eq "$(jqv "$VCTL_STATE/p1.json" .backend)" "$SO" "saved config of p1: backend"
fio_bg "$VDEV" b1
fio_check b1
assert_eq "$(stats_errors p1)" 0 "p1: request errors"

# ---- (c) kill -9 under fio, recover
# The old data goes with the daemon's memory: mark a range to see that.
pattern_write "$VDEV" 50000 16
pattern_check "$VDEV" 50000 16
log "+ fio randwrite (no verify) while the daemon is killed"
fio --name=k --filename="$VDEV" --ioengine=libaio --direct=1 --rw=randwrite \
    --bs=4k --iodepth=32 --size=64m --runtime=6 --time_based \
    --output-format=terse --terse-version=3 >fio-k.out 2>fio-k.err &
fpid=$!
sleep 2
kill -0 "$fpid" 2>/dev/null || { cat fio-k.out fio-k.err; fail "fio ended before the kill"; }
kill9 p1
log "daemon $KILLED_PID of p1 killed under fio"
recover p1
frc=0
wait "$fpid" || frc=$?
ferr=$(awk -F';' '$1 == 3 { print $5 }' fio-k.out)  # terse v3: job error
if [ "$frc" != 0 ] || [ "$ferr" != 0 ]; then
    cat fio-k.out fio-k.err
    fail "fio across kill -9 + recover: exit $frc, job error '$ferr'"
fi
log "fio across kill -9 + recover: no errors; $(resubmitted p1) request(s) resubmitted"
assert_eq "$(grep -c reconnected "$VCTL_STATE/p1.log")" 1 "p1: reconnects logged"
assert_eq "$(jqv "$VCTL_STATE/p1.json" .backend)" "$SO" "saved config of p1 after recover: backend"
vdusectl show p1 --json >show.json || fail "show p1 --json failed after recover"
assert_eq "$(jqv show.json .backend)" "$SO" "show p1 after recover: backend"
read_zero_at() {  # NODE SKIP_4K COUNT_4K
    dd if="$1" of=z.bin bs=4096 skip="$2" count="$3" iflag=direct 2>dd.err ||
        fail "read of $1 failed: $(cat dd.err)"
    cmp -n $(($3 * 4096)) z.bin /dev/zero >/dev/null ||
        fail "$1: blocks $2+$3 written before the kill are not zeroes after recover (the ramdisk's memory died with the daemon)"
}
read_zero_at "$VDEV" 50000 16
log "p1: data from before the kill is gone, as it should be for a ramdisk"
fio_bg "$VDEV" b2
fio_check b2
assert_eq "$(stats_errors p1)" 0 "p1: request errors after recover"

# ---- (d) p2 found on $VDUSE_BACKEND_PATH
export VDUSE_BACKEND_PATH=/nonexistent:$EXDIR
vdu_create p2 --backend ramdisk --size 64M
unset VDUSE_BACKEND_PATH
on_exit "vdusectl recover p2 >/dev/null 2>&1"
P2=$VDEV
assert_eq "$(sysblk "$P2" size)" $((64 * 2048)) "$P2 size in sectors"
assert_eq "$(jqv "$VCTL_STATE/p2.json" .backend)" "$SO" "saved config of p2: backend (the absolute path)"
pattern_write "$P2" 100 256
pattern_check "$P2" 100 256
log "p2: 1 MiB pattern read back"
kill9 p2
recover p2
pattern_write "$P2" 7 64
pattern_check "$P2" 7 64
log "p2: recovered without \$VDUSE_BACKEND_PATH, serves I/O"

# ---- (e) a bad key
expect_error 2 vdusectl create p3 --backend "$SO" --size 64M -o nosuch=1
case "$err_text" in *nosuch*) ;; *) fail "the error does not name the key: $err_text" ;; esac
[ ! -e /dev/vduse/p3 ] || fail "a create with a bad key made /dev/vduse/p3"
expect_error 2 vdusectl create p3 --backend /nonexistent/ramdisk.so --size 64M
[ ! -e /dev/vduse/p3 ] || fail "a create with a missing plugin made /dev/vduse/p3"

# ---- (f) destroy all
vdu_destroy p2
vdu_destroy p1
for n in p1 p2; do
    wait_for_gone "/dev/vduse/$n" 10
    [ ! -e "/sys/class/vduse/$n" ] || fail "/sys/class/vduse/$n still there after destroy"
    [ ! -e "$VCTL_STATE/$n.json" ] || fail "$VCTL_STATE/$n.json left after destroy"
done
dmesg_check
log "ok"
