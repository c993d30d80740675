#!/bin/sh
# vdu-timeout: 240
# Crash recovery, tcp backend (nbdkit in the guest): 5 random SIGKILLs of
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
url="nbd://127.0.0.1:$NBD_PORT/"
recover_matrix rt1 1 packed 5 --backend tcp --url "$url"
recover_matrix rt2 2 split 5 --backend tcp --url "$url"
kill -0 "$NBD_PID" 2>/dev/null || fail "nbdkit died"
log "tcp: all rounds verified across 10 kills"
