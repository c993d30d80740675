#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# The bash completion (completion/vdusectl) against the built vdusectl:
# commands, option values, options read from COMMAND --help and device
# names read from `vdusectl list`.  Needs no kernel support.
# Prints TAP; exits 0 (all passed), 1 (a check failed) or 99 (no binary).

COMPLETION=${COMPLETION:-$(dirname "$0")/../completion/vdusectl}
TAP_NAME=vdusectl-compl
# shellcheck source=shell-tap.sh
. "$(dirname "$0")/shell-tap.sh"
if [ ! -f "$COMPLETION" ]; then
	echo "Bail out! no $COMPLETION" >&2
	exit 99
fi

if bash -n "$COMPLETION" 2>"$tmp/err"; then
	ok "bash -n $COMPLETION"
else
	not_ok "bash -n $COMPLETION" "$(cat "$tmp/err")"
fi

# shellcheck source=../completion/vdusectl disable=SC1091
if ! . "$COMPLETION"; then
	not_ok "sourcing $COMPLETION"
	echo "1..$n"
	exit 1
fi
if complete -p vdusectl 2>/dev/null | grep -q -- '-F _vdusectl vdusectl$'; then
	ok "complete -F _vdusectl vdusectl is registered"
else
	not_ok "complete -F _vdusectl vdusectl is registered" "$(complete -p vdusectl 2>&1)"
fi

# complete WORD...: run the completion on "vdusectl WORD...", the last
# word being the one completed; the candidates end up in COMPREPLY.
complete_words() {
	COMP_WORDS=("$VDUSECTL" "$@")
	COMP_CWORD=$((${#COMP_WORDS[@]} - 1))
	COMP_LINE="${COMP_WORDS[*]}"
	COMP_POINT=${#COMP_LINE}
	COMPREPLY=()
	_vdusectl "$VDUSECTL" "${COMP_WORDS[COMP_CWORD]}" "${COMP_WORDS[COMP_CWORD - 1]}"
}

# expect 'WANTED...' [exact] -- WORD...: every WANTED word is a candidate
# (with "exact": the candidates are exactly WANTED, in any order).
expect() {
	local want=$1 mode=$2 desc got w missing=
	shift 3
	desc="vdusectl $* <TAB> -> $want"
	complete_words "$@"
	got=" ${COMPREPLY[*]} "
	for w in $want; do
		case $got in
		*" $w "*) ;;
		*) missing="$missing $w" ;;
		esac
	done
	if [ -n "$missing" ]; then
		not_ok "$desc" "missing:$missing" "got:$got"
	elif [ "$mode" = exact ] && [ "${#COMPREPLY[@]}" -ne "$(echo "$want" | wc -w)" ]; then
		not_ok "$desc" "got more:$got"
	else
		ok "$desc"
	fi
}

expect 'create' exact -- cr
expect 'create attach detach destroy recover list show stats resize mgmtdev' exact -- ''
expect '--verbose --log-level --json --state-dir --help --version' any -- --
expect 'err warning notice info debug' exact -- --log-level ''
expect 'show stats' exact -- --log-level debug s
expect 'resize recover' exact -- re
expect '--shrink' any -- resize x 1G --
expect 'null file nbd' any -- create x --backend ''
expect 'nbd' exact -- create x --backend nb
expect '--backend=null --backend=nbd' exact -- create x --backend=n
expect 'null file nbd' any -- create x --backend = ''
expect '--ring' exact -- create x --ri
expect 'split packed' exact -- create x --ring ''
expect 'auto user kernel' exact -- create x --bounce ''
expect 'virtio_vdpa vhost_vdpa' exact -- attach x --driver ''
expect '--force' any -- destroy --
expect '--dry-run --attach --auto-recover' any -- create x --backend null --
expect 'path= cache=' any -- create x --backend file -o ''

# Plugins: NAME.so on $VDUSE_BACKEND_PATH, and .so files by path.
mkdir "$tmp/plugins"
: >"$tmp/plugins/ramdisk.so"
VDUSE_BACKEND_PATH=$tmp/plugins expect 'ramdisk' any -- create x --backend ''
expect "$tmp/plugins/ramdisk.so" exact -- create x --backend "$tmp/plugins/r"

# Device names: none in an empty state directory, then NAME from NAME.json.
expect '' exact -- show ''
: >"$state/disk0.json"
expect 'disk0' exact -- show ''
expect 'disk0' exact -- destroy --force ''
expect 'disk0' exact -- --json show ''
expect '' exact -- show disk0 ''
expect 'disk0' exact -- resize ''
expect '' exact -- resize disk0 ''
expect '' exact -- create ''
mkdir "$tmp/other"
: >"$tmp/other/disk1.json"
expect 'disk1' exact -- stats --state-dir "$tmp/other" ''

echo "1..$n"
[ "$failed" -eq 0 ]
