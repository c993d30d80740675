#!/bin/sh
# list/show/stats --json parse, and agree with `vdpa dev show -j`, sysfs
# and the state directory.
. "$VDU_TESTDIR/cli-lib.sh"
need_cmd jq vdpa

vdev_create t17 --backend null --size 256M --queues 2 --queue-size 128 --serial json-17
node=$(vdev_attach t17) || exit 1
blk=${node#/dev/}
pid=$(daemon_pid t17) || exit 1
S=$VDU_SCRATCH

vdusectl list --json >"$S/list.json" || fail "list --json failed"
vdusectl show t17 --json >"$S/show.json" || fail "show --json failed"
vdusectl stats t17 --json >"$S/stats.json" || fail "stats --json failed"
vdpa -j dev show t17 >"$S/vdpa.json" || fail "vdpa dev show t17 failed"
for f in list show stats vdpa; do
    echo "$f: $(cat "$S/$f.json")"
    jq -e . "$S/$f.json" >/dev/null || fail "$f output is not JSON"
done

# list
L='.devices[] | select(.name == "t17")'
assert_eq "$(jqv "$S/list.json" "[$L] | length")" 1 "t17 entries in list"
assert_eq "$(jqv "$S/list.json" "$L | .backend == \"null\"")" true "list backend"
assert_eq "$(jqv "$S/list.json" "$L | .size")" 268435456 "list size"
assert_eq "$(jqv "$S/list.json" "$L | .queues")" 2 "list queues"
assert_eq "$(jqv "$S/list.json" "$L | .driver")" virtio_vdpa "list driver"
assert_eq "$(jqv "$S/list.json" "$L | .node")" "$node" "list node"
assert_eq "$(jqv "$S/list.json" "$L | .daemon")" true "list daemon"
assert_eq "$(jqv "$S/list.json" "$L | .pid")" "$pid" "list pid"

# show against sysfs and the pid file
j=$S/show.json
assert_eq "$(jqv "$j" .name)" t17 "show name"
assert_eq "$(jqv "$j" '.backend == "null"')" true "show backend"
assert_eq "$(jqv "$j" .size)" $(($(sysblk "$node" size) * 512)) "show size vs sysfs"
assert_eq "$(jqv "$j" .block_size)" "$(sysblk "$node" queue/logical_block_size)" "show block_size vs sysfs"
assert_eq "$(jqv "$j" .queues)" "$(ls "/sys/block/$blk/mq" | wc -l)" "show queues vs sysfs mq"
assert_eq "$(jqv "$j" .queue_size)" 128 "show queue_size"
assert_eq "$(jqv "$j" .serial)" "$(sysblk "$node" serial)" "show serial vs sysfs"
ro=false; [ "$(sysblk "$node" ro)" = 1 ] && ro=true
assert_eq "$(jqv "$j" .read_only)" "$ro" "show read_only vs sysfs"
assert_eq "$(jqv "$j" .broken)" false "show broken"
assert_eq "$(jqv "$j" '.status')" 15 "show status (ACK|DRIVER|DRIVER_OK|FEATURES_OK)"
assert_eq "$(jqv "$j" .pid)" "$pid" "show pid vs pid file"
assert_eq "$(jqv "$j" .driver)" virtio_vdpa "show driver"
assert_eq "$(jqv "$j" .node)" "$node" "show node"
jqv "$j" .features | grep -Eqx '0x[0-9a-f]+' || fail "show features not a hex string"
jqv "$j" .negotiated | grep -Eqx '0x[0-9a-f]+' || fail "show negotiated not a hex string"
[ -r "/sys/class/vduse/t17/msg_timeout" ] &&
    assert_eq "$(jqv "$j" .msg_timeout)" "$(cat /sys/class/vduse/t17/msg_timeout)" "show msg_timeout vs sysfs"
