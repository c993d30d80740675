#!/bin/sh
# SPDX-License-Identifier: LGPL-2.1-or-later
# The systemd unit vduse@.service: its ExecStart/ExecStop shell scripts run
# against a stub vdusectl (what they would run, for each configuration),
# and systemd-analyze verify where systemd is installed.
# Prints TAP; exits 0 (all passed), 1 (a check failed) or 99.

UNIT_IN=${UNIT_IN:-$(dirname "$0")/../man/vduse@.service.in}
TAP_NAME=vduse-unit
# shellcheck source=shell-tap.sh
. "$(dirname "$0")/shell-tap.sh"
[ -f "$UNIT_IN" ] || { echo "Bail out! no $UNIT_IN" >&2; exit 99; }

mkdir "$tmp/bin"
cat >"$tmp/bin/vdusectl" <<'STUB'
#!/bin/sh
echo "$*" >>"$STUB_LOG"
STUB
chmod +x "$tmp/bin/vdusectl"
STUB_LOG=$tmp/calls
export STUB_LOG
sed "s|@sbindir@|$tmp/bin|g" "$UNIT_IN" >"$tmp/vduse@.service"

# script KEY: the shell script of ExecStart= or ExecStop= (continuation
# lines joined, systemd's $$ unescaped), without sh -c '...' around it.
script() {
	awk -v key="$1" '
		index($0, key "=") == 1 { on = 1 }
		on { line = line $0; if (!/\\$/) { print line; exit } ; sub(/\\$/, "", line) }
	' "$tmp/vduse@.service" |
		sed -e "s/^[^']*'//" -e "s/' vduse %i\$//" -e 's/\$\$/$/g'
}
start=$(script ExecStart)
stop=$(script ExecStop)

# run_start ENV...: ExecStart for device d0 with the .conf variables ENV
run_start() {
	: >"$STUB_LOG"
	env -i PATH=/usr/bin:/bin STUB_LOG="$STUB_LOG" "$@" sh -c "$start" vduse d0
}
expect_call() {  # DESC WANT
	got=$(cat "$STUB_LOG")
	if [ "$got" = "$2" ]; then
		ok "$1"
	else
		not_ok "$1" "ran:      '$got'" "expected: '$2'"
	fi
}

run_start BACKEND=null SIZE=1G
expect_call "null backend" "create d0 --foreground --backend null --size 1G"
run_start BACKEND=file PATH_=/var/lib/vduse/d0.img QUEUES=2 READ_ONLY=yes \
	DRIVER=virtio_vdpa LOG_LEVEL=debug EXTRA_ARGS="-o cache=writeback"
expect_call "file backend, every variable" \
	"--log-level=debug create d0 --foreground --backend file --path /var/lib/vduse/d0.img --queues 2 --read-only --attach --driver virtio_vdpa -o cache=writeback"
run_start BACKEND=nbd URL=nbd://h/e SERIAL=abc QUEUE_SIZE=128 BLOCK_SIZE=4096
expect_call "nbd backend" \
	"create d0 --foreground --backend nbd --url nbd://h/e --queue-size 128 --block-size 4096 --serial abc"

# An existing kernel device is taken over: /sys/class/vduse/d0 faked in a
# private mount namespace (root only).
: >"$STUB_LOG"
if [ "$(id -u)" = 0 ] && unshare -m sh -c 'mount -t tmpfs none /sys/class' 2>/dev/null; then
	START=$start unshare -m sh -c '
		mount -t tmpfs none /sys/class && mkdir -p /sys/class/vduse/d0 &&
		env -i PATH=/usr/bin:/bin STUB_LOG="$STUB_LOG" BACKEND=null SIZE=1G \
			LOG_LEVEL=notice sh -c "$START" vduse d0'
	expect_call "an existing kernel device is taken over" \
		"--log-level=notice recover d0 --foreground"
else
	ok "an existing kernel device is taken over # SKIP needs root and unshare -m"
fi

: >"$STUB_LOG"
env -i PATH=/usr/bin:/bin STUB_LOG="$STUB_LOG" MAINPID= sh -c "$stop" vduse d0
expect_call "ExecStop without a running daemon does nothing" ""
: >"$STUB_LOG"
env -i PATH=/usr/bin:/bin STUB_LOG="$STUB_LOG" MAINPID=1234 sh -c "$stop" vduse d0
expect_call "ExecStop with a running daemon destroys it" "destroy d0 --force"

for k in Restart=on-failure NoNewPrivileges=yes ProtectSystem=strict \
	'ReadWritePaths=/run/vduse' After=network-online.target; do
	if grep -q "^$k" "$tmp/vduse@.service"; then
		ok "unit has $k"
	else
		not_ok "unit has $k"
	fi
done

if command -v systemd-analyze >/dev/null 2>&1; then
	cp "$tmp/vduse@.service" "$tmp/vduse@t0.service"
	systemd-analyze verify "$tmp/vduse@t0.service" 2>&1 |
		grep -v "man vdusectl\|Command 'man" >"$tmp/err"
	if [ -s "$tmp/err" ]; then
		not_ok "systemd-analyze verify"
	else
		ok "systemd-analyze verify"
	fi
else
	ok "systemd-analyze verify # SKIP systemd-analyze not installed"
fi

echo "1..$n"
[ "$failed" -eq 0 ]
