#!/bin/sh
# vdu-timeout: 120
# recover refuses clearly: daemon still alive (exit 1, one line), unknown
# device (exit 3), saved configuration missing (exit 1, names the file).
# A device the kernel marked broken (a reply later than msg_timeout): the
# daemon logs it, `show` (text and JSON) says so, destroy still works.
. "$VDU_TESTDIR/cli-lib.sh"
. "$VDU_TESTDIR/lib-recover.sh"
need_cmd jq

img="$VDU_SCRATCH/img"
truncate -s 16M "$img" || fail "cannot create $img"

vdev_create rr1 --backend file --path "$img"
pid=$(daemon_pid rr1) || exit 1
expect_error '1' vdusectl recover rr1
echo "$err_text" | grep -q "still running" || fail "unclear refusal: $err_text"
assert_eq "$(daemon_pid rr1)" "$pid" "pid after a refused recover"
kill -0 "$pid" || fail "a refused recover hurt the daemon"

expect_error '3' vdusectl recover nosuchdev

kill9 rr1
mv "$VCTL_STATE/rr1.json" "$VDU_SCRATCH/rr1.json"
expect_error '1' vdusectl recover rr1
echo "$err_text" | grep -q "rr1.json" || fail "missing-config error does not name the file: $err_text"
mv "$VDU_SCRATCH/rr1.json" "$VCTL_STATE/rr1.json"
recover rr1
run vdusectl destroy rr1
wait_for_gone /dev/vduse/rr1

# --- broken device
vdev_create rb1 --backend file --path "$img"
node=$(vdev_attach rb1) || exit 1
vdusectl show rb1 | tee show.out
grep -q '^msg_timeout: *30 s' show.out || fail "show does not print the message timeout"
echo 1 >/sys/class/vduse/rb1/msg_timeout || fail "cannot set msg_timeout"
pid=$(daemon_pid rb1) || exit 1
kill -STOP "$pid"
log "+ vdusectl detach rb1 (daemon $pid stopped, msg_timeout 1 s)"
rc=0; vdusectl detach rb1 >detach.out 2>&1 || rc=$?
log "detach returned $rc: $(cat detach.out)"
kill -CONT "$pid"
i=0
until grep -q 'marked the device broken' "$VCTL_STATE/rb1.log"; do
    [ $i -lt 100 ] || fail "the daemon did not log the broken device: $(tail -n 5 "$VCTL_STATE/rb1.log")"
    sleep 0.1; i=$((i + 1))
done
log "daemon log: $(grep 'marked the device broken' "$VCTL_STATE/rb1.log")"
vdusectl show rb1 | tee show.out
grep -q '^kernel: *broken' show.out || fail "show does not say the device is broken"
vdusectl show rb1 --json >show.json || fail "show --json failed"
assert_eq "$(jqv show.json .kernel_broken)" true "show --json kernel_broken"
run vdusectl destroy rb1 --force
wait_for_gone /dev/vduse/rb1
no_dstate
dmesg_check
