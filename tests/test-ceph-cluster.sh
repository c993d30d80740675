#!/bin/sh
# SPDX-License-Identifier: LGPL-2.1-or-later
# The test Ceph cluster (tests/ceph/ceph-cluster) on the host, as the rbd
# tests use it: two clusters started side by side (ports picked apart):
#   A: cephx, BlueStore on a file; B: auth none, memstore
# each silent on success, rbd create + import/export round trip (A as
# client.vduse through its keyring), the OSD of A killed -9 and restarted
# with its data intact, B's OSD restart refused (memstore), a wrong key and
# an unknown client refused at once, a start on a port in use failing with
# the monitor's log and nothing left running, and after stop no daemon of
# either cluster left.  Prints TAP; exit 0, 1 (a check failed), 77 (the
# ceph packages or ceph-admin are absent) or 99.

TAP_NAME=ceph-cluster-test
# shellcheck source=shell-tap.sh
. "$(dirname "$0")/shell-tap.sh"

CLUSTER=$(cd "$(dirname "$0")" && pwd)/ceph/ceph-cluster
CEPH_ADMIN=${CEPH_ADMIN:-$(pwd)/tests/ceph/ceph-admin}
export CEPH_ADMIN

for t in ceph-mon ceph-osd ceph-authtool rbd; do
	command -v "$t" >/dev/null 2>&1 || {
		echo "1..0 # SKIP $t not installed (ceph-mon ceph-osd ceph-common)"
		exit 77
	}
done
if [ ! -x "$CEPH_ADMIN" ]; then
	echo "1..0 # SKIP $CEPH_ADMIN not built (configure found no librados-dev)"
	exit 77
fi

