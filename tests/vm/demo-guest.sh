#!/bin/sh
# demo-guest.sh -- the vduse demo: a 1 GiB null-backed virtio-blk disk made
# by vdusectl, used, measured and taken down again.  Needs root and a
# kernel with VDUSE (scripts/demo runs it here or in a QEMU guest).
# Exits non-zero on any failure.  VDUSECTL overrides the vdusectl to use.
set -eu
V=${VDUSECTL:-vdusectl}
NAME=${DEMO_NAME:-demo0}
TMP=${TMPDIR:-/tmp}

step() { printf '\n### %s\n' "$*"; }
done_ok=0
finish() {
    rc=$?
    if [ $done_ok = 0 ]; then
        $V destroy "$NAME" --force >/dev/null 2>&1 || true
        echo "demo: FAILED (exit $rc)" >&2
        [ $rc != 0 ] || rc=1
    fi
    rm -f "$TMP/demo-w.bin" "$TMP/demo-r.bin"
    exit $rc
}
trap finish EXIT
trap 'exit 130' INT TERM

step "$V create $NAME --backend null --size 1G"
$V create "$NAME" --backend null --size 1G

step "$V attach $NAME"
node=$($V attach "$NAME")
echo "$node"
[ -b "$node" ] || { echo "demo: $node is not a block device" >&2; exit 1; }
blk=${node#/dev/}

step "the new disk"
if command -v lsblk >/dev/null 2>&1; then lsblk -o NAME,SIZE,TYPE,RO,LOG-SEC "$node"; fi
echo "/sys/block/$blk/size: $(cat "/sys/block/$blk/size") sectors of 512 bytes = $(($(cat "/sys/block/$blk/size") * 512)) bytes"
$V list

step "$V show $NAME"
$V show "$NAME"

step "write a 4 KiB block at offset 1 MiB, read it back (O_DIRECT)"
dd if=/dev/urandom of="$TMP/demo-w.bin" bs=4096 count=1 2>/dev/null
dd if="$TMP/demo-w.bin" of="$node" bs=4096 seek=256 count=1 oflag=direct conv=notrunc 2>/dev/null
echo "wrote:  $(od -An -tx1 -N16 "$TMP/demo-w.bin" | tr -s ' ')"
dd if="$node" of="$TMP/demo-r.bin" bs=4096 skip=256 count=1 iflag=direct 2>/dev/null
echo "read:   $(od -An -tx1 -N16 "$TMP/demo-r.bin" | tr -s ' ')"
if cmp -s -n 4096 "$TMP/demo-r.bin" /dev/zero; then
    echo "(the null backend drops writes and reads zeroes, as it should)"
else
    echo "demo: a read from the null device returned non-zero data" >&2
    exit 1
fi

step "fio: 3 s of 4 KiB random reads, queue depth 16"
if command -v fio >/dev/null 2>&1; then
    fio --name=demo --filename="$node" --direct=1 --ioengine=libaio \
        --rw=randread --bs=4k --iodepth=16 --runtime=3 --time_based \
        >"$TMP/demo-fio.txt"
    grep -E 'IOPS=|err=|READ:' "$TMP/demo-fio.txt" || cat "$TMP/demo-fio.txt"
    grep -q 'err= 0' "$TMP/demo-fio.txt" || { echo "demo: fio reported errors" >&2; exit 1; }
    rm -f "$TMP/demo-fio.txt"
else
    echo "(fio not installed: skipped)"
fi

step "$V stats $NAME"
$V stats "$NAME"

step "$V detach $NAME"
$V detach "$NAME"
[ ! -e "$node" ] || { sleep 1; [ ! -e "$node" ] || { echo "demo: $node still there" >&2; exit 1; }; }
echo "$node is gone"

step "$V destroy $NAME"
$V destroy "$NAME"
[ ! -e "/dev/vduse/$NAME" ] || { echo "demo: /dev/vduse/$NAME still there" >&2; exit 1; }
echo "/dev/vduse/$NAME is gone"
done_ok=1
printf '\ndemo: OK\n'
