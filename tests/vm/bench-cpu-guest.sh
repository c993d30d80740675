#!/bin/sh
# bench-cpu-guest.sh SECS [PARTS] -- run by tests/bench/bench-cpu inside
# one guest boot (not a test: vm-run only runs [0-9]*.sh).  Where the
# guest's CPU time goes per request.  PARTS (default "file tcp"):
#   null  the null backend against qemu-storage-daemon's null-co, ublk's
#         null target (when $UBLK runs) and the kernel's null_blk, 4k randread QD32 only, under the I/O
#         scheduler none and under mq-deadline (ENGINE-SCHED);
#   file  the file backend against the kernel loop device (direct I/O),
#         ublk's loop target (when $UBLK runs) and qemu-storage-daemon
#         (aio=native, O_DIRECT) on the same image
#         (ext4 on a memory-backed null_blk disk, as bench-file);
#   tcp   the tcp backend against the kernel's nbd client with 1 and 2
#         connections, all on one nbdkit file export in the guest;
# for each,
# while fio runs, perf samples every CPU (cpu-clock) and the samples are
# summed by thread name.  Prints, per engine and job,
#   "C ENGINE JOB IOPS THREAD US_PER_REQUEST" lines (THREAD "idle" is the
# idle task; digits in thread names become N, so per-CPU kernel threads
# add up), and "S ENGINE JOB PERCENT THREAD FUNCTION" for the functions
# with 2% or more of all samples.
. "$VDU_TESTDIR/lib.sh"
. "$VDU_TESTDIR/lib-file.sh"
SECS=${1:-6}
PARTS=${2:-file tcp}
need_cmd fio perf vdpa
need_project
echo 0 >/proc/sys/kernel/kptr_restrict
echo -1 >/proc/sys/kernel/perf_event_paranoid
ncpu=$(nproc)

# profile ENGINE DEV [JOBS]: each job under perf
profile() {
    for job in ${3:-randread-4k-qd32 read-1m-qd8}; do
        case $job in
        randread-4k-qd32) _a="--rw=randread --bs=4k --iodepth=32" ;;
        read-1m-qd8) _a="--rw=read --bs=1m --iodepth=8" ;;
        esac
        # shellcheck disable=SC2086
        fio --name=b --filename="$2" --ioengine=libaio --direct=1 $_a \
            --size=490m --randrepeat=0 --norandommap --time_based \
            --runtime=$((SECS + 3)) --output-format=terse --terse-version=3 \
            >"$VDU_SCRATCH/fio.out" 2>&1 &
        _f=$!
        sleep 2
        perf record -q -a -F 999 -e cpu-clock -o "$VDU_SCRATCH/perf.data" \
            -- sleep "$SECS" >/dev/null 2>&1 || fail "perf record"
        wait $_f
        _iops=$(awk -F';' '{print $8}' "$VDU_SCRATCH/fio.out")
        [ "${_iops:-0}" -gt 0 ] || fail "$1 $job: no fio result"
        # share of all samples (all CPUs) by thread name -> CPU us per request
        perf report -i "$VDU_SCRATCH/perf.data" --stdio --no-children \
            --sort comm 2>/dev/null |
        awk -v e="$1" -v j="$job" -v iops="$_iops" -v n="$ncpu" '
            /^#/ || NF < 2 { next }
            { p = $1; sub(/%/, "", p); c = $2
              gsub(/[0-9]+/, "N", c); sub(/\+/, "-", c)
              if (c ~ /^swapper/) c = "idle"
              t[c] += p }
            END { for (c in t) printf "C %s %s %d %s %.1f\n", e, j, iops, c, t[c] / 100 * n * 1e6 / iops }'
        # and the functions that took 2% of all samples or more
        perf report -i "$VDU_SCRATCH/perf.data" --stdio --no-children \
            --sort comm,sym --percent-limit 2 2>/dev/null |
        awk -v e="$1" -v j="$job" '/^#/ || NF < 4 { next }
            { sub(/\[[.k]\] /, ""); printf "S %s %s %s %s %s\n", e, j, $1, $2, $3 }'
    done
}

case " $PARTS " in *" null "*)
need_cmd qemu-storage-daemon
nullb_ceiling || fail "the null part needs kernel null_blk"
qsd_export cn 1 driver=null-co,node-name=n,size=1073741824
ndev=$(vdusectl create vn --backend null --size 1G -o read-zeroes=off --attach) ||
    fail "vdusectl create vn"
on_exit "vdusectl destroy vn --force >/dev/null 2>&1"
udev=
ublk_add -t null -q 1 -d 256 && udev=ublk:$ublk_dev
sleep 2
for s in none mq-deadline; do
    for e in ours:$ndev $udev qsd:$qsd_dev null_blk:/dev/nullb0; do
        d=${e#*:}
        echo "$s" >/sys/block/"${d#/dev/}"/queue/scheduler || fail "scheduler $s on $d"
        profile "${e%%:*}-$s" "$d" randread-4k-qd32
    done
done
vdusectl stats vn | sed 's/^/# /'
# the next parts measure a guest without these
vdusectl destroy vn --force >/dev/null || fail "vdusectl destroy vn"
qsd_unexport cn
;; esac

case " $PARTS " in *" file "*)
need_cmd qemu-storage-daemon
nullb_new nullb1 640 512
ext4_on /dev/nullb1 /mnt/b
img=/mnt/b/bench.img
dd if=/dev/zero of=$img bs=1M count=512 oflag=direct 2>/dev/null || fail "dd image"
sync

dev=$(vdusectl create vb --backend file --path $img --attach) || fail "vdusectl create"
on_exit "vdusectl destroy vb --force >/dev/null 2>&1"
sleep 2
profile ours "$dev"
vdusectl destroy vb --force >/dev/null || fail "vdusectl destroy"

ldev=$(losetup --direct-io=on -f --show $img) || fail losetup
profile loop "$ldev"
losetup -d "$ldev"

if ublk_add -t loop -q 1 -d 256 -f $img; then
    profile ublk "$ublk_dev"
    "${UBLK:-/opt/ublk/sbin/ublk}" del -a >/dev/null 2>&1
fi

qsd_export cq 1 driver=file,node-name=n,filename=$img,aio=native,cache.direct=on
qdev=$qsd_dev
profile qsd "$qdev"
qsd_unexport cq
;; esac

case " $PARTS " in *" tcp "*)
. "$VDU_TESTDIR/lib-tcp.sh"
need_cmd nbd-client
# a 512 MiB image of real (not sparse) pages on the guest's tmpfs
dd if=/dev/zero of="$NBD_IMG" bs=1M count=512 2>/dev/null || fail "dd $NBD_IMG"
nbd_start
dev=$(vdusectl create vt --backend nbd --url nbd://127.0.0.1:$NBD_PORT/ --attach) || fail "vdusectl create vt"
on_exit "vdusectl destroy vt --force >/dev/null 2>&1"
sleep 2
profile ours-tcp "$dev"
vdusectl destroy vt --force >/dev/null || fail "vdusectl destroy vt"
for c in 1 2; do
    nbd_client_connect 127.0.0.1 $NBD_PORT /dev/nbd$c $c
    profile kernel-nbd-C$c /dev/nbd$c
    nbd-client -d /dev/nbd$c >/dev/null 2>&1
done
;; esac
echo "# done"
