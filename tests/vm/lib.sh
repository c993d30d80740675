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
# nbd_client_connect HOST PORT NBDDEV CONNS: connect the kernel's NBD client
# (nbd-client, netlink) on NBDDEV (/dev/nbdK) with CONNS connections to the
# default export; waits up to 10 s for the disk's size; disconnected on exit.
nbd_client_connect() {
    nbd-client "$1" "$2" "$3" -N '' -C "$4" >"$VDU_SCRATCH/nbd-client.log" 2>&1 ||
        { cat "$VDU_SCRATCH/nbd-client.log"; fail "nbd-client $1 $2 $3 -C $4"; }
    on_exit "nbd-client -d $3 >/dev/null 2>&1"
    _n_i=0
    while [ "$(cat /sys/block/"${3#/dev/}"/size 2>/dev/null || echo 0)" = 0 ]; do
        [ $_n_i -lt 100 ] || fail "$3 has no size after 10 s"
        sleep 0.1; _n_i=$((_n_i + 1))
    done
}
# rotated N WORDS...: the words with the first N-1 moved to the end, so that
# round N of a benchmark starts with its N-th device (modulo their count)
rotated() {
    _r_n=$1; shift
    _r_i=1
    while [ "$_r_i" -lt "$_r_n" ]; do set -- "$@" "$1"; shift; _r_i=$((_r_i + 1)); done
    echo "$@"
}
# bench_fio DEV WORKLOAD SECS: one fio run (libaio, direct, time based),
# prints "IOPS MEAN_LAT_US P99_CLAT_US".  WORKLOAD: rr32 (4k randread
# QD32), rr32x2 (the same, 2 jobs split over CPUs 0-1), rr1 (4k randread
# QD1), rw32 (4k randwrite QD32), rw1 (4k randwrite QD1), sr128 (128k read QD32), sr1m (1 MiB
# read QD32).
bench_fio() {
    case $2 in
    rr32)  _b_a="--rw=randread --bs=4k --iodepth=32 --numjobs=1" ;;
    rr32x2) _b_a="--rw=randread --bs=4k --iodepth=32 --numjobs=2 --cpus_allowed=0-1 --cpus_allowed_policy=split" ;;
    rr1)   _b_a="--rw=randread --bs=4k --iodepth=1 --numjobs=1" ;;
    rw32)  _b_a="--rw=randwrite --bs=4k --iodepth=32 --numjobs=1" ;;
    rw1)   _b_a="--rw=randwrite --bs=4k --iodepth=1 --numjobs=1" ;;
    sr128) _b_a="--rw=read --bs=128k --iodepth=32 --numjobs=1" ;;
    sr1m)  _b_a="--rw=read --bs=1m --iodepth=32 --numjobs=1" ;;
    sr1m8) _b_a="--rw=read --bs=1m --iodepth=8 --numjobs=1" ;;
    *) fail "bench_fio: unknown workload $2" ;;
    esac
    # shellcheck disable=SC2086
    fio --name=b --filename="$1" --ioengine=libaio --direct=1 $_b_a \
        --size="${BENCH_SIZE:-512m}" --runtime="$3" --time_based --group_reporting \
        --lat_percentiles=1 --output-format=terse --terse-version=3 2>/dev/null |
    awk -F';' -v w="$2" '{
        # read: iops 8, lat mean 40, p99 30; write: the same + 41
        o = (w ~ /^rw/) ? 41 : 0
        p = $(30 + o); sub(/.*=/, "", p)
        printf "%d %.1f %s\n", $(8 + o), $(40 + o), p }'
}
# bench_row DEV WORKLOAD SECS ROUND TAG...: "R TAG... IOPS MEAN P99 ROUND"
# from one bench_fio run on DEV, failing the test when fio gave no result
bench_row() {
    _br_d=$1 _br_w=$2 _br_s=$3 _br_r=$4; shift 4
    _br=$(bench_fio "$_br_d" "$_br_w" "$_br_s")
    [ -n "$_br" ] || fail "fio on $_br_d ($_br_w) gave no result"
    echo "R $* $_br $_br_r"
}
# nullb_ceiling: load kernel null_blk as the benchmarks' ceiling, 1 GiB
# /dev/nullb0 with 2 submit queues, completed in the submitting context
# (irqmode=0: no timer, no softirq); unloaded on exit.  Returns 1 (after a
# log line) when the module is missing or does not load.
nullb_ceiling() {
    grep -q '^null_blk ' /proc/modules && rmmod null_blk 2>/dev/null
    if [ -e /lib/modules/null_blk.ko ] &&
       insmod /lib/modules/null_blk.ko nr_devices=1 queue_mode=2 \
           submit_queues=2 gb=1 irqmode=0 2>/dev/null; then
        on_exit "rmmod null_blk 2>/dev/null"
        wait_for_path /dev/nullb0 5
        return 0
    fi
    log "null_blk not available"
    return 1
}
# qsd_export NAME QUEUES BLOCKDEV: start qemu-storage-daemon exporting
# --blockdev BLOCKDEV (whose node-name must be n) as vduse-blk NAME
# (QUEUES queues of 256, one iothread), add and bind the vdpa device;
# sets qsd_dev to its /dev/vdX.  The daemon and the vdpa device are
# removed on exit (or by qsd_unexport NAME), so call it in this shell, not
# in $(...).  NAME must be usable in a variable name.  Used by the
# benchmarks' guest halves.
qsd_export() {
    qemu-storage-daemon --object iothread,id=t0 --blockdev "$3" \
        --export type=vduse-blk,id=e,node-name=n,name="$1",writable=on,num-queues="$2",queue-size=256,iothread=t0 \
        >"$VDU_SCRATCH/qsd-$1.log" 2>&1 &
    eval "qsd_pid_$1=$!"
    on_exit "kill $! 2>/dev/null"
    _q_i=0
    while [ ! -e /dev/vduse/"$1" ] && [ $_q_i -lt 100 ]; do sleep 0.1; _q_i=$((_q_i + 1)); done
    [ -e /dev/vduse/"$1" ] || { cat "$VDU_SCRATCH/qsd-$1.log"; fail "qemu-storage-daemon did not create /dev/vduse/$1"; }
    vdpa dev add name "$1" mgmtdev vduse || fail "vdpa dev add $1"
    on_exit "vdpa dev del $1 2>/dev/null"
    # virtio_vdpa makes the disk; vhost_vdpa may have taken the device
    _q_drv=$(basename "$(readlink /sys/bus/vdpa/devices/"$1"/driver 2>/dev/null)")
    if [ "$_q_drv" != virtio_vdpa ]; then
        [ -z "$_q_drv" ] || echo "$1" >/sys/bus/vdpa/drivers/"$_q_drv"/unbind
        echo "$1" >/sys/bus/vdpa/drivers/virtio_vdpa/bind || fail "qsd $1: cannot bind virtio_vdpa"
    fi
    qsd_dev=$(wait_vdpa_block "$1") || { cat "$VDU_SCRATCH/qsd-$1.log"; fail "qsd $1: no block device"; }
}
# ublk_add ARGS...: one ublk device from ublksrv (`ublk add ARGS`, e.g.
# -t null -q 1 -d 256, or -t loop -q 1 -d 256 -f FILE); sets ublk_dev to
# its /dev/ublkbN and removes it on exit.  The ublk binary is $UBLK, else
# /opt/ublk/sbin/ublk (tests/bench puts it there with
# ../shared/peers/build-ublk.sh); returns 1 when it or ublk_drv is missing.
ublk_add() {
    _u=${UBLK:-/opt/ublk/sbin/ublk}
    [ -x "$_u" ] || { log "ublk: no $_u"; return 1; }
    grep -q '^ublk_drv ' /proc/modules || insmod /lib/modules/ublk_drv.ko 2>/dev/null ||
        [ -e /dev/ublk-control ] || { log "ublk: ublk_drv does not load"; return 1; }
    mkdir -p /var/run
    _u_out=$("$_u" add "$@" 2>&1) || { echo "$_u_out"; fail "ublk add $*"; }
    _u_id=$(echo "$_u_out" | sed -n 's/^dev id \([0-9]*\):.*/\1/p' | head -n 1)
    [ -n "$_u_id" ] || { echo "$_u_out"; fail "ublk add $*: no device id in its output"; }
    on_exit "$_u del -n $_u_id >/dev/null 2>&1"
    wait_for_path /dev/ublkb"$_u_id" 10
    ublk_dev=/dev/ublkb$_u_id
}
# qsd_unexport NAME: remove qsd_export's vdpa device and stop its daemon
# now, so that it does not share the guest with what is measured next.
qsd_unexport() {
    vdpa dev del "$1" || fail "vdpa dev del $1"
    eval "kill \$qsd_pid_$1 && wait \$qsd_pid_$1" 2>/dev/null || :
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
