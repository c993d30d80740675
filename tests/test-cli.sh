#!/bin/sh
# SPDX-License-Identifier: LGPL-2.1-or-later
# Command line checks for vdusectl that need no kernel support: bad input
# must give exit code 2 and exactly one line on stderr, starting with
# "vdusectl: " and naming the fix; missing devices give exit code 3.
# Prints TAP; exits 0 (all passed), 1 (a check failed) or 99 (no binary).

TAP_NAME=vdusectl-test
# shellcheck source=shell-tap.sh
. "$(dirname "$0")/shell-tap.sh"

# expect CODE 'TEXT' ARGS... : exit code CODE; when TEXT is non-empty,
# stderr is one line starting with "vdusectl: " and containing TEXT.
expect() {
	code=$1
	text=$2
	shift 2
	desc="${VRUN:+$VRUN }vdusectl $* -> $code"
	# VRUN: a command prefix (env ..., setpriv ...), split on spaces
	${VRUN:-} "$VDUSECTL" "$@" >"$tmp/out" 2>"$tmp/err" </dev/null
	rc=$?
	if [ "$rc" -ne "$code" ]; then
		not_ok "$desc" "exit code $rc, expected $code"
		return
	fi
	if [ -n "$text" ]; then
		lines=$(wc -l <"$tmp/err")
		if [ "$lines" -ne 1 ]; then
			not_ok "$desc" "stderr has $lines lines, expected 1"
			return
		fi
		if ! grep -q '^vdusectl: ' "$tmp/err"; then
			not_ok "$desc" "stderr does not start with 'vdusectl: '"
			return
		fi
		if ! grep -qF -- "$text" "$tmp/err"; then
			not_ok "$desc" "stderr lacks: $text"
			return
		fi
	fi
	ok "$desc"
}

# expect_out CODE 'TEXT' ARGS... : exit code CODE and TEXT on stdout.
expect_out() {
	code=$1
	text=$2
	shift 2
	desc="vdusectl $* -> $code, stdout has '$text'"
	"$VDUSECTL" "$@" >"$tmp/out" 2>"$tmp/err" </dev/null
	rc=$?
	if [ "$rc" -ne "$code" ]; then
		not_ok "$desc" "exit code $rc, expected $code"
	elif ! grep -qF -- "$text" "$tmp/out"; then
		not_ok "$desc" "stdout lacks: $text"
	else
		ok "$desc"
	fi
}

# json_ok: the last stdout is valid JSON (when python3 is around).
json_ok() {
	if ! command -v python3 >/dev/null 2>&1; then
		ok "$1 # SKIP no python3"
	elif python3 -c 'import json,sys; json.load(sys.stdin)' <"$tmp/out" 2>"$tmp/err"; then
		ok "$1"
	else
		not_ok "$1" "invalid JSON:" "$(cat "$tmp/out")"
	fi
}

long=$(printf '%0300d' 0)

# --- global
expect_out 0 "vdusectl" --version
expect_out 0 "Exit status" --help
expect 2 "missing command"
expect 2 "unknown command 'frobnicate'" frobnicate
expect 2 "unknown option '--bogus'" --bogus
for cmd in create attach detach destroy list show stats resize mgmtdev; do
	expect_out 0 "Usage: vdusectl $cmd" $cmd --help
done

# --- create: names
expect 2 "missing device NAME" create --backend null --size 1M
expect 2 "invalid device name 'a/b'" create a/b --backend null --size 1M
expect 2 "invalid device name 'a b'" create 'a b' --backend null --size 1M
expect 2 "must not start with '.'" create .hidden --backend null --size 1M
expect 2 "use at most 255" create "$long" --backend null --size 1M
expect 2 "'control' is reserved" create control --backend null --size 1M
expect 2 "too long for the control socket" create \
	"$(printf '%0100d' 0)" --backend null --size 1M
expect 2 "unexpected argument 'extra'" create d0 extra --backend null --size 1M

# --- create: backend and its arguments
expect 2 "create needs --backend" create d0 --size 1M
expect 2 "unknown backend 'nosuch'" create d0 --backend nosuch
expect 2 "the null backend needs --size" create d0 --backend null
expect 2 "--path does not apply to the null backend" \
	create d0 --backend null --size 1M --path /tmp/x
