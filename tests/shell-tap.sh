# SPDX-License-Identifier: LGPL-2.1-or-later
# shellcheck shell=sh
# Shared by the shell tests: a built vdusectl, a private state directory
# (never the real /run/vduse) in $tmp, and TAP counters.  Source it after
# setting TAP_NAME (the temp dir's name).  not_ok's extra arguments become
# "# " lines, then the last command's stderr ($tmp/err) when there is one.

VDUSECTL=${VDUSECTL:-./vdusectl/vdusectl}
if [ ! -x "$VDUSECTL" ]; then
	echo "Bail out! $VDUSECTL not built" >&2
	exit 99
fi

tmp=$(mktemp -d "${TMPDIR:-/tmp}/${TAP_NAME:-vdusectl-test}.XXXXXX") || exit 99
trap 'rm -rf "$tmp"' EXIT INT TERM
state="$tmp/state"
mkdir -m 0700 "$state"
VDUSE_STATE_DIR=$state
export VDUSE_STATE_DIR

n=0
failed=0

ok() {
	n=$((n + 1))
	echo "ok $n - $1"
}

not_ok() {
	n=$((n + 1))
	failed=$((failed + 1))
	echo "not ok $n - $1"
	shift
	for line in "$@"; do
		echo "# $line"
	done
	if [ -s "$tmp/err" ]; then
		echo "# stderr:"
		sed 's/^/#   /' "$tmp/err"
	fi
}
