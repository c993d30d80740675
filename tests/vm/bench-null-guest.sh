#!/bin/sh
# bench-null-guest.sh RUNS SECS -- run by tests/bench/bench-null inside one
# guest boot (not a test: vm-run only runs [0-9]*.sh).  Back to back on
# the same guest: kernel null_blk; qemu-storage-daemon's vduse-blk export
# of null-co; vdusectl's null backend (split and packed ring, the
# defaults (poll up to 500 us) and --poll-us 0/100, 2 queues with 500, interrupt placement, pinning).  fio libaio, 4k randread QD32 1 queue / 2 queues x 2
# jobs, QD1 latency, 4k randwrite QD32, 128k sequential read QD32.
# Prints raw result lines "R config workload iops mean_us p99_us" and
# then a markdown table (median of RUNS for each cell) between
# @@TABLE-BEGIN / @@TABLE-END.
. "$VDU_TESTDIR/lib.sh"
RUNS=${1:-1}
SECS=${2:-5}
need_cmd fio vdpa

# bench CONFIG DEV WORKLOAD...: RUNS runs of each workload
bench() {
    _c=$1; _d=$2; shift 2
    for _w in "$@"; do
        _i=0
        while [ $_i -lt "$RUNS" ]; do
            _r=$(bench_fio "$_d" "$_w" "$SECS")
            echo "R $_c $_w $_r"
            echo "R $_c $_w $_r" >>"$VDU_SCRATCH/results"
            _i=$((_i + 1))
        done
    done
}

: >"$VDU_SCRATCH/results"
log "kernel $(uname -r), $(nproc) CPUs, runs $RUNS x ${SECS}s"

# --- kernel null_blk (the ceiling: no userspace crossing)
if nullb_ceiling; then
    bench null_blk /dev/nullb0 rr32 rr32x2 rr1 rw32 sr128
fi

# --- qemu-storage-daemon vduse-blk null-co (7.2: one iothread per export)
if command -v qemu-storage-daemon >/dev/null 2>&1; then
    for nq in 1 2; do
        qsd_export qsd$nq $nq driver=null-co,node-name=n,size=1073741824
        dev=$qsd_dev
        log "qsd $nq queue(s): $dev"
        if [ $nq = 1 ]; then
            bench qsd-1q "$dev" rr32 rr1 rw32 sr128
        else
            bench qsd-2q "$dev" rr32x2
        fi
        qsd_unexport qsd$nq
    done
else
    log "qemu-storage-daemon not in the guest (VDU_VM_EXTRA_BINS=qemu-storage-daemon)"
fi

# --- this project
vd() { # CONFIG QUEUES ARGS...: create, attach, bench
    _c=$1; _q=$2; shift 2
    node=$(vdusectl create bn --backend null --size 1G -o read-zeroes=off \
           --queues "$_q" "$@" --attach) || fail "vdusectl create bn $*"
    log "$_c: $node ($*)"
    if [ "$_q" = 1 ]; then
        bench "$_c" "$node" rr32 rr1 rw32 sr128
    else
        bench "$_c" "$node" rr32x2
    fi
    vdusectl stats bn | sed 's/^/  /'
    vdusectl destroy bn --force || fail "destroy bn"
}
need_project
vd vduse-split-1q 1 --ring split
vd vduse-split-nopoll-1q 1 --ring split --poll-us 0
vd vduse-split-driver-1q 1 --ring split --irq-cpu-list driver
vd vduse-packed-1q 1 --ring packed
vd vduse-split-poll100-1q 1 --ring split --poll-us 100
vd vduse-split-2q 2 --ring split
vd vduse-split-poll-2q 2 --ring split --poll-us 500
vd vduse-split-follow-2q 2 --ring split --irq-cpu-list follow
vd vduse-packed-2q 2 --ring packed
vd vduse-split-2q-pin 2 --ring split --cpu-list 0,1

# --- table: medians
echo "@@TABLE-BEGIN"
awk -v runs="$RUNS" '
function median(k,   n, i, j, t, a) {
    n = cnt[k]
    for (i = 1; i <= n; i++) a[i] = val[k, i]
    for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++)
        if (a[j] < a[i]) { t = a[i]; a[i] = a[j]; a[j] = t }
    return a[int((n + 1) / 2)]
}
function spread(k,   n, i, lo, hi) {
    n = cnt[k]; lo = hi = val[k, 1]
    for (i = 2; i <= n; i++) { if (val[k, i] < lo) lo = val[k, i]; if (val[k, i] > hi) hi = val[k, i] }
    return n > 1 ? sprintf(" (%d-%d)", lo, hi) : ""
}
$1 == "R" {
    k = $2 SUBSEP $3
    if (!(k in cnt)) { order[++nk] = k }
    cnt[k]++; val[k, cnt[k]] = $4; mean[k, cnt[k]] = $5; p99[k, cnt[k]] = $6
    if (!($2 in seen)) { seen[$2] = 1; cfgs[++nc] = $2 }
}
END {
    print "| config | workload | IOPS (median" (runs > 1 ? ", min-max" : "") ") | mean lat us | p99 us | vs qsd | vs null_blk |"
    print "|---|---|---|---|---|---|---|"
    for (i = 1; i <= nk; i++) {
        k = order[i]; split(k, kk, SUBSEP); c = kk[1]; w = kk[2]
        m = median(k)
        # the run with the median IOPS gives the latencies
        for (j = 1; j <= cnt[k]; j++) if (val[k, j] == m) { ml = mean[k, j]; pl = p99[k, j] }
        q = (w == "rr32x2") ? "qsd-2q" : "qsd-1q"
        rq = ((q SUBSEP w) in cnt) ? median(q SUBSEP w) : 0
        rn = (("null_blk" SUBSEP w) in cnt) ? median("null_blk" SUBSEP w) : 0
        if (w == "rr1") {
            # latency: ratio of mean latencies (lower is better)
            for (j = 1; j <= cnt[q SUBSEP w]; j++) if (val[q, w, j] == rq) ql = mean[q, w, j]
            vq = (rq && ml) ? sprintf("%.2fx lat", ml / ql) : "-"
        } else
            vq = rq ? sprintf("%.2fx", m / rq) : "-"
        vn = rn ? sprintf("%.2fx", m / rn) : "-"
        printf "| %s | %s | %d%s | %s | %s | %s | %s |\n", c, w, m, spread(k), ml, pl, vq, vn
    }
}' "$VDU_SCRATCH/results"
echo "@@TABLE-END"
