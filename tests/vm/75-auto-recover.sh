#!/bin/sh
# vdu-timeout: 150
# create --auto-recover: a supervisor restarts the daemon when it is
# SIGKILLed.  Two kills under fio verify -> zero errors, two restarts
# logged; `destroy` ends daemon and supervisor.
. "$VDU_TESTDIR/cli-lib.sh"
. "$VDU_TESTDIR/lib-file.sh"
. "$VDU_TESTDIR/lib-recover.sh"
need_cmd fio od mkfs.ext4

# wait_new_daemon NAME OLD_PID: the supervisor started another daemon
wait_new_daemon() {
    _i=0
    while :; do
        _p=$(cat "$VCTL_STATE/$1.pid" 2>/dev/null | tr -d ' \n')
        if [ -n "$_p" ] && [ "$_p" != "$2" ] && kill -0 "$_p" 2>/dev/null &&
           [ -S "$VCTL_STATE/$1.sock" ] && vdusectl show "$1" >/dev/null 2>&1; then
            return 0
        fi
        [ $_i -lt 150 ] || fail "$1: no new daemon 15 s after killing $2"
        sleep 0.1; _i=$((_i + 1))
    done
}
# auto NAME: the supervisor does the recovery
auto() {
    wait_new_daemon "$1" "$KILLED_PID"
    log "$1: the supervisor started daemon $(daemon_pid "$1")"
}

direct_img img 32
vdev_create ra1 --backend file --path "$IMG" --queues 2 --ring packed --auto-recover
pid=$(daemon_pid ra1) || exit 1
sup=$(cut -d' ' -f4 "/proc/$pid/stat")
[ "$sup" -gt 1 ] && grep -q vdusectl "/proc/$sup/cmdline" || fail "daemon $pid has no supervisor parent ($sup)"
log "daemon $pid, supervisor $sup"
node=$(vdev_attach ra1) || exit 1
kill_loop ra1 "$node" 2 auto
assert_eq "$(grep -c 'killed by signal 9: recovering' "$VCTL_STATE/ra1.log")" 2 "supervisor restarts logged"
assert_eq "$(grep -c 'reconnected' "$VCTL_STATE/ra1.log")" 2 "reconnects logged"
log "$(resubmitted ra1) request(s) resubmitted"
kill -0 "$sup" 2>/dev/null || fail "the supervisor died"
run vdusectl destroy ra1 --force
wait_for_gone /dev/vduse/ra1
i=0
while kill -0 "$sup" 2>/dev/null; do
    [ $i -lt 100 ] || fail "supervisor $sup still running 10 s after destroy"
    sleep 0.1; i=$((i + 1))
done
log "supervisor $sup exited after destroy"
dmesg_check