A=$tmp/a B=$tmp/b C=$tmp/c
cleanup() {
	for d in "$A" "$B" "$C"; do "$CLUSTER" stop "$d" 2>/dev/null; done
	rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 1' INT TERM

# check DESC CMD...: CMD succeeds with nothing on stdout or stderr
check_quiet() {
	desc=$1
	shift
	"$@" >"$tmp/out" 2>"$tmp/err"
	rc=$?
	if [ $rc -ne 0 ]; then
		not_ok "$desc" "exit code $rc"
	elif [ -s "$tmp/out" ] || [ -s "$tmp/err" ]; then
		not_ok "$desc" "printed:" "$(cat "$tmp/out" "$tmp/err")"
	else
		ok "$desc"
	fi
}

# check DESC CMD...: CMD succeeds
check() {
	desc=$1
	shift
	if "$@" >"$tmp/out" 2>"$tmp/err"; then ok "$desc"
	else not_ok "$desc" "exit code $?"; fi
}

# refused DESC TEXT CMD...: CMD fails within 30 s, stderr has TEXT
refused() {
	desc=$1 text=$2
	shift 2
	timeout 30 "$@" >"$tmp/out" 2>"$tmp/err"
	rc=$?
	if [ $rc -eq 0 ]; then
		not_ok "$desc" "it succeeded"
	elif [ $rc -eq 124 ]; then
		not_ok "$desc" "no answer within 30 s"
	elif ! grep -qF -- "$text" "$tmp/err"; then
		not_ok "$desc" "stderr lacks: $text"
	else
		ok "$desc"
	fi
}

# pids of a cluster's daemons, from their pid files
pids_of() { cat "$1"/run/*.pid 2>/dev/null; }

dd if=/dev/urandom of="$tmp/data" bs=1M count=4 2>/dev/null

t0=$(date +%s)
"$CLUSTER" start "$A" --cephx --bluestore --size 1073741824 >"$tmp/a.out" 2>&1 &
pa=$!
"$CLUSTER" start "$B" >"$tmp/b.out" 2>&1 &
pb=$!
wait $pa; ra=$?
wait $pb; rb=$?
t1=$(date +%s)
echo "# both clusters up in $((t1 - t0)) s"
for x in a:$ra b:$rb; do
	c=${x%%:*} r=${x#*:}
	if [ "$r" -ne 0 ]; then
		not_ok "start $c (exit 0)" "exit code $r" "$(cat "$tmp/$c.out")"
	elif [ -s "$tmp/$c.out" ]; then
		not_ok "start $c prints nothing" "$(cat "$tmp/$c.out")"
	else
		ok "start $c: exit 0, prints nothing"
	fi
done
if [ $ra -ne 0 ] || [ $rb -ne 0 ]; then
	echo "Bail out! no cluster"
	echo "1..$n"
	exit 1
fi
pa=$(sed -n 's/^PORT=//p' "$A/cluster.env")
pb=$(sed -n 's/^PORT=//p' "$B/cluster.env")
if [ -n "$pa" ] && [ "$pa" != "$pb" ]; then ok "ports apart ($pa, $pb)"
else not_ok "ports apart" "A: $pa B: $pb"; fi
check "status A" "$CLUSTER" status "$A"
grep -q 'auth cephx' "$tmp/out" && grep -q bluestore "$tmp/out" && ok "A: cephx, bluestore" ||
	not_ok "A: cephx, bluestore" "$(cat "$tmp/out")"

# B: auth none, memstore
check "B: rbd create" rbd -c "$B/ceph.conf" create --size 64M rbd/img
check "B: rbd import" rbd -c "$B/ceph.conf" import --no-progress "$tmp/data" rbd/data
check "B: rbd export" rbd -c "$B/ceph.conf" export --no-progress rbd/data "$tmp/b.data"
check "B: data read back" cmp "$tmp/data" "$tmp/b.data"
refused "B: start-osd refused with memstore" "memstore" "$CLUSTER" start-osd "$B"

# A: cephx; client.vduse (profile rbd) through the keyring next to ceph.conf
check "A: rbd create as client.vduse" rbd -c "$A/ceph.conf" --id vduse create --size 64M rbd/img
check "A: rbd import as client.vduse" rbd -c "$A/ceph.conf" --id vduse import --no-progress "$tmp/data" rbd/data
check "A: rbd ls as client.admin" rbd -c "$A/ceph.conf" ls
grep -qx data "$tmp/out" && ok "A: the image is listed" || not_ok "A: the image is listed" "$(cat "$tmp/out")"
printf '[client.vduse]\n\tkey = %s\n' "$(ceph-authtool --gen-print-key)" >"$tmp/wrong.keyring"
refused "A: a wrong key is refused" "Permission denied" \
	rbd -c "$A/ceph.conf" --id vduse --keyring "$tmp/wrong.keyring" ls
refused "A: an unknown client is refused" "Permission denied" rbd -c "$A/ceph.conf" --id nobody ls

# A: kill -9 and restart of the BlueStore OSD
opid=$(cat "$A"/run/osd.*.pid)
check_quiet "A: kill-osd" "$CLUSTER" kill-osd "$A"
kill -0 "$opid" 2>/dev/null && not_ok "A: the OSD is gone" "pid $opid lives" || ok "A: the OSD is gone"
"$CLUSTER" status "$A" >"$tmp/out" 2>&1 && not_ok "A: status says the OSD is down" "$(cat "$tmp/out")" ||
	ok "A: status says the OSD is down (exit 1)"
t0=$(date +%s)
check_quiet "A: start-osd" "$CLUSTER" start-osd "$A"
echo "# OSD back in $(($(date +%s) - t0)) s"
check "A: rbd export after the restart" rbd -c "$A/ceph.conf" --id vduse export --no-progress rbd/data "$tmp/a.data"
check "A: the data survived the restart" cmp "$tmp/data" "$tmp/a.data"

# C: a fixed port in use: exit 1 with the monitor's log, nothing running
"$CLUSTER" start "$C" --port "$pa" --timeout 20 >"$tmp/out" 2>"$tmp/err"
rc=$?
if [ $rc -eq 0 ]; then
	not_ok "C: start on A's port fails"
elif ! grep -q "port $pa is in use" "$tmp/err" || ! grep -q -- '--- tail of' "$tmp/err"; then
	not_ok "C: start on A's port fails with the reason and the logs"
else
	ok "C: start on A's port fails with the reason and the logs"
fi
left=""
for p in $(pids_of "$C"); do kill -0 "$p" 2>/dev/null && left="$left $p"; done
[ -z "$left" ] && ok "C: nothing left running" || not_ok "C: nothing left running" "pids$left"
refused "start into a used directory" "is not empty" "$CLUSTER" start "$A"

# stop
all="$(pids_of "$A") $(pids_of "$B")"
t0=$(date +%s)
"$CLUSTER" stop "$A" & "$CLUSTER" stop "$B" & wait
echo "# both stopped in $(($(date +%s) - t0)) s"
left=""
for p in $all; do kill -0 "$p" 2>/dev/null && left="$left $p"; done
[ -z "$left" ] && ok "stop: no daemon left" || not_ok "stop: no daemon left" "pids$left"
left=$(ps -eo pid=,args= | grep -F "$tmp/" | grep -v grep)
[ -z "$left" ] && ok "stop: no process with the test's directory" ||
	not_ok "stop: no process with the test's directory" "$left"

echo "1..$n"
[ "$failed" -eq 0 ]