expect 2 "--url does not apply to the null backend" \
	create d0 --backend null --size 1M --url tcp://x
expect 2 "the file backend needs --path FILE" create d0 --backend file
expect 2 "--url does not apply to the file backend" \
	create d0 --backend file --path /tmp/x --url tcp://x

# --- backend keys: checked by the backend's own table before the kernel is
# asked anything (so never the "load the vduse module" hint), exit 2
: >"$tmp/img"
truncate -s 8M "$tmp/img"
no_hint() {  # the last command's stderr must not blame the kernel
	if grep -q "module\|/dev/vduse" "$tmp/err"; then
		not_ok "$1: no kernel hint for a bad option"
	else
		ok "$1: no kernel hint for a bad option"
	fi
}
expect 2 "file: path=$tmp/nope does not exist: create it" \
	create d0 --backend file --path "$tmp/nope"
no_hint "missing file"
expect 2 "file: cache=sometimes: use one of none|writeback" \
	create d0 --backend file --path "$tmp/img" -o cache=sometimes
no_hint "cache="
expect 2 "file: path=/proc is not a regular file or a block device" \
	create d0 --backend file --path /proc
expect 2 "file: create=on needs size=SIZE" \
	create d0 --backend file --path "$tmp/new" -o create=on
expect 2 "null: unknown key 'bogus': the null backend takes size, readonly, read-zeroes" \
	create d0 --backend null --size 1M -o bogus=1
no_hint "unknown key"
expect 2 "null: read-zeroes=maybe is not a boolean: use read-zeroes=on or read-zeroes=off" \
	create d0 --backend null --size 1M -o read-zeroes=maybe
expect 2 "null: size=100 is too small: use at least 512 bytes" \
	create d0 --backend null -o size=100
expect 2 "nbd: url: 'http://x'" create d0 --backend nbd --url http://x
no_hint "bad url"
expect 2 "nbd: connections=99 is out of range: use 1 to 16" \
	create d0 --backend nbd --url nbd://127.0.0.1 -o connections=99
expect 2 "nbd: timeout=soon is not a number" \
	create d0 --backend tcp --url nbd://127.0.0.1 -o timeout=soon
expect 2 "the nbd backend needs --url URL" create d0 --backend tcp
[ ! -e "$tmp/new" ] && ok "a refused create=on made no file" ||
	not_ok "a refused create=on made no file"

# --- create --backend X --help: every backend, and X's keys
expect_out 0 "nbd      remote storage on an NBD server" create --help
expect_out 0 "path=FILE" create --backend file --help
expect_out 0 "read-zeroes=on|off" create --help --backend null
expect_out 0 "connections=N" create --backend tcp --help
expect 2 "unknown backend 'nosuch'" create --backend nosuch --help

expect 2 "--image does not apply to the file backend" \
	create d0 --backend file --path "$tmp/img" --image rbd/x

# --- the rbd plugin (backends/rbd.so, built with librbd): found by name on
# $VDUSE_BACKEND_PATH like any plugin; its keys' checks need no cluster
rbddir=
if [ -n "${PLUGINS:-}" ] && [ -f "$PLUGINS/backends/.libs/rbd.so" ]; then
	rbddir=$PLUGINS/backends/.libs
	VRUN="env VDUSE_BACKEND_PATH=$rbddir"
	expect 2 "image=nopool: not an RBD image spec" create d0 --backend rbd --image nopool
	expect 2 "the rbd backend needs --image POOL/[NAMESPACE/]IMAGE[@SNAP]" \
		create d0 --backend rbd
	expect 2 "id=client.admin: give the user's name without \"client.\"" \
		create d0 --backend rbd --image rbd/x -o id=client.admin
	expect 2 "--size does not apply to the rbd backend" \
		create d0 --backend rbd --image rbd/x --size 1G
	expect 2 "rbd: connect-timeout=0 is out of range: use 1 to 3600" \
		create d0 --backend rbd --image rbd/x -o connect-timeout=0
	VRUN=
