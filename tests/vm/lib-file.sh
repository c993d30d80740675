# shellcheck shell=sh
# lib-file.sh -- helpers shared by the file backend's guest tests
# (tests/vm/3*-file-*.sh).  Source after lib.sh:
#   . "$VDU_TESTDIR/lib.sh"; . "$VDU_TESTDIR/lib-file.sh"
# Not a test itself (vm-run only runs [0-9]*.sh).

NULLB_CFG=/sys/kernel/config/nullb

# nullb_new NAME SIZE_MB BLOCKSIZE [DISCARD=0]: a memory-backed null_blk
# disk /dev/NAME made through configfs; removed again on exit.
nullb_new() {
    _n=$1 _mb=$2 _bs=$3 _disc=${4:-0}
    [ -d "$NULLB_CFG" ] || skip "null_blk configfs not available ($NULLB_CFG)"
    run mkdir "$NULLB_CFG/$_n"
    on_exit "echo 0 >'$NULLB_CFG/$_n/power'; rmdir '$NULLB_CFG/$_n'"
    echo "$_mb" >"$NULLB_CFG/$_n/size" || fail "nullb $_n: size"
    echo 1 >"$NULLB_CFG/$_n/memory_backed" || fail "nullb $_n: memory_backed"
    echo "$_bs" >"$NULLB_CFG/$_n/blocksize" || fail "nullb $_n: blocksize"
    [ "$_disc" = 1 ] && { echo 1 >"$NULLB_CFG/$_n/discard" || fail "nullb $_n: discard"; }
    echo 1 >"$NULLB_CFG/$_n/power" || fail "nullb $_n: power"
    wait_for_path "/dev/$_n" 10
    log "null_blk /dev/$_n: ${_mb} MiB, block size $_bs, discard $_disc"
}

# ext4_on DEV MOUNTPOINT: mkfs.ext4 + mount; unmounted again on exit
ext4_on() {
    run mkfs.ext4 -q -F "$1"
    mkdir -p "$2"
    run mount -t ext4 "$1" "$2"
    on_exit "umount '$2'"
}

# vdu_create NAME ARGS...: vdusectl create NAME ARGS --attach; sets VDEV to
# the node (/dev/vdX) and destroys the device on exit.
vdu_create() {
    _name=$1; shift
    log "+ vdusectl create $_name $* --attach"
    VDEV=$(vdusectl create "$_name" "$@" --attach) ||
        fail "vdusectl create $_name $* --attach failed"
    on_exit "vdusectl destroy --force '$_name' >/dev/null 2>&1"
    case "$VDEV" in /dev/vd*) ;; *) fail "create printed '$VDEV', not a /dev/vdX node" ;; esac
    wait_for_path "$VDEV" 10
    log "$_name is $VDEV"
}

# vdu_destroy NAME: detach + destroy now (the exit hook then finds nothing)
vdu_destroy() {
    run vdusectl destroy --force "$1"
}

# sysq VDEV ATTR: /sys/block/vdX/queue/ATTR
sysq() {
    cat "/sys/block/${1#/dev/}/queue/$2"
}

# blocks FILE: allocated 512-byte blocks
blocks() {
    stat -c %b "$1"
}

# stats_requests NAME: completed requests per queue, space separated
stats_requests() {
    vdusectl stats "$1" --json | tr '{' '\n' | sed -n 's/.*"requests":\([0-9]*\).*/\1/p' | tr '\n' ' '
}

# stats_errors NAME: the sum of every queue's error counter
stats_errors() {
    vdusectl stats "$1" --json | tr '{' '\n' |
        sed -n 's/.*"errors":\([0-9]*\).*/\1/p' | awk '{s += $1} END {print s + 0}'
}
