# shellcheck shell=sh
# lib-vhost.sh -- helpers for the vhost-vdpa guest tests (tests/vm/6*-vhost-*.sh).
# Source after lib.sh.  Not a test itself (vm-run only runs [0-9]*.sh).

CLIENT=vduse-vhost-blk

need_vhost() {
    need_project
    need_cmd vdusectl "$CLIENT"
    [ -d /sys/bus/vdpa/drivers/vhost_vdpa ] || skip "vhost_vdpa driver not loaded"
}

# vh_create NAME ARGS...: create the device (not attached); destroyed on exit
vh_create() {
    _n=$1; shift
    run vdusectl create "$_n" "$@"
    on_exit "vdusectl destroy --force '$_n' >/dev/null 2>&1"
}

# vh_attach NAME DRIVER: attach, check the printed node, set NODE
vh_attach() {
    log "+ vdusectl attach $1 --driver $2"
    NODE=$(vdusectl attach "$1" --driver "$2") || fail "vdusectl attach $1 --driver $2 failed"
    case "$2:$NODE" in
        vhost_vdpa:/dev/vhost-vdpa-[0-9]*) ;;
        virtio_vdpa:/dev/vd[a-z]*) ;;
        *) fail "attach $1 --driver $2 printed '$NODE'" ;;
    esac
    wait_for_path "$NODE" 10
    if [ "$2" = vhost_vdpa ]; then
        [ -c "$NODE" ] || fail "$NODE is not a character device"
    else
        [ -b "$NODE" ] || fail "$NODE is not a block device"
    fi
    _drv=$(basename "$(readlink "/sys/bus/vdpa/devices/$1/driver")")
    assert_eq "$_drv" "$2" "$1 bound driver"
    log "$1 attached to $2 as $NODE"
}

# vh_detach NAME: detach and wait for the node to go away
vh_detach() {
    run vdusectl detach "$1"
    if [ -n "${NODE:-}" ]; then wait_for_gone "$NODE" 10; fi
    if [ -e "/sys/bus/vdpa/devices/$1" ]; then fail "$1 still on the vdpa bus after detach"; fi
    NODE=
}

# daemon_pid NAME: the daemon's pid from vdusectl show
daemon_pid() {
    vdusectl show "$1" | sed -n 's/^daemon: *running, pid \([0-9]*\).*/\1/p'
}

# vh_healthy NAME: the daemon answers, no queue is broken, nothing in flight
vh_healthy() {
    _st=$(vdusectl stats "$1") || fail "vdusectl stats $1 failed: the daemon is gone?"
    echo "$_st"
    echo "$_st" | grep -qi broken && fail "$1: a queue is broken"
    _sh=$(vdusectl show "$1") || fail "vdusectl show $1 failed"
    echo "$_sh" | grep -q '^broken: *no' || fail "$1: show says broken: $_sh"
    echo "$_sh" | grep -q '^in flight: *0$' || fail "$1: requests still in flight: $_sh"
}
