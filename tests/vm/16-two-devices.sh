#!/bin/sh
# Two devices at once: both attached, distinct nodes, I/O on one does not
# show up on the other, and taking one down leaves the other working.
. "$VDU_TESTDIR/cli-lib.sh"
need_cmd fio jq

vdev_create t16a --backend null --size 1G
vdev_create t16b --backend null --size 512M --serial t16b-serial
na=$(vdev_attach t16a) || exit 1
nb=$(vdev_attach t16b) || exit 1
assert_ne "$na" "$nb" "nodes of the two devices"
assert_eq "$(sysblk "$na" size)" 2097152 "size of t16a"
assert_eq "$(sysblk "$nb" size)" 1048576 "size of t16b"
assert_eq "$(sysblk "$nb" serial)" t16b-serial "serial of t16b"
pa=$(daemon_pid t16a) || exit 1
pb=$(daemon_pid t16b) || exit 1
assert_ne "$pa" "$pb" "daemon pids"

vdusectl list --json >"$VDU_SCRATCH/list.json" || fail "list failed"
assert_eq "$(jqv "$VDU_SCRATCH/list.json" '.devices[] | select(.name == "t16a") | .node')" "$na" "list node of t16a"
assert_eq "$(jqv "$VDU_SCRATCH/list.json" '.devices[] | select(.name == "t16b") | .node')" "$nb" "list node of t16b"

# I/O on a only: b's counters stay put
sleep 1
b0=$(stats_field t16b 0 requests)
a0=$(stats_field t16a 0 requests)
read_zero "$na" 64
write_direct "$na" 32 || fail "write to $na failed"
a1=$(stats_field t16a 0 requests)
b1=$(stats_field t16b 0 requests)
log "t16a requests $a0 -> $a1, t16b $b0 -> $b1"
[ "$a1" -ge $((a0 + 96 / 32)) ] || fail "t16a counted no I/O ($a0 -> $a1)"
assert_eq "$b1" "$b0" "t16b requests after I/O on t16a only"

# both at once
fio --name=a --filename="$na" --direct=1 --ioengine=libaio --rw=randrw --bs=4k \
    --iodepth=8 --runtime=3 --time_based --output-format=json \
    --output="$VDU_SCRATCH/a.json" >/dev/null 2>&1 &
fa=$!
fio --name=b --filename="$nb" --direct=1 --ioengine=libaio --rw=randread --bs=4k \
    --iodepth=8 --runtime=3 --time_based --output-format=json \
    --output="$VDU_SCRATCH/b.json" >/dev/null 2>&1 || fail "fio on $nb failed"
wait $fa || fail "fio on $na failed"
assert_eq "$(jqv "$VDU_SCRATCH/a.json" '.jobs[0].error')" 0 "fio error on $na"
assert_eq "$(jqv "$VDU_SCRATCH/b.json" '.jobs[0].error')" 0 "fio error on $nb"
assert_eq "$(stats_field t16b 0 write_bytes)" 0 "bytes written to t16b (read-only job)"

# take a down; b keeps working
run vdusectl destroy t16a --force
wait_for_gone "$na" 10
wait_for_gone /dev/vduse/t16a 10
[ -b "$nb" ] || fail "$nb vanished with t16a"
kill -0 "$pb" || fail "daemon of t16b died with t16a"
read_zero "$nb" 16
write_direct "$nb" 4 || fail "write to $nb after destroying t16a failed"
run vdusectl destroy t16b --force
wait_for_gone "$nb" 10
dmesg_check
log "ok"
