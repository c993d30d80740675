#!/bin/sh
# vdu-timeout: 180
# file backend: mkfs.ext4 on the device, mount, write a tree of files, sync,
# unmount, destroy; re-create from the same image: fsck.ext4 -fn is clean
# and every file's checksum matches.  Image on ext4 on a memory-backed
# null_blk disk (O_DIRECT), 2 queues.
. "$VDU_TESTDIR/lib.sh"
. "$VDU_TESTDIR/lib-file.sh"
need_project
need_cmd vdusectl mkfs.ext4 fsck.ext4 sha256sum

nullb_new nullb1 200 512
ext4_on /dev/nullb1 /mnt/host
img=/mnt/host/fs.img

vdu_create fs1 --backend file --path "$img" --queues 2 -o create=1 -o size=128M
run mkfs.ext4 -q -F "$VDEV"
mkdir -p /mnt/g
run mount -t ext4 "$VDEV" /mnt/g
on_exit "umount /mnt/g 2>/dev/null"

# A tree: 3 levels of directories, files from 0 bytes to 3 MiB
log "writing the tree"
i=0
for a in 0 1 2 3; do
    for b in 0 1 2 3 4; do
        d=/mnt/g/d$a/e$b
        mkdir -p "$d"
        for c in 0 1 2 3 4 5; do
            i=$((i + 1))
            n=$(( (i * 7919) % 65536 ))
            case $c in
            0) n=0 ;;
            1) n=$((n % 511 + 1)) ;;
            5) n=$((n * 48)) ;;
            esac
            head -c "$n" /dev/urandom >"$d/f$c"
        done
    done
done
ln -s d0/e0/f1 /mnt/g/link
dd if=/dev/urandom of=/mnt/g/big bs=1M count=24 2>/dev/null || fail "dd big"
(cd /mnt/g && find . -type f | sort | xargs sha256sum) >/scratch/sums
log "$(wc -l </scratch/sums) files, $(du -sk /mnt/g | cut -f1) KiB"
run sync
run umount /mnt/g
vdu_destroy fs1

vdu_create fs2 --backend file --path "$img" --queues 2
run fsck.ext4 -fn "$VDEV"
run mount -t ext4 -o ro "$VDEV" /mnt/g
(cd /mnt/g && sha256sum -c /scratch/sums >/scratch/check 2>&1) ||
    { grep -v ': OK$' /scratch/check | head -n 20; fail "checksums differ after re-create"; }
assert_eq "$(readlink /mnt/g/link)" d0/e0/f1 "symlink"
log "$(grep -c ': OK$' /scratch/check) checksums match"
run umount /mnt/g
assert_eq "$(stats_errors fs2)" 0 "request errors"
vdu_destroy fs2
