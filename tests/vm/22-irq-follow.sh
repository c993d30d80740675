#!/bin/sh
# Interrupt placement (--irq-cpu-list): "follow" sets each queue's interrupt
# callback (/sys/class/vduse/NAME/vqN/irq_cb_affinity) to the CPU its queue
# thread runs on; "driver" keeps the guest driver's choice; "auto" (the
# default) is follow for one queue or polling queues and driver for
# several that do not poll; a CPU list is
# set at attach.  Checked with pinned threads, after I/O, and again after
# the driver re-probed the device (detach + attach).
. "$VDU_TESTDIR/cli-lib.sh"
need_cmd fio jq

ncpu=$(grep -c '^processor' /proc/cpuinfo)
[ "$ncpu" -ge 2 ] || skip "needs 2 CPUs (VDU_VM_SMP), have $ncpu"
# mask_of VDPA_NAME Q: the queue's mask as a number (sysfs prints hex words)
mask_of() {
    _m=$(tr -d ',\n' <"/sys/class/vduse/$1/vq$2/irq_cb_affinity") || return 1
    echo $((0x$_m))
}
io() { # NODE: some I/O on every queue
    fio --name=f --filename="$1" --direct=1 --ioengine=libaio --rw=randread \
        --bs=4k --iodepth=4 --numjobs=2 --cpus_allowed=0-1 \
        --cpus_allowed_policy=split --runtime=1 --time_based \
        --output=/dev/null || fail "fio on $1"
}

# follow, threads pinned crosswise: queue 0 on CPU 1, queue 1 on CPU 0
vdev_create t22 --backend null --size 64M --queues 2 --cpu-list 1,0 --irq-cpu-list follow
node=$(vdev_attach t22) || exit 1
[ -e /sys/class/vduse/t22/vq0/irq_cb_affinity ] ||
    skip "this kernel has no irq_cb_affinity"
vdusectl show t22 --json >"$VDU_SCRATCH/show.json" || fail "show"
assert_eq "$(jqv "$VDU_SCRATCH/show.json" .irq_cpu_list)" follow "show .irq_cpu_list"
io "$node"
assert_eq "$(mask_of t22 0)" 2 "vq0 irq mask (thread on CPU 1)"
assert_eq "$(mask_of t22 1)" 1 "vq1 irq mask (thread on CPU 0)"
# a re-probe resets the driver's affinity; the daemon sets it again
vdusectl detach t22 || fail "detach"
node=$(vdusectl attach t22) || fail "attach"
io "$node"
assert_eq "$(mask_of t22 0)" 2 "vq0 irq mask after re-attach"
assert_eq "$(mask_of t22 1)" 1 "vq1 irq mask after re-attach"
vdusectl destroy t22 --force || fail "destroy t22"

# auto, 2 polling queues: they follow their (crosswise) threads
vdev_create t22p --backend null --size 64M --queues 2 --cpu-list 1,0 --poll-us 100
node=$(vdev_attach t22p) || exit 1
vdusectl show t22p --json >"$VDU_SCRATCH/show.json" || fail "show"
assert_eq "$(jqv "$VDU_SCRATCH/show.json" .irq_mode)" follow "show .irq_mode (auto, 2 polling queues)"
io "$node"
assert_eq "$(mask_of t22p 0)" 2 "vq0 irq mask with auto, 2 polling queues (thread on CPU 1)"
assert_eq "$(mask_of t22p 1)" 1 "vq1 irq mask with auto, 2 polling queues (thread on CPU 0)"
vdusectl destroy t22p --force || fail "destroy t22p"

# auto, 2 queues that do not poll: the driver's per-queue CPUs (queue N on
# CPU N here), not the (crosswise) threads' CPUs
vdev_create t22a --backend null --size 64M --queues 2 --cpu-list 1,0 --poll-us 0
node=$(vdev_attach t22a) || exit 1
vdusectl show t22a --json >"$VDU_SCRATCH/show.json" || fail "show"
assert_eq "$(jqv "$VDU_SCRATCH/show.json" .irq_cpu_list)" auto "show .irq_cpu_list (default)"
assert_eq "$(jqv "$VDU_SCRATCH/show.json" .irq_mode)" driver "show .irq_mode (auto, 2 queues, no polling)"
io "$node"
if [ "$ncpu" = 2 ]; then
    assert_eq "$(mask_of t22a 0)" 1 "vq0 irq mask with auto, 2 queues"
    assert_eq "$(mask_of t22a 1)" 2 "vq1 irq mask with auto, 2 queues"
fi
vdusectl destroy t22a --force || fail "destroy t22a"

# auto, 1 queue: follows the thread
vdev_create t22b --backend null --size 64M --cpu-list 1
node=$(vdev_attach t22b) || exit 1
io "$node"
assert_eq "$(mask_of t22b 0)" 2 "vq0 irq mask with auto, 1 queue (thread on CPU 1)"
vdusectl destroy t22b --force || fail "destroy t22b"

# driver: left as virtio_vdpa's probe set it (both CPUs for 1 queue)
vdev_create t22d --backend null --size 64M --cpu-list 1 --irq-cpu-list driver
node=$(vdev_attach t22d) || exit 1
io "$node"
assert_eq "$(mask_of t22d 0)" $(( (1 << ncpu) - 1 )) "vq0 irq mask with 'driver'"
vdusectl destroy t22d --force || fail "destroy t22d"

# an explicit list wins over the thread's CPU
vdev_create t22l --backend null --size 64M --cpu-list 1 --irq-cpu-list 0
node=$(vdev_attach t22l) || exit 1
io "$node"
assert_eq "$(mask_of t22l 0)" 1 "vq0 irq mask with --irq-cpu-list 0"
vdusectl destroy t22l --force || fail "destroy t22l"
dmesg_check
log "ok"
