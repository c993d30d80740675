# shellcheck shell=sh
# cli-lib.sh -- helpers for the vdusectl guest tests (tests/vm/1x-*.sh ..
# 4x-*.sh), on top of lib.sh.  Usage:  . "$VDU_TESTDIR/cli-lib.sh"
# Not a test itself: vm-run runs only tests/vm/[0-9]*.sh.
. "$VDU_TESTDIR/lib.sh"

need_project
need_cmd vdusectl

VCTL_STATE=/run/vduse

# Kernel log lines up to here are not this test's business.
_vdu_dmesg_mark=$(dmesg 2>/dev/null | wc -l)

# dmesg_new: kernel log lines logged since the test started
dmesg_new() {
    dmesg 2>/dev/null | tail -n +"$((_vdu_dmesg_mark + 1))"
}
# dmesg_check [EXTRA_REGEX]: fail on a kernel oops/BUG/WARNING (or on
# EXTRA_REGEX) logged since the test started.  Hung-task reports are left
# to the tests that provoke them (19-sigterm-drain passes them as EXTRA).
dmesg_check() {
    _re='BUG:|Oops|WARNING: CPU|general protection|kernel BUG|RIP:|refcount_t|list_(add|del) corruption|UBSAN|KASAN'
    [ -z "${1:-}" ] || _re="$_re|$1"
    _bad=$(dmesg_new | grep -E "$_re" || true)
    if [ -n "$_bad" ]; then
        dmesg_new | tail -n 60
        fail "kernel log shows trouble: $(echo "$_bad" | head -n 1)"
    fi
}

# sfail MSG: fail from inside $(...): the message goes to stderr (the test
# log) instead of into the captured value.  Callers add "|| exit 1".
sfail() { fail "$@" >&2; }

# vdev_cleanup NAME: destroy NAME (detaching it first) when the test exits
vdev_cleanup() {
    on_exit "vdusectl destroy '$1' --force >/dev/null 2>&1"
}

# vdev_create NAME ARGS...: vdusectl create NAME ARGS..., registered for
# cleanup; fails the test if create fails or leaves no /dev/vduse/NAME.
vdev_create() {
    _n=$1; shift
    vdev_cleanup "$_n"
    run vdusectl create "$_n" "$@"
    [ -c "/dev/vduse/$_n" ] || fail "create $_n: /dev/vduse/$_n missing"
    [ -s "$VCTL_STATE/$_n.pid" ] || fail "create $_n: $VCTL_STATE/$_n.pid missing"
}

# vdev_attach NAME [ARGS...]: attach, print the node; asserts the node is
# a block device that exists when attach returns.
vdev_attach() {
    _n=$1; shift
    log "+ vdusectl attach $_n $*" >&2
    _node=$(vdusectl attach "$_n" "$@") || sfail "vdusectl attach $_n failed (rc=$?)"
    case "$_node" in
    /dev/vd[a-z]*) ;;
    *) sfail "attach $_n printed '$_node', expected /dev/vdX" ;;
    esac
    [ -b "$_node" ] || sfail "attach $_n: $_node is not a block device"
    echo "$_node"
}

# daemon_pid NAME: the daemon's pid from the pid file
daemon_pid() {
    _p=$(cat "$VCTL_STATE/$1.pid" 2>/dev/null | tr -d ' \n')
    case "$_p" in ''|*[!0-9]*) sfail "no pid in $VCTL_STATE/$1.pid: '$_p'" ;; esac
    echo "$_p"
}

# sysblk NODE FILE: cat /sys/block/<vdX>/FILE
sysblk() {
    _b=${1#/dev/}
    cat "/sys/block/$_b/$2" || sfail "cannot read /sys/block/$_b/$2"
}

# expect_error RC_REGEX CMD...: run CMD expecting a failure whose exit code
# matches the extended regex RC_REGEX, exactly one line on stderr starting
# "vdusectl: " and nothing on stdout.  Leaves stderr's text in $err_text.
expect_error() {
    _want=$1; shift
    log "+ ! $*"
    _rc=0
    "$@" >"$VDU_SCRATCH/ee.out" 2>"$VDU_SCRATCH/ee.err" || _rc=$?
    err_text=$(cat "$VDU_SCRATCH/ee.err")
    echo "    rc=$_rc stderr: $err_text"
    [ "$_rc" != 0 ] || fail "succeeded, expected failure: $*"
    echo "$_rc" | grep -Eqx "$_want" || fail "exit code $_rc, expected $_want: $*"
    _lines=$(wc -l <"$VDU_SCRATCH/ee.err")
    [ "$_lines" = 1 ] || fail "$_lines lines on stderr, expected 1: $*"
    case "$err_text" in
    "vdusectl: "?*) ;;
    *) fail "stderr does not start with 'vdusectl: ': $*" ;;
    esac
    [ ! -s "$VDU_SCRATCH/ee.out" ] || fail "unexpected stdout: $(head -c 200 "$VDU_SCRATCH/ee.out")"
}

# jqv FILE FILTER: jq -r FILTER FILE, failing the test on a jq error
jqv() {
    jq -r "$2" "$1" || sfail "jq '$2' failed on $1: $(head -c 300 "$1")"
}
need_jq() { need_cmd jq; }

# read_zero NODE COUNT: COUNT 4 KiB blocks read with O_DIRECT are zeroes
read_zero() {
    dd if="$1" of="$VDU_SCRATCH/rz.bin" bs=4096 count="$2" iflag=direct 2>"$VDU_SCRATCH/dd.err" ||
        fail "direct read of $1 failed: $(cat "$VDU_SCRATCH/dd.err")"
    _sz=$(wc -c <"$VDU_SCRATCH/rz.bin")
    assert_eq "$_sz" "$(($2 * 4096))" "bytes read from $1"
    cmp -n "$_sz" "$VDU_SCRATCH/rz.bin" /dev/zero >/dev/null ||
        fail "data read from $1 is not all zeroes"
    rm -f "$VDU_SCRATCH/rz.bin"
}

# write_direct NODE COUNT [SEEK]: write COUNT 4 KiB blocks with O_DIRECT
write_direct() {
    dd if=/dev/urandom of="$VDU_SCRATCH/wd.bin" bs=4096 count="$2" 2>/dev/null
    dd if="$VDU_SCRATCH/wd.bin" of="$1" bs=4096 count="$2" seek="${3:-0}" oflag=direct conv=notrunc 2>"$VDU_SCRATCH/dd.err"
}

# stats_field NAME QUEUE FIELD: one counter from `vdusectl stats NAME --json`
stats_field() {
    vdusectl stats "$1" --json >"$VDU_SCRATCH/st.json" || sfail "vdusectl stats $1 --json failed"
    jqv "$VDU_SCRATCH/st.json" ".queues[] | select(.index == $2) | .$3"
}

# no_dstate: fail if some process is in uninterruptible sleep (D) for 3 s
no_dstate() {
    _i=0
    while :; do
        _d=""
        for _s in /proc/[0-9]*/stat; do
            _st=$(cut -d' ' -f3 "$_s" 2>/dev/null) || continue
            [ "$_st" = D ] && _d="$_d $(cat "${_s%/stat}/comm" 2>/dev/null)(${_s#/proc/}:$(cat "${_s%/stat}/wchan" 2>/dev/null))"
        done
        [ -z "$_d" ] && return 0
        _i=$((_i + 1))
        [ $_i -lt 30 ] || fail "processes stuck in D state:${_d}"
        sleep 0.1
    done
}
