#!/bin/sh
# Bad command lines: each fails with a non-zero exit, one line on stderr
# starting "vdusectl: ", nothing on stdout, and creates nothing.
. "$VDU_TESTDIR/cli-lib.sh"

nothing_made() {  # NAME
    [ ! -e "/dev/vduse/$1" ] || fail "/dev/vduse/$1 exists after a failed create"
    [ ! -e "$VCTL_STATE/$1.pid" ] || fail "$VCTL_STATE/$1.pid exists after a failed create"
}
on_exit "vdusectl destroy t20 --force >/dev/null 2>&1; vdusectl destroy t20x --force >/dev/null 2>&1"

for s in 12Q 0 -1 "" 1.5G 10X 0x10 " 1G" 1G1; do
    expect_error 2 vdusectl create t20x --backend null --size "$s"
    nothing_made t20x
done
expect_error 2 vdusectl create t20x --backend null              # null needs --size
expect_error 2 vdusectl create a/b --backend null --size 1G
expect_error 2 vdusectl create .. --backend null --size 1G
expect_error 2 vdusectl create "" --backend null --size 1G
expect_error 2 vdusectl create t20x --size 1G                   # no --backend
expect_error 2 vdusectl create t20x --backend nosuch --size 1G
expect_error 2 vdusectl create t20x --backend null --size 1G --queues 0
expect_error 2 vdusectl create t20x --backend null --size 1G --queues 65
expect_error 2 vdusectl create t20x --backend null --size 1G --queues x
expect_error 2 vdusectl create t20x --backend null --size 1G --queue-size 3
expect_error 2 vdusectl create t20x --backend null --size 1G --queue-size 0
expect_error 2 vdusectl create t20x --backend null --size 1G --block-size 1000
expect_error 2 vdusectl create t20x --backend null --size 1G --driver nosuch --attach
expect_error 2 vdusectl create t20x --backend null --size 1G --bogus-option
expect_error 2 vdusectl create --backend null --size 1G          # no NAME
expect_error 2 vdusectl create t20x t20y --backend null --size 1G
expect_error 2 vdusectl nosuchcommand
nothing_made t20x
nothing_made a
expect_error 2 vdusectl

# a duplicate name is refused and the first device is left alone
run vdusectl create t20 --backend null --size 64M
pid=$(daemon_pid t20) || exit 1
expect_error 1 vdusectl create t20 --backend null --size 64M
echo "$err_text" | grep -q 'exists' || fail "duplicate-name error does not say it exists: $err_text"
expect_error 1 vdusectl create t20 --backend null --size 128M --attach
kill -0 "$pid" || fail "daemon of t20 died after a duplicate create"
[ "$(daemon_pid t20)" = "$pid" ] || fail "pid file of t20 changed after a duplicate create"
node=$(vdev_attach t20) || exit 1
assert_eq "$(sysblk "$node" size)" 131072 "size of t20 (64M) after the duplicate create"
read_zero "$node" 4

# commands on a missing device: exit 3
for c in attach detach destroy show stats; do
    expect_error 3 vdusectl $c t20-missing
done
expect_error 2 vdusectl attach t20 --driver nosuch
expect_error 1 vdusectl attach t20        # already attached
run vdusectl destroy t20 --force
dmesg_check
log "ok"
