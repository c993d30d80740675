#!/bin/sh
# vdu-timeout: 300
# vhost-vdpa path, file backend (image on tmpfs): the full scenario with data
# verification, then one device switched between the two consumer paths:
# a pattern written through vhost-vdpa is read back through virtio_vdpa's
# /dev/vdX after detach/attach, and one written through /dev/vdX is read back
# through vhost-vdpa; then back to virtio_vdpa once more.
. "$VDU_TESTDIR/lib.sh"
. "$VDU_TESTDIR/lib-vhost.sh"
need_vhost
need_cmd dd cmp

img=$VDU_SCRATCH/img
vh_create f0 --backend file --path "$img" -o create=1 -o size=64M
pid=$(daemon_pid f0)

# 1. vhost-vdpa: full scenario, real data
vh_attach f0 vhost_vdpa
run "$CLIENT" --dev "$NODE" --serial f0 --scenario full
vh_healthy f0
# pattern A: 8 MiB at 3 MiB, through vhost-vdpa
run "$CLIENT" --dev "$NODE" --scenario write-pattern --seed 7 --offset 3145728 --len 8388608
run "$CLIENT" --dev "$NODE" --scenario check-pattern --seed 7 --offset 3145728 --len 8388608
vh_detach f0

# 2. virtio_vdpa: read pattern A back via /dev/vdX (two ways)
vh_attach f0 virtio_vdpa
run "$CLIENT" --check-file "$NODE" --seed 7 --offset 3145728 --len 8388608
run "$CLIENT" --dump want.bin --seed 7 --offset 3145728 --len 8388608
run dd if="$NODE" of=got.bin bs=1M skip=3 count=8 iflag=direct status=none
run cmp want.bin got.bin
log "pattern written through vhost-vdpa reads back through $NODE"
# pattern B through the block device, for the way back
run "$CLIENT" --dump b.bin --seed 9 --offset 33554432 --len 4194304
run dd if=b.bin of="$NODE" bs=1M seek=32 oflag=direct conv=fsync status=none
vh_detach f0

# 3. vhost-vdpa again: pattern B (and A) through the vhost path
vh_attach f0 vhost_vdpa
run "$CLIENT" --dev "$NODE" --scenario check-pattern --seed 9 --offset 33554432 --len 4194304
run "$CLIENT" --dev "$NODE" --scenario check-pattern --seed 7 --offset 3145728 --len 8388608
vh_detach f0

# 4. and back to virtio_vdpa
vh_attach f0 virtio_vdpa
run "$CLIENT" --check-file "$NODE" --seed 9 --offset 33554432 --len 4194304
vh_detach f0

# the image file itself holds both patterns
run "$CLIENT" --check-file "$img" --seed 7 --offset 3145728 --len 8388608
run "$CLIENT" --check-file "$img" --seed 9 --offset 33554432 --len 4194304
vh_healthy f0
assert_eq "$(daemon_pid f0)" "$pid" "f0 daemon pid (one daemon throughout)"
run vdusectl destroy f0
log "ok"
