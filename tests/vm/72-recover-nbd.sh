#!/bin/sh
# vdu-timeout: 240
# Crash recovery, nbd backend (nbdkit in the guest; rt1 by its old name,
# tcp, which must keep working and be saved as nbd): 5 random SIGKILLs of
# the daemon + `vdusectl recover` under fio verify, 1 queue with the
# packed ring and 2 queues (two NBD connections) with the split ring.
# The new daemon opens new connections; requests the old one had sent
# are sent again.  Zero I/O errors, zero verify mismatches.
. "$VDU_TESTDIR/cli-lib.sh"
. "$VDU_TESTDIR/lib-file.sh"
. "$VDU_TESTDIR/lib-tcp.sh"
. "$VDU_TESTDIR/lib-recover.sh"
need_cmd fio od nbdkit

nbd_start
# nbdkit 1.32 (Debian 12) can abort when a client vanishes while a reply
# is being sent ("raw_send_socket: Assertion `sock >= 0' failed"): the
# server dying is then a second fault of the scenario, handled like a
# server restart -- start it again on the same image and recover.
restarts=0
recover_tcp() {
    if ! kill -0 "$NBD_PID" 2>/dev/null; then
        log "nbdkit $NBD_PID died with the client: $(tail -1 /scratch/nbdkit.log)"
        restarts=$((restarts + 1))
        nbd_start
    fi
    if ! vdusectl recover "$1"; then
        kill -0 "$NBD_PID" 2>/dev/null && log "nbdkit $NBD_PID is alive" || log "nbdkit $NBD_PID is gone"
        cat /scratch/nbdkit.log
        fail "vdusectl recover $1 failed"
    fi
}
url="nbd://127.0.0.1:$NBD_PORT/"
RECOVER=recover_tcp recover_matrix rt1 1 packed 5 --backend tcp --url "$url"
RECOVER=recover_tcp recover_matrix rt2 2 split 5 --backend nbd --url "$url"
log "tcp: all rounds verified across 10 kills ($restarts nbdkit restarts)"
