#!/bin/sh
# vdu-timeout: 300
# vdu-needs: ceph
# vdu-default: no
# The test Ceph cluster in the guest (tests/ceph/ceph-cluster through
# lib-ceph.sh), as the rbd tests use it; no vduse device involved:
#   (a) ceph_start --cephx --bluestore: a monitor and an OSD with BlueStore
#       on a sparse file in /scratch (tmpfs); how long it took and the
#       guest's memory use are logged
#   (b) rbd_img_create, then an rbd import/export round trip of 8 MiB as
#       client.vduse (its keyring found through ceph.conf)
#   (c) ceph_kill_osd (kill -9): status reports the OSD down;
#       ceph_start_osd: the image reads back the same, both images listed
#   (d) ceph_stop: no ceph daemon left running
# (A wrong key's refusal: tests/test-ceph-cluster.sh on the host and
# 92-rbd-cephx; each rbd run costs seconds here.)  Not in the default run
# (vdu-default: no): the rbd tests 91 and 92 start, restart and use the
# same cluster, and CI's time is short; `vm-run 90` runs it.
. "$VDU_TESTDIR/lib.sh"
. "$VDU_TESTDIR/lib-ceph.sh"
need_cmd rbd cmp

mem_used() { free -m | awk '/^Mem:/ { print $3 " MiB used, " $7 " MiB available" }'; }
log "memory before: $(mem_used)"
ceph_start --cephx --bluestore
log "memory with the cluster up: $(mem_used)"

rbd_img_create img 64M
run dd if=/dev/urandom of=data bs=1M count=8 2>/dev/null
run rbd -c "$CEPH_CONF" --id vduse import --no-progress data rbd/data
run rbd -c "$CEPH_CONF" --id vduse export --no-progress rbd/data out1
run cmp data out1
log "memory with 8 MiB written: $(mem_used)"

ceph_kill_osd
must_fail ceph_status
ceph_start_osd
ceph_status || fail "status after start-osd"
run rbd -c "$CEPH_CONF" --id vduse export --no-progress rbd/data out2
run cmp data out2
[ "$(rbd -c "$CEPH_CONF" ls | sort | tr '\n' ' ')" = "data img " ] ||
    fail "images after the restart: $(rbd -c "$CEPH_CONF" ls)"

pids=$(cat "$CEPH_DIR"/run/*.pid)
ceph_stop
for p in $pids; do
    kill -0 "$p" 2>/dev/null && fail "pid $p still runs after ceph_stop"
done
log "ceph cluster: start ${CEPH_START_SECS}s"
