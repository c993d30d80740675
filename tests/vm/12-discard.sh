#!/bin/sh
# blkdiscard (DISCARD) and blkdiscard -z (WRITE_ZEROES) on a null device.
. "$VDU_TESTDIR/cli-lib.sh"
need_cmd blkdiscard

vdev_create t12 --backend null --size 256M
node=$(vdev_attach t12) || exit 1
dmax=$(sysblk "$node" queue/discard_max_bytes)
zmax=$(sysblk "$node" queue/write_zeroes_max_bytes)
log "discard_max_bytes=$dmax write_zeroes_max_bytes=$zmax"
[ "$dmax" -gt 0 ] || fail "$node does not support discard"
[ "$zmax" -gt 0 ] || fail "$node does not support write zeroes"

run blkdiscard "$node"
run blkdiscard -o 1048576 -l 4194304 "$node"
run blkdiscard -z "$node"
run blkdiscard -z -o 4096 -l 65536 "$node"
read_zero "$node" 16
errs=$(stats_field t12 0 errors)
assert_eq "$errs" 0 "daemon error count after discards"
dmesg_check
log "ok"
