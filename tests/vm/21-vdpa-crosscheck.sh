#!/bin/sh
# A device made and attached by vdusectl looks the same to the vdpa tool,
# and `vdusectl mgmtdev` agrees with `vdpa mgmtdev show`.
. "$VDU_TESTDIR/cli-lib.sh"
need_cmd vdpa jq
S=$VDU_SCRATCH

vdev_create t21 --backend null --size 128M
node=$(vdev_attach t21) || exit 1
vdpa -j dev show t21 >"$S/vdpa.json" || fail "vdpa dev show t21 failed"
vdpa -j dev show >"$S/vdpa-all.json" || fail "vdpa dev show failed"
vdusectl show t21 --json >"$S/show.json" || fail "vdusectl show failed"
cat "$S/vdpa.json" "$S/show.json"
assert_eq "$(jqv "$S/vdpa.json" .dev.t21.mgmtdev)" vduse "vdpa mgmtdev of t21"
assert_eq "$(jqv "$S/vdpa.json" .dev.t21.type)" block "vdpa type of t21"
assert_eq "$(jqv "$S/vdpa-all.json" '.dev | has("t21")')" true "t21 in vdpa dev show"
assert_eq "$(jqv "$S/show.json" .vdpa.device_id)" 2 "device id"
for k in vendor_id max_vqs max_vq_size mgmtdev; do
    assert_eq "$(jqv "$S/show.json" .vdpa.$k)" "$(jqv "$S/vdpa.json" .dev.t21.$k)" "$k: vdusectl vs vdpa"
done
# the vdpa bus and driver agree too
[ -e /sys/bus/vdpa/devices/t21 ] || fail "/sys/bus/vdpa/devices/t21 missing"
assert_eq "$(basename "$(readlink -f /sys/bus/vdpa/devices/t21/driver)")" virtio_vdpa "driver of vdpa device t21"

# mgmtdev
vdpa -j mgmtdev show >"$S/mg.json" || fail "vdpa mgmtdev show failed"
vdusectl mgmtdev --json >"$S/vmg.json" || fail "vdusectl mgmtdev --json failed"
vdusectl mgmtdev >"$S/vmg.txt" || fail "vdusectl mgmtdev failed"
cat "$S/mg.json" "$S/vmg.json" "$S/vmg.txt"
grep -q '^vduse ' "$S/vmg.txt" || fail "vdusectl mgmtdev does not list vduse"
vdpa_names=$(jq -r '.mgmtdev | keys[]' "$S/mg.json" | sort | tr '\n' ' ')
our_names=$(jq -r '.mgmtdevs[] | if .bus then .bus + "/" + .name else .name end' "$S/vmg.json" | sort | tr '\n' ' ')
assert_eq "$our_names" "$vdpa_names" "management devices: vdusectl vs vdpa"
M='.mgmtdevs[] | select(.name == "vduse")'
assert_eq "$(jqv "$S/vmg.json" "$M | .max_vqs")" "$(jqv "$S/mg.json" .mgmtdev.vduse.max_supported_vqs)" "mgmtdev max_vqs vs vdpa"
classes=$(jqv "$S/vmg.json" "$M | .supported_classes")
for c in $(jq -r '.mgmtdev.vduse.supported_classes[]' "$S/mg.json"); do
    case $c in
    net) bit=1 ;;
    block) bit=2 ;;
    *) continue ;;
    esac
    [ $(( (classes >> bit) & 1 )) = 1 ] || fail "supported_classes $classes lacks $c (vdpa lists it)"
done
[ $(( (classes >> 2) & 1 )) = 1 ] || fail "vduse supported_classes $classes lacks block"
nfeat=$(jq -r '.mgmtdev.vduse.dev_features | length' "$S/mg.json")
if [ "$nfeat" = 0 ]; then
    assert_eq "$(jqv "$S/vmg.json" "$M | .dev_features")" 0x0000000000000000 "mgmtdev dev_features vs vdpa (none)"
fi

# detach: gone for vdpa too
run vdusectl detach t21
wait_for_gone "$node" 10
if vdpa dev show t21 >/dev/null 2>&1; then fail "vdpa still shows t21 after detach"; fi
dmesg_check
log "ok"
