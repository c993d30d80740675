#!/bin/sh
# vdu-timeout: 240
# Crash recovery, file backend, packed ring, 1 and 2 queues: as
# 70-recover-file-split (5 random SIGKILLs + recover under fio verify).
# The packed ring overwrites in-flight descriptors with used ones, so this
# is what exercises the descriptor copies kept in the inflight log.
. "$VDU_TESTDIR/cli-lib.sh"
. "$VDU_TESTDIR/lib-recover.sh"
need_cmd fio od

img="$VDU_SCRATCH/img"
truncate -s 32M "$img" || fail "cannot create $img"
recover_matrix rp1 1 packed 5 --backend file --path "$img"
recover_matrix rp2 2 packed 5 --backend file --path "$img"
log "packed ring: all rounds verified across 10 kills"
