#!/bin/sh
# vdu-timeout: 120
# SIGTERM to the daemon of an attached device while fio runs on it.
#
# The daemon cannot DESTROY_DEV while the device is attached, and once it
# is gone nobody completes the requests the kernel keeps queueing: I/O to
# the node hangs for ever, and so does a later detach (del_gendisk waits
# for those requests, holding the vdpa lock, so every later attach hangs
# too).  So "drains cleanly" means:
#   - the daemon never exits while its device is still attached: it either
#     keeps serving (and says so in its log) or detaches first, completing
#     in-flight requests, and then destroys the device;
#   - fio finishes (success, or a clean I/O error) instead of hanging;
#   - nothing is left in D state, no in-flight requests remain, and the
#     kernel log has no oops or hung task.
. "$VDU_TESTDIR/cli-lib.sh"
need_cmd fio jq

N=t19
wedged=0
fpid=""
cleanup19() {
    [ -z "$fpid" ] || kill -9 "$fpid" 2>/dev/null
    if [ $wedged = 1 ]; then
        # Detaching would hang for ever (and block every later vdpa
        # operation): leave the device; a short message timeout lets the
        # VM power off quickly at the end.
        echo 1 >/sys/class/vduse/$N/msg_timeout 2>/dev/null
        echo "NOTE: leaving wedged device $N in place"
    else
        vdusectl destroy $N --force >/dev/null 2>&1
    fi
}
on_exit cleanup19
alive() {  # PID: running and not a zombie
    [ "$(cut -d' ' -f3 "/proc/$1/stat" 2>/dev/null)" != "" ] &&
        [ "$(cut -d' ' -f3 "/proc/$1/stat" 2>/dev/null)" != Z ]
}
attached() { [ -e /sys/bus/vdpa/devices/$N ]; }

run vdusectl create $N --backend null --size 1G
node=$(vdev_attach $N) || exit 1
pid=$(daemon_pid $N) || exit 1
runtime=8
fio --name=drain --filename="$node" --direct=1 --ioengine=libaio --rw=randrw \
    --bs=4k --iodepth=16 --runtime=$runtime --time_based \
    --output-format=json --output="$VDU_SCRATCH/fio.json" >"$VDU_SCRATCH/fio.log" 2>&1 &
fpid=$!
sleep 2
r=$(stats_field $N 0 requests)
log "fio running ($r requests so far); SIGTERM to daemon $pid"
[ "$r" -gt 0 ] || fail "no I/O reached the daemon before SIGTERM"
kill -TERM "$pid" || fail "kill -TERM $pid failed"

# Watch until fio is done: the daemon must never be gone while the device
# is still attached.
deadline=$((runtime + 20))
t=0
outcome=""
while :; do
    if ! alive "$pid" && attached; then
        sleep 0.5
        if attached; then
            wedged=1
            echo "--- daemon log"; cat "$VCTL_STATE/$N.log"
            echo "--- list"; vdusectl list
            fail "daemon exited on SIGTERM while $N was still attached: nobody serves $node any more, its I/O (fio) hangs and a detach would hang in del_gendisk"
        fi
    fi
    alive "$fpid" || break
    [ $t -lt $((deadline * 5)) ] || fail "fio still running ${deadline}s after it started"
    sleep 0.2; t=$((t + 1))
done
frc=0
wait "$fpid" || frc=$?
fpid=""
cat "$VDU_SCRATCH/fio.log"
ferr=$(jq -r '.jobs[0].error' "$VDU_SCRATCH/fio.json" 2>/dev/null || echo "?")
log "fio exited with $frc (job error $ferr)"
no_dstate

if alive "$pid"; then
    # kept serving while attached: the I/O must have gone through
    outcome="daemon kept serving the attached device"
    assert_eq "$frc" 0 "fio exit status with the daemon still serving"
    assert_eq "$ferr" 0 "fio job error with the daemon still serving"
    vdusectl stats $N --json >"$VDU_SCRATCH/st.json" || fail "stats failed after SIGTERM"
    assert_eq "$(jqv "$VDU_SCRATCH/st.json" '[.queues[].inflight] | add')" 0 "requests in flight after fio"
    assert_eq "$(jqv "$VDU_SCRATCH/st.json" '[.queues[].errors] | add')" 0 "daemon errors"
    read_zero "$node" 4
    run vdusectl destroy $N --force
    wait_for_gone /dev/vduse/$N 10
else
    # detached first: fio saw the disk go away (error or EOF), not a hang
    outcome="daemon detached, drained and exited"
    attached && fail "still attached after the daemon exited"
    case "$frc" in 0|1) ;; *) fail "fio died with status $frc" ;; esac
    wait_for_gone "$node" 10
    wait_for_gone /dev/vduse/$N 10
    for f in pid sock; do
        [ ! -e "$VCTL_STATE/$N.$f" ] || fail "$VCTL_STATE/$N.$f left by the exited daemon"
    done
fi
log "outcome: $outcome"
echo "--- daemon log"; cat "$VCTL_STATE/$N.log"
dmesg_check 'blocked for more than|hung_task'
log "ok"