else
	ok "rbd plugin # SKIP backends/.libs/rbd.so not built (no librbd-dev)"
fi

# --- man page BACKENDS section == the descriptors (both ways); rbd, a
# plugin, when it is built
if [ -n "${MANDIR:-}" ] && [ -f "$MANDIR/vdusectl.8" ]; then
	: >"$tmp/err"
	for b in null file nbd ${rbddir:+rbd}; do
		VDUSE_BACKEND_PATH=$rbddir "$VDUSECTL" create --backend "$b" --help 2>/dev/null |
			sed -n '/^Keys of the/,$p' |
			sed -n 's/^  \([a-z][a-z0-9_-]*=[^ ]*\) .*/\1/p' | sort >"$tmp/keys.help"
		awk -v b="$b" '
			/^\.SH/ { in_sec = ($2 == "BACKENDS") ; cur = ""; next }
			in_sec && /^\.SS/ { cur = $2; gsub(/"/, "", cur); next }
			in_sec && cur == b && /^\.BI / { print $2 $3 }
		' "$MANDIR/vdusectl.8" | sort >"$tmp/keys.man"
		if [ -s "$tmp/keys.help" ] && cmp -s "$tmp/keys.help" "$tmp/keys.man"; then
			ok "man vdusectl(8) BACKENDS lists the $b keys as the descriptor does"
		else
			not_ok "man vdusectl(8) BACKENDS lists the $b keys as the descriptor does" \
				"descriptor: $(tr '\n' ' ' <"$tmp/keys.help")" \
				"man page:   $(tr '\n' ' ' <"$tmp/keys.man")"
		fi
	done
fi

# --- --dry-run: the backend opened and described, nothing created
expect_out 0 "size:         8M (8388608 bytes)" create d0 --backend file --path "$tmp/img" --dry-run
expect_out 0 "discard:      yes" create d0 --backend null --size 1G -n
expect_out 0 "read-only:    yes" create d0 --backend null --size 1G -n --read-only
expect_out 0 "backend:      file" create d0 --backend file --path "$tmp/img" -n
if [ -e "$state/d0.json" ] || [ -e "$state/d0.pid" ]; then
	not_ok "--dry-run left no state"
else
	ok "--dry-run left no state"
fi
expect 1 "(create= is not acted on under --dry-run)" \
	create d0 --backend file --path "$tmp/made" --size 1M -o create=on -n
[ ! -e "$tmp/made" ] && ok "--dry-run with create=on made no file" ||
	not_ok "--dry-run with create=on made no file"
expect 1 "nbd: cannot connect to nbd://127.0.0.1:1" \
	create d0 --backend nbd --url nbd://127.0.0.1:1 --dry-run

# --- plugins: by path, by name on $VDUSE_BACKEND_PATH, and ABI refusals
if [ -n "${PLUGINS:-}" ] && [ -f "$PLUGINS/examples/.libs/ramdisk-plugin.so" ]; then
	rd=$PLUGINS/examples/.libs/ramdisk-plugin.so
	pd=$PLUGINS/tests/plugins/.libs
	expect_out 0 "size:         64M" create d0 --backend "$rd" --size 64M -n
	expect_out 0 "size=SIZE" create --backend "$rd" --help
	expect 2 "ramdisk: size=2K is out of range" create d0 --backend "$rd" --size 2K -n
	expect 2 "the ramdisk backend needs --size SIZE" create d0 --backend "$rd"
	expect 2 "--path does not apply to the ramdisk backend: remove it (vdusectl create --backend $rd --help" \
		create d0 --backend "$rd" --size 1M --path /x
	mkdir -p "$tmp/plugdir"
	cp "$rd" "$tmp/plugdir/ramdisk.so"
	VDUSE_BACKEND_PATH="/nonexistent:$tmp/plugdir"
	export VDUSE_BACKEND_PATH
	expect_out 0 "backend:      $tmp/plugdir/ramdisk.so" create d0 --backend ramdisk --size 4M -n
	unset VDUSE_BACKEND_PATH
	expect 2 "unknown backend 'ramdisk'" create d0 --backend ramdisk --size 4M -n
	expect 2 "unknown backend 'Bad.Name'" create d0 --backend Bad.Name
	expect 2 "backend plugin $tmp/nope.so: No such file" create d0 --backend "$tmp/nope.so"
	expect 2 "was built for backend API 3" create d0 --backend "$pd/future.so" --size 1M
	expect 2 "rebuild it against the installed libvduse" create d0 --backend "$pd/future.so" --size 1M
	expect 2 "is not a vduse backend plugin: it exports no vdu_plugin_entry()" \
		create d0 --backend "$pd/not-a-plugin.so"
	expect 2 "unusable backend struct (API version 1)" \
		create d0 --backend "$pd/old-backend.so" --size 1M
	expect_out 0 "size:         1M" create d0 --backend "$pd/old-descriptor.so" --size 1M -n
	expect 2 "the olddesc backend takes size" create d0 --backend "$pd/old-descriptor.so" --size 1M -o x=1
	expect 2 "cannot load backend plugin" create d0 --backend "$tmp/img"
else
	ok "plugins # SKIP not built (run through make check)"
fi
expect 2 "'12Q' is not a size" create d0 --backend null --size 12Q
expect 2 "at least 512 bytes" create d0 --backend null --size 100
expect 2 "is not KEY=VALUE" create d0 --backend null --size 1M -o foo
expect 2 "is not KEY=VALUE" create d0 --backend null --size 1M -o =1
expect 2 "given twice" create d0 --backend null --size 1M -o size=2M

# --- create: numbers
for q in 0 65 abc -1 1x ''; do
	expect 2 "--queues must be a number from 1 to 64 (got '$q')" \
		create d0 --backend null --size 1M --queues "$q"
done
for q in 0 1 2 3 100 65536 1048576 abc; do
	expect 2 "--queue-size must be a power of two from 4 to 32768 (got '$q')" \
		create d0 --backend null --size 1M --queue-size "$q"
done
for b in 0 256 1000 131072 4k; do
	expect 2 "--block-size must be a power of two from 512 to 65536 (got '$b')" \
		create d0 --backend null --size 1M --block-size "$b"
done
expect 2 "--serial is 21 bytes long: use at most 20" \
	create d0 --backend null --size 1M --serial 123456789012345678901
expect 2 "--driver must be virtio_vdpa or vhost_vdpa" \
	create d0 --backend null --size 1M --attach --driver nbd
expect 2 "--driver only applies with --attach" \
	create d0 --backend null --size 1M --driver vhost_vdpa

# --- create: performance options
for r in foo SPLIT ''; do
	expect 2 "--ring must be split or packed (got '$r')" \
		create d0 --backend null --size 1M --ring "$r"
done
for l in x 0- -1 1-0 0,,1 ' 0' 0,; do
	expect 2 "--cpu-list '$l' is not a CPU list" \
		create d0 --backend null --size 1M --cpu-list "$l"
done
expect 2 "--cpu-list '0,0' names 2 CPUs for 1 queue: give one CPU per queue" \
	create d0 --backend null --size 1M --cpu-list 0,0
expect 2 "--cpu-list '0' names 1 CPU for 2 queues: give one CPU per queue" \
	create d0 --backend null --size 1M --queues 2 --cpu-list 0
expect 2 "--cpu-list '0,0-0,0' names 3 CPUs for 2 queues" \
	create d0 --backend null --size 1M --queues 2 --cpu-list 0,0-0,0
expect 2 "--cpu-list: CPU 99999 does not exist" \
	create d0 --backend null --size 1M --cpu-list 99999
expect 2 "--irq-cpu-list '0,0' names 2 CPUs for 1 queue" \
	create d0 --backend null --size 1M --irq-cpu-list 0,0
expect 2 "--irq-cpu-list 'a' is not auto, follow, driver or a CPU list" \
	create d0 --backend null --size 1M --irq-cpu-list a
expect 2 "--irq-cpu-list '0,x' is not a CPU list" \
	create d0 --backend null --size 1M --irq-cpu-list 0,x
for p in -1 1000001 1x ''; do
	expect 2 "--poll-us must be auto or a number of microseconds from 0 to 1000000 (got '$p')" \
		create d0 --backend null --size 1M --poll-us "$p"
done
for b in 0 4K 1023K 2G 1048577 x; do
	expect 2 "--bounce-size must be from 1M to 1G in 4K pages (got '$b')" \
		create d0 --backend null --size 1M --bounce-size "$b"
done
for b in '' users Kernel 1; do
	expect 2 "--bounce must be auto, user or kernel (got '$b')" \
		create d0 --backend null --size 1M --bounce "$b"
done
if [ ! -e /dev/vduse/control ]; then
	# Valid values get past validation to the runtime check.
	expect 1 "/dev/vduse/control not found" create d0 --backend null \
		--size 1M --queues 2 --cpu-list 0,0 --irq-cpu-list 0-0,0 \
		--ring packed --poll-us 50 --bounce-size 4M --bounce user
	expect 1 "/dev/vduse/control not found" create d0 --backend null \
		--size 1M --bounce kernel
	expect 1 "/dev/vduse/control not found" create d0 --backend null \
		--size 1M --poll-us auto
else
	ok "valid performance options # SKIP /dev/vduse/control exists"
fi
expect_out 0 "--ring" create --help
expect_out 0 "--cpu-list" create --help
expect_out 0 "--bounce-size" create --help
expect_out 0 "--bounce=auto|user|kernel" create --help

# --- option syntax (popt)
expect 2 "unknown option" create d0 --backend null --size 1M --bogus
expect 2 "missing argument" create d0 --backend null --size
expect 2 "unknown option" list --bogus
expect 2 "unexpected argument 'x'" list x
expect 2 "missing device NAME" show
expect 2 "invalid device name" show 'a/b'

# --- a valid create without VDUSE in the kernel: runtime failure
if [ ! -e /dev/vduse/control ]; then
	expect 1 "/dev/vduse/control not found: load the vduse module (modprobe vduse)" \
		create d0 --backend null --size 1M
else
	ok "create without vduse # SKIP /dev/vduse/control exists"
fi

# --- no such device
for cmd in show stats destroy attach detach; do
	expect 3 "no such device 'nodev'" $cmd nodev
done
expect 3 "no such device 'nodev'" resize nodev 1G

# --- list on an empty state dir
expect_out 0 "NAME" list
expect 0 "" list --json
json_ok "list --json is valid JSON (empty)"
expect_out 0 '"devices":[]' list --json

# --- a device whose daemon died: saved config plus a stale pid file
cat >"$state/dead0.json" <<'EOF'
{"version":1,"name":"dead0","backend":"null","params":{"size":"1G","x":"a\"b\\c"},"size":1073741824,"queues":2,"queue_size":256,"block_size":512,"serial":null,"read_only":false,"irq_cpu_list":"auto","irq_mode":"driver","created":0}
EOF
echo 999999999 >"$state/dead0.pid"
chmod 0600 "$state/dead0.json" "$state/dead0.pid"
expect_out 0 "dead0" list
expect_out 0 '"name":"dead0","backend":"null","size":1073741824,"queues":2' list --json
json_ok "list --json is valid JSON"
expect_out 0 '"daemon":false' list --json
expect_out 0 '"backend":"null"' show dead0 --json
json_ok "show --json is valid JSON"
expect_out 0 "not running" show dead0
expect_out 0 "auto (driver)" show dead0
expect_out 0 '"irq_cpu_list":"auto","irq_mode":"driver"' show dead0 --json
expect 1 "daemon not running" stats dead0
# resize: bad requests are refused against the saved size, before the
# (missing) daemon is asked; nothing changes
expect 2 "refusing to shrink dead0 from 1G to 512M: data beyond 512M would be lost; add --shrink" \
	resize dead0 512M
expect 2 "refusing to shrink dead0 from 1G to 1023M" resize dead0 -1M
expect 2 "1073741924 is not a multiple of the 512-byte blocks of dead0" resize dead0 +100
expect 2 "'12Q' is not a size" resize dead0 12Q
expect 2 "'+x' is not a size" resize dead0 +x
expect 2 "dead0 has 1073741824 bytes: it cannot shrink by '2G'" resize dead0 -2G --shrink
expect 2 "a size of 0" resize dead0 0
expect 2 "resize: missing SIZE" resize dead0
expect 2 "unexpected argument 'x'" resize dead0 1G x
expect 2 "invalid device name" resize 'a/b' 1G
expect 1 "device dead0: daemon not running: start a new one (vdusectl recover dead0)" \
	resize dead0 2G
expect 1 "daemon not running" resize dead0 -512M --shrink
grep -q '"size":1073741824' "$state/dead0.json" && grep -q '"size":"1G"' "$state/dead0.json" &&
	ok "refused resizes left the saved size" || not_ok "refused resizes left the saved size"
expect 1 "device dead0 has no running daemon: start a new one (vdusectl recover dead0)" attach dead0
expect 0 "" destroy dead0
if [ -e "$state/dead0.json" ] || [ -e "$state/dead0.pid" ]; then
	not_ok "destroy removed the state files"
else
	ok "destroy removed the state files"
fi
expect 3 "no such device 'dead0'" show dead0

# --- --state-dir and $VDUSE_STATE_DIR
mkdir -m 0700 "$tmp/other"
: >"$tmp/other/elsewhere.json"
expect_out 0 "elsewhere" list --state-dir "$tmp/other"
saved=$VDUSE_STATE_DIR
VDUSE_STATE_DIR="$tmp/other"
expect_out 0 "elsewhere" list
VDUSE_STATE_DIR=$saved

# --- global options: before or after the command
expect_out 0 '"devices":[' -j list
expect_out 0 '"devices":[' list -j
expect_out 0 '"devices":[' --json list
expect 2 "create has no JSON output: remove -j/--json" -j create d0 --backend null --size 1M
expect 2 "--log-level must be err, warning, notice, info or debug (got 'loud')" \
	--log-level loud list
expect 2 "--log-level must be err, warning, notice, info or debug (got 'loud')" \
	list --log-level loud
expect_out 0 "elsewhere" --state-dir "$tmp/other" list
expect 0 "" -v --log-level=debug list
expect 0 "" list -v
expect_out 0 "--log-level=LEVEL" create --help

# --- a corrupt saved state is a warning, not silent "-" fields
echo '{"name": "bad0", "backend": ' >"$state/bad0.json"
expect_out 0 "bad0" list
if grep -q "warning: .*bad0.json is corrupt (not JSON)" "$tmp/err"; then
	ok "list warns about a corrupt saved state"
else
	not_ok "list warns about a corrupt saved state"
fi
expect_out 0 "bad0" show bad0
if grep -q "bad0.json is corrupt.*vdusectl destroy bad0" "$tmp/err"; then
	ok "show warns about a corrupt saved state, says how to remove it"
else
	not_ok "show warns about a corrupt saved state, says how to remove it"
fi
rm -f "$state/bad0.json"

# --- who may use the state directory: root's (0700) refuses others
# clearly; $VDUSE_GROUP must name a group
VRUN="env VDUSE_GROUP=no-such-group-x"
expect 2 "VDUSE_GROUP=no-such-group-x: no such group: create it" \
	create d0 --backend null --size 1M
VRUN=
if [ "$(id -u)" = 0 ] && command -v setpriv >/dev/null; then
	mkdir -m 0700 "$tmp/rootonly"
	: >"$tmp/rootonly/r0.json"
	chmod 0711 "$tmp"
	VRUN="setpriv --reuid=65534 --regid=65534 --clear-groups env VDUSE_STATE_DIR=$tmp/rootonly"
	expect 1 "cannot read the state directory $tmp/rootonly: run vdusectl as root, or as a member of the group" \
		list
	expect 1 "cannot read the state directory" show r0
	expect 1 "the state directory $tmp/rootonly is root's: run vdusectl as root" \
		destroy r0
	VRUN=
	chmod 0700 "$tmp"
else
	ok "state directory access as another user # SKIP not root or no setpriv"
fi

echo "1..$n"
[ "$failed" -eq 0 ]
