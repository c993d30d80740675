#!/bin/sh
# vdu-timeout: 240
# Crash recovery, file backend, split ring, 1 and 2 queues: fio randwrite
# + crc32c verify runs while the daemon is SIGKILLed 5 times at random
# moments, each time followed by `vdusectl recover`.  Every fio round
# finishes with zero I/O errors and zero verify mismatches; the log shows
# one reconnect per kill and no inconsistency.
. "$VDU_TESTDIR/cli-lib.sh"
. "$VDU_TESTDIR/lib-recover.sh"
need_cmd fio od mkfs.ext4

# O_DIRECT on a slow-ish disk, so that requests are in flight at the kill
. "$VDU_TESTDIR/lib-file.sh"
direct_img img 32
EXPECT_BOUNCE=user recover_matrix rs1 1 split 5 --backend file --path "$IMG"
EXPECT_BOUNCE=user recover_matrix rs2 2 split 5 --backend file --path "$IMG"
log "split ring: all rounds verified across 10 kills"
