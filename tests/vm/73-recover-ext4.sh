#!/bin/sh
# vdu-timeout: 180
# ext4 on a file-backed device with a write loop running (files of random
# data, fsync'ed, their checksums recorded elsewhere); the daemon is
# SIGKILLed and recovered 3 times under it.  The loop sees no error, the
# filesystem unmounts, `fsck.ext4 -fn` is clean, and after a remount (the
# data now comes from the device, not the page cache) every file matches
# its checksum.
. "$VDU_TESTDIR/cli-lib.sh"
. "$VDU_TESTDIR/lib-file.sh"
. "$VDU_TESTDIR/lib-recover.sh"
need_cmd mkfs.ext4 fsck.ext4 md5sum od

img="$VDU_SCRATCH/img"
truncate -s 64M "$img" || fail "cannot create $img"
vdev_create re1 --backend file --path "$img" --queues 2
on_exit "vdusectl recover re1 >/dev/null 2>&1"
node=$(vdev_attach re1) || exit 1
run mkfs.ext4 -q -F "$node"
mkdir -p /mnt/re1
run mount -t ext4 "$node" /mnt/re1
on_exit "umount /mnt/re1 2>/dev/null"

# writer N: N files of 64..1024 KiB, each fsync'ed (conv=fsync); the
# expected sums go to the scratch tmpfs.  Exit status: first failure.
writer() {
    for i in $(seq 1 "$1"); do
        n=$(( 1 + $(rnd 16) ))
        dd if=/dev/urandom of=src.$i bs=64k count=$n status=none || return 1
        dd if=src.$i of=/mnt/re1/f$i bs=64k conv=fsync status=none || return 2
        md5sum <src.$i | sed "s|-|/mnt/re1/f$i|" >>sums
        rm -f src.$i
        [ $((i % 8)) = 0 ] && { sync || return 3; }
    done
    echo done >writer.done
}

rm -f sums writer.done
writer 60 >writer.log 2>&1 &
W=$!
for k in 1 2 3; do
    rnd_sleep 500 1500
    kill -0 $W 2>/dev/null || break
    kill9 re1
    log "kill $k: daemon $KILLED_PID killed under the write loop ($(wc -l <sums) files done)"
    recover re1
done
[ "$k" = 3 ] || log "the write loop finished after $((k - 1)) kill(s)"
rc=0; wait $W || rc=$?
[ $rc = 0 ] && [ -f writer.done ] || { cat writer.log; fail "write loop failed (rc=$rc)"; }
log "write loop done: $(wc -l <sums) files"
run umount /mnt/re1
log "+ fsck.ext4 -fn $node"
fsck.ext4 -fn "$node" >fsck.out 2>&1 || { cat fsck.out; fail "fsck.ext4 -fn found problems"; }
run mount -t ext4 "$node" /mnt/re1
md5sum -c sums >md5.out 2>&1 || { grep -v ': OK$' md5.out | head; fail "file contents differ after recovery"; }
log "all $(wc -l <sums) files match their checksums"
run umount /mnt/re1
assert_eq "$(stats_errors re1)" 0 "re1: request errors"
run vdusectl destroy re1 --force
wait_for_gone /dev/vduse/re1
dmesg_check
