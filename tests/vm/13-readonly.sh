#!/bin/sh
# --read-only: the block device is read-only and writes fail; reads work.
. "$VDU_TESTDIR/cli-lib.sh"

vdev_create t13 --backend null --size 64M --read-only
node=$(vdev_attach t13) || exit 1
assert_eq "$(sysblk "$node" ro)" 1 "/sys/block ro"
assert_eq "$(blockdev --getro "$node")" 1 "blockdev --getro"
read_zero "$node" 4
if write_direct "$node" 1; then
    fail "direct write to read-only $node succeeded"
fi
log "direct write refused: $(cat "$VDU_SCRATCH/dd.err" | head -n 1)"
# clearing the ro flag must not let writes reach the device either
blockdev --setrw "$node" 2>/dev/null || true
if write_direct "$node" 1; then
    errs=$(stats_field t13 0 errors)
    wb=$(stats_field t13 0 write_bytes)
    log "write after --setrw: rc=0 (daemon errors=$errs write_bytes=$wb)"
    assert_eq "$wb" 0 "bytes the read-only device accepted"
fi
if command -v jq >/dev/null 2>&1; then
    vdusectl show t13 --json >"$VDU_SCRATCH/show.json" || fail "show failed"
    assert_eq "$(jqv "$VDU_SCRATCH/show.json" .read_only)" true "show .read_only"
fi
dmesg_check
log "ok"
