# shellcheck shell=sh
# lib-tcp.sh -- helpers for the tcp backend's guest tests (tests/vm/5*-tcp-*.sh).
# Source after lib.sh and lib-file.sh.  Not a test itself.

NBD_PORT=10809
NBD_IMG=/scratch/nbd.img

# nbd_start [NBDKIT ARGS...]: nbdkit on 127.0.0.1:$NBD_PORT serving the
# file $NBD_IMG (created once, 128 MiB); sets NBD_PID.  Stopped on exit.
nbd_start() {
    need_cmd nbdkit ip
    ip link set lo up 2>/dev/null || fail "cannot bring lo up"
    [ -f "$NBD_IMG" ] || truncate -s 128M "$NBD_IMG" || fail "cannot create $NBD_IMG"
    rm -f /scratch/nbdkit.pid
    nbdkit -f -i 127.0.0.1 -p "$NBD_PORT" -P /scratch/nbdkit.pid "$@" \
        file "$NBD_IMG" >>/scratch/nbdkit.log 2>&1 &
    NBD_PID=$!
    _i=0
    while [ ! -s /scratch/nbdkit.pid ]; do
        kill -0 "$NBD_PID" 2>/dev/null || { cat /scratch/nbdkit.log; fail "nbdkit did not start"; }
        [ $_i -lt 100 ] || fail "nbdkit did not write its pid file in 10 s"
        sleep 0.1; _i=$((_i + 1))
    done
    on_exit "kill $NBD_PID 2>/dev/null"
    log "nbdkit (pid $NBD_PID) serving $NBD_IMG on 127.0.0.1:$NBD_PORT"
}

# nbd_kill [SIGNAL]: stop the server (default SIGKILL: no goodbye)
nbd_kill() {
    kill "-${1:-KILL}" "$NBD_PID" 2>/dev/null
    wait "$NBD_PID" 2>/dev/null
    log "nbdkit (pid $NBD_PID) killed with SIG${1:-KILL}"
}

# fio_verify_tcp DEV [EXTRA FIO ARGS]: randwrite + crc32c verify, zero errors
fio_verify_tcp() {
    _dev=$1; shift
    log "+ fio verify on $_dev $*"
    fio --output-format=terse --terse-version=3 \
        --filename="$_dev" --ioengine=libaio --direct=1 --rw=randwrite \
        --verify=crc32c --do_verify=1 --verify_fatal=1 --verify_backlog=0 \
        --group_reporting=0 "$@" \
        --name=b4kq1 --bs=4k --iodepth=1 --offset=0 --size=1m \
        --name=b4kq32 --bs=4k --iodepth=32 --offset=4m --size=4m \
        --name=b64kq32 --bs=64k --iodepth=32 --offset=8m --size=8m \
        --name=b1mq32 --bs=1m --iodepth=32 --offset=16m --size=16m \
        --name=mixed --bsrange=512-1m --iodepth=16 --offset=32m --size=16m \
        >fio.out 2>fio.err
    _rc=$?
    _errs=$(awk -F';' '$5 != 0 { print $3 ": error " $5 }' fio.out)
    if [ $_rc != 0 ] || [ -n "$_errs" ] || grep -qi 'verify' fio.err; then
        cat fio.err; echo "$_errs"
        fail "fio verify on $_dev failed (rc=$_rc)"
    fi
    log "fio: $(wc -l <fio.out) jobs verified, no errors"
}
