# shellcheck shell=sh
# lib.sh -- helpers for guest test scripts run by tests/vm/vm-run.
# Usage in a test:   . "$VDU_TESTDIR/lib.sh"
# Runs under busybox sh in the guest.  Env from the harness: VDU_TESTDIR,
# VDU_SCRATCH (tmpfs, wiped per test, also the cwd), VDU_TEST_NAME, VDU_KVER,
# VDU_HAVE_PROJECT (1 if the project was staged into the guest).
# Exit codes: 0 pass, 77 skip, anything else fail.

log()  { echo "[$(cut -d' ' -f1 /proc/uptime)] $*"; }
fail() { echo "FAIL: $*"; exit 1; }
skip() { echo "SKIP: $*"; exit 77; }

assert_eq() {  # ACTUAL EXPECTED [MSG]
    [ "$1" = "$2" ] || fail "${3:-assert_eq}: got '$1', expected '$2'"
}
assert_ne() {  # A B [MSG]
    [ "$1" != "$2" ] || fail "${3:-assert_ne}: both are '$1'"
}
# run CMD...: log and run a command, fail the test if it fails
run() {
    log "+ $*"
    "$@" || fail "command failed (rc=$?): $*"
}
# must_fail CMD...: fail the test if the command succeeds
must_fail() {
    log "+ ! $*"
    if "$@"; then fail "command unexpectedly succeeded: $*"; fi
}

# wait_for_path PATH [SECS=10]: wait until PATH exists (polls every 0.1 s)
wait_for_path() {
    _w_i=0 _w_n=$(( ${2:-10} * 10 ))
    while [ ! -e "$1" ]; do
        [ $_w_i -lt $_w_n ] || fail "timed out after ${2:-10}s waiting for $1"
        sleep 0.1; _w_i=$((_w_i + 1))
    done
}
# wait_vdpa_block NAME: print /dev/vdX of vdpa device NAME once its
# virtio driver (virtio_vdpa) has made the disk; non-zero after 10 s
wait_vdpa_block() {
    _w_i=0
    while [ $_w_i -lt 100 ]; do
        for _w_b in /sys/bus/vdpa/devices/"$1"/virtio*/block/*; do
            [ -e "$_w_b" ] && { echo "/dev/${_w_b##*/}"; return 0; }
        done
        sleep 0.1; _w_i=$((_w_i + 1))
    done
    return 1
}
# wait_for_gone PATH [SECS=10]
wait_for_gone() {
    _w_i=0 _w_n=$(( ${2:-10} * 10 ))
    while [ -e "$1" ]; do
        [ $_w_i -lt $_w_n ] || fail "timed out after ${2:-10}s waiting for $1 to go away"
        sleep 0.1; _w_i=$((_w_i + 1))
    done
}

# need_cmd NAME...: skip the test unless all commands are available
need_cmd() {
    for _c in "$@"; do command -v "$_c" >/dev/null 2>&1 || skip "$_c not available"; done
}
# need_project: skip unless the project was staged (vdusectl etc.)
need_project() {
    [ "${VDU_HAVE_PROJECT:-0}" = 1 ] || skip "project not staged (--no-project)"
}
# load_module NAME [PARAMS...]: insmod from /lib/modules unless loaded
load_module() {
    _m=$1; shift
    grep -q "^$_m " /proc/modules && return 0
    insmod "/lib/modules/$_m.ko" "$@" || fail "insmod $_m failed"
}

# on_exit 'CMD': register cleanup commands; run in reverse order on exit
# (also on fail/skip).  Cleanup errors are ignored.
_vdu_cleanups=""
_vdu_run_cleanups() {
    _rc=$?
    set +e
    eval "$_vdu_cleanups"
    exit $_rc
}
on_exit() {
    _vdu_cleanups="$1
$_vdu_cleanups"
    trap _vdu_run_cleanups EXIT
    trap 'exit 143' TERM
    trap 'exit 130' INT
}
cleanup() { on_exit "$@"; }
