#!/bin/sh
# vdu-timeout: 240
# Crash recovery, file backend, packed ring, 1 and 2 queues: as
# 70-recover-file-split (5 random SIGKILLs + recover under fio verify).
# The packed ring overwrites in-flight descriptors with used ones, so this
# is what exercises the descriptor copies kept in the inflight log.
. "$VDU_TESTDIR/cli-lib.sh"
. "$VDU_TESTDIR/lib-recover.sh"
need_cmd fio od mkfs.ext4

# O_DIRECT on a slow-ish disk, so that requests are in flight at the kill
. "$VDU_TESTDIR/lib-file.sh"
direct_img img 32
EXPECT_BOUNCE=user recover_matrix rp1 1 packed 5 --backend file --path "$IMG"
EXPECT_BOUNCE=user recover_matrix rp2 2 packed 5 --backend file --path "$IMG"
log "packed ring: all rounds verified across 10 kills"