# the virtio device behind the disk: device id 2 (block)
vdev=$(readlink -f "/sys/block/$blk/device")
assert_eq "$(jqv "$j" .vdpa.device_id)" "$(($(cat "$vdev/device")))" "show vdpa.device_id vs $vdev/device"
assert_eq "$(jqv "$j" .vdpa.device_id)" 2 "show vdpa.device_id"
# features the driver negotiated, as the virtio device shows them (bit string)
vf=$(cat "$vdev/features")
nego=$(jqv "$j" .negotiated)
i=0
while [ $i -lt ${#vf} ] && [ $i -lt 63 ]; do
    bit=$(echo "$vf" | cut -c$((i + 1)))
    have=$(( ($nego >> i) & 1 ))
    assert_eq "$have" "$bit" "negotiated feature bit $i vs $vdev/features"
    i=$((i + 1))
done

# vdpa tool agrees
V='.dev.t17'
assert_eq "$(jqv "$S/vdpa.json" "$V.mgmtdev")" vduse "vdpa mgmtdev"
assert_eq "$(jqv "$S/vdpa.json" "$V.type")" block "vdpa type (device id 2)"
assert_eq "$(jqv "$j" .vdpa.mgmtdev)" vduse "show vdpa.mgmtdev"
assert_eq "$(jqv "$j" .vdpa.vendor_id)" "$(jqv "$S/vdpa.json" "$V.vendor_id")" "vendor_id vs vdpa"
assert_eq "$(jqv "$j" .vdpa.max_vqs)" "$(jqv "$S/vdpa.json" "$V.max_vqs")" "max_vqs vs vdpa"
assert_eq "$(jqv "$j" .vdpa.max_vq_size)" "$(jqv "$S/vdpa.json" "$V.max_vq_size")" "max_vq_size vs vdpa"
assert_eq "$(jqv "$j" .vdpa.max_vqs)" 2 "max_vqs"
assert_eq "$(jqv "$j" .vdpa.max_vq_size)" 128 "max_vq_size"

# stats
st=$S/stats.json
assert_eq "$(jqv "$st" .name)" t17 "stats name"
assert_eq "$(jqv "$st" '.queues | length')" 2 "stats queues"
assert_eq "$(jqv "$st" '[.queues[].index] | join(",")')" "0,1" "stats queue indexes"
for k in requests read_bytes write_bytes errors inflight irqs kicks; do
    jq -e "all(.queues[]; (.$k | type) == \"number\" and .$k >= 0)" "$st" >/dev/null ||
        fail "stats .$k is not a count on every queue"
done
for k in enabled broken; do
    jq -e "all(.queues[]; (.$k | type) == \"boolean\")" "$st" >/dev/null ||
        fail "stats .$k is not a boolean on every queue"
done
r0=$(jqv "$st" '[.queues[].read_bytes] | add')
read_zero "$node" 8
vdusectl stats t17 --json >"$st" || fail "stats failed"
r1=$(jqv "$st" '[.queues[].read_bytes] | add')
[ "$r1" -ge $((r0 + 32768)) ] || fail "stats read_bytes $r0 -> $r1 after reading 32 KiB"

# detached: driver/node/vdpa go null; the daemon is still there
run vdusectl detach t17
vdusectl show t17 --json >"$j" || fail "show failed"
echo "detached: $(cat "$j")"
assert_eq "$(jqv "$j" .driver)" null "show driver when detached"
assert_eq "$(jqv "$j" .node)" null "show node when detached"
assert_eq "$(jqv "$j" .vdpa)" null "show vdpa when detached"
assert_eq "$(jqv "$j" .pid)" "$pid" "show pid when detached"
vdusectl list --json >"$S/list.json" || fail "list failed"
assert_eq "$(jqv "$S/list.json" "$L | .node")" null "list node when detached"

# missing device: exit 3 for show and stats
expect_error 3 vdusectl show no-such-dev --json
expect_error 3 vdusectl stats no-such-dev --json
dmesg_check
log "ok"
