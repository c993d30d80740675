#!/bin/sh
# vdu-timeout: 300
# nbd backend: nbdkit killed (SIGKILL) in the middle of a fio verify run and
# restarted within the timeout -> fio finishes with zero errors; then the
# server stays away longer than timeout=3 -> I/O errors, no hang; then it
# comes back -> I/O works again.
. "$VDU_TESTDIR/lib.sh"
. "$VDU_TESTDIR/lib-file.sh"
. "$VDU_TESTDIR/lib-tcp.sh"
need_project
need_cmd vdusectl fio nbdkit dd

nbd_start
vdu_create r1 --backend nbd --url "nbd://127.0.0.1:$NBD_PORT/" -o timeout=20

# fio in the background (three verify rounds, so that it is surely still
# running at the kill); kill and restart the server under it
( for round in 1 2 3; do fio_verify_tcp "$VDEV" || exit 1; done ) >fio.log 2>&1 &
FIO=$!
sleep 2
kill -0 $FIO 2>/dev/null || { cat fio.log; fail "fio ended before the server was killed"; }
nbd_kill KILL
sleep 2
nbd_start
wait $FIO || { cat fio.log; fail "fio failed across the server restart"; }
cat fio.log
grep -q 'lost' /run/vduse/r1.log || fail "the daemon did not notice the outage: $(cat /run/vduse/r1.log)"
# The reconnect may have been left to the back-off timer if fio ended
# during the outage: one more request waits for it.
run dd if="$VDEV" of=/dev/null bs=4k count=1 iflag=direct status=none
grep -q 'reconnected' /run/vduse/r1.log || fail "no reconnect logged: $(cat /run/vduse/r1.log)"
assert_eq "$(stats_errors r1)" 0 "r1: request errors"
vdu_destroy r1

# outage longer than the timeout
vdu_create r2 --backend nbd --url "nbd://127.0.0.1:$NBD_PORT/" -o timeout=3
run dd if=/dev/urandom of=/scratch/blk bs=4k count=1 status=none
nbd_kill KILL
t0=$(cut -d. -f1 /proc/uptime)
if dd if=/scratch/blk of="$VDEV" bs=4k count=1 oflag=direct status=none 2>/dev/null; then
    fail "write succeeded with the server gone"
fi
t1=$(cut -d. -f1 /proc/uptime)
log "write failed after $((t1 - t0)) s"
[ $((t1 - t0)) -le 15 ] || fail "the failure took $((t1 - t0)) s (timeout=3)"
must_fail dd if="$VDEV" of=/dev/null bs=4k count=1 iflag=direct status=none
nbd_start
ok=0
for i in $(seq 1 30); do
    if dd if=/scratch/blk of="$VDEV" bs=4k count=1 oflag=direct status=none 2>/dev/null; then
        ok=1; break
    fi
    sleep 1
done
assert_eq $ok 1 "I/O works again after the server is back"
run dd if="$VDEV" of=/scratch/back bs=4k count=1 iflag=direct status=none
run cmp /scratch/blk /scratch/back
vdu_destroy r2
log "all verified"
