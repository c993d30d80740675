# shellcheck shell=sh
# lib-ceph.sh -- a single-node Ceph cluster (tests/ceph/ceph-cluster: one
# monitor, one OSD, pool "rbd") for the rbd tests in the guest.  Source
# after lib.sh (or cli-lib.sh):
#   . "$VDU_TESTDIR/lib.sh"; . "$VDU_TESTDIR/lib-ceph.sh"
# and put "# vdu-needs: ceph" in the test's first 20 lines (vm-run then
# copies Ceph in and gives the guest 3 GiB; sourcing this file is enough
# too).  Not a test itself.
#
#   ceph_start [--cephx] [--bluestore] [--size BYTES] [--port P]
#       start the cluster in $CEPH_DIR (default $VDU_SCRATCH/ceph) and
#       register ceph_stop on exit; skips the test (77) when Ceph is not in
#       the guest, fails it when the cluster does not come up (the logs'
#       tails are printed).  Default: auth none, memstore (in RAM, lost
#       when the OSD dies); --bluestore keeps the OSD's data in a sparse
#       file of --size bytes (default 4 GiB) in $CEPH_DIR, which is tmpfs:
#       only what is written takes guest RAM.  Logs how long it took.
#   CEPH_CONF   $CEPH_DIR/ceph.conf: `rbd -c "$CEPH_CONF"`, `-o conf=...`
#   CEPH_DIR    the cluster's directory: keyring (client.admin),
#               client.vduse.keyring (caps mon/osd 'profile rbd'; found by
#               `--id vduse` by itself), log/ (daemon and client logs)
#   ceph_stop           kill the daemons (idempotent, EXIT trap friendly)
#   ceph_kill_osd       kill -9 the OSD
#   ceph_start_osd      start it again (needs --bluestore) and wait until
#                       the pool serves I/O again
#   ceph_status         ceph-cluster status (exit 1 if a daemon is down)
#   rbd_img_create NAME SIZE   rbd create rbd/NAME --size SIZE (e.g. 64M)
#   ceph_logs           print the tails of the daemons' logs

CEPH_DIR=${CEPH_DIR:-$VDU_SCRATCH/ceph}
CEPH_CONF=$CEPH_DIR/ceph.conf
# a TCG guest is slow: give the cluster time
CEPH_TIMEOUT=${CEPH_TIMEOUT:-120}
export CEPH_TIMEOUT

ceph_start() {
    for _c in ceph-cluster ceph-admin ceph-mon ceph-osd rbd; do
        command -v "$_c" >/dev/null 2>&1 ||
            skip "$_c not in the guest (vm-run copies Ceph in for tests with '# vdu-needs: ceph')"
    done
    _cs_t0=$(cut -d' ' -f1 /proc/uptime)
    on_exit ceph_stop
    ceph-cluster start "$CEPH_DIR" "$@" || fail "ceph-cluster start $* failed (logs above)"
    CEPH_START_SECS=$(awk -v a="$_cs_t0" -v b="$(cut -d' ' -f1 /proc/uptime)" 'BEGIN { printf "%.1f", b - a }')
    log "ceph cluster up in ${CEPH_START_SECS}s ($*): $(ceph-cluster status "$CEPH_DIR" | tr '\n' ';')"
}

ceph_stop() {
    [ -d "$CEPH_DIR" ] && ceph-cluster stop "$CEPH_DIR"
    return 0
}

ceph_kill_osd() {
    run ceph-cluster kill-osd "$CEPH_DIR"
}

ceph_start_osd() {
    _cs_t0=$(cut -d' ' -f1 /proc/uptime)
    run ceph-cluster start-osd "$CEPH_DIR"
    log "OSD back in $(awk -v a="$_cs_t0" -v b="$(cut -d' ' -f1 /proc/uptime)" 'BEGIN { printf "%.1f", b - a }')s"
}

ceph_status() {
    ceph-cluster status "$CEPH_DIR"
}

rbd_img_create() {  # NAME SIZE
    run rbd -c "$CEPH_CONF" create --size "$2" "rbd/$1"
}

ceph_logs() {
    for _f in "$CEPH_DIR"/log/mon.a.log "$CEPH_DIR"/log/osd.*.log; do
        [ -f "$_f" ] || continue
        echo "--- $_f"
        grep -a '^20[0-9][0-9]-' "$_f" | grep -av ' rocksdb: ' | tail -n 30
    done
}
