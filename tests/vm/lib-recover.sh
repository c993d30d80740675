# shellcheck shell=sh
# lib-recover.sh -- helpers for the crash-recovery guest tests
# (tests/vm/7x-*.sh).  Source after cli-lib.sh:
#   . "$VDU_TESTDIR/cli-lib.sh"; . "$VDU_TESTDIR/lib-recover.sh"
# Not a test itself.

# rnd N: a random number in 0..N-1 (dash has no $RANDOM)
rnd() {
    echo $(( $(od -An -N2 -tu2 /dev/urandom | tr -d ' ') % $1 ))
}

# rnd_sleep MIN_MS SPAN_MS: sleep MIN_MS + a random 0..SPAN_MS-1 ms
rnd_sleep() {
    _ms=$(( $1 + $(rnd "$2") ))
    sleep "$((_ms / 1000)).$(printf '%03d' $((_ms % 1000)))"
}

# direct_img PATH SIZE_MB: an image file on ext4 on a memory-backed null_blk
# disk whose requests complete after 100 us (timer), so that the file
# backend's O_DIRECT + libaio I/O is really in flight when the daemon dies
# (on tmpfs it completes inside io_submit).  Sets IMG.
direct_img() {
    [ -d "$NULLB_CFG" ] || skip "null_blk configfs not available"
    run mkdir "$NULLB_CFG/nbr"
    on_exit "echo 0 >'$NULLB_CFG/nbr/power'; rmdir '$NULLB_CFG/nbr'"
    echo $(( $2 + 32 )) >"$NULLB_CFG/nbr/size" || fail "nullb size"
    echo 1 >"$NULLB_CFG/nbr/memory_backed" || fail "nullb memory_backed"
    echo 2 >"$NULLB_CFG/nbr/irqmode" || fail "nullb irqmode"
    echo 100000 >"$NULLB_CFG/nbr/completion_nsec" || fail "nullb completion_nsec"
    echo 1 >"$NULLB_CFG/nbr/power" || fail "nullb power"
    wait_for_path /dev/nbr 10
    run mkfs.ext4 -q -F /dev/nbr
    mkdir -p /mnt/nbr
    run mount -t ext4 /dev/nbr /mnt/nbr
    on_exit "umount /mnt/nbr"
    IMG=/mnt/nbr/img
    truncate -s "$2"M "$IMG" || fail "cannot create $IMG"
}

# kill9 NAME: SIGKILL the daemon of NAME and wait until it is gone
kill9() {
    _kp=$(daemon_pid "$1") || exit 1
    kill -9 "$_kp" || fail "kill -9 $_kp ($1) failed"
    _i=0
    while kill -0 "$_kp" 2>/dev/null; do
        [ $_i -lt 100 ] || fail "daemon $_kp of $1 survived SIGKILL for 10 s"
        sleep 0.1; _i=$((_i + 1))
    done
    KILLED_PID=$_kp
}

# recover NAME: vdusectl recover NAME; asserts a new live daemon
recover() {
    run vdusectl recover "$1"
    _np=$(daemon_pid "$1") || exit 1
    kill -0 "$_np" 2>/dev/null || fail "$1: recovered daemon $_np is not running"
    [ "$_np" != "${KILLED_PID:-}" ] || fail "$1: pid file still names the killed daemon"
}

# fio_bg NODE TAG [SMALL BIG]: fio randwrite + crc32c verify in the
# background, output in fio-TAG.{out,err}; sets FIO_PID.  Two jobs: SMALL
# (default 8m) of 4k at QD32, then BIG (default 16m) of 512-256k at QD16,
# written, then read back.
fio_bg() {
    _fs=${3:-8m} _fb=${4:-16m}
    fio --output-format=terse --terse-version=3 \
        --filename="$1" --ioengine=libaio --direct=1 --rw=randwrite \
        --verify=crc32c --do_verify=1 --verify_fatal=1 --verify_backlog=0 \
        --group_reporting=0 \
        --name=q32 --bs=4k --iodepth=32 --offset=0 --size="$_fs" \
        --name=big --bsrange=512-256k --iodepth=16 --offset="$_fs" --size="$_fb" \
        >"fio-$2.out" 2>"fio-$2.err" &
    FIO_PID=$!
    log "fio round $2 started (pid $FIO_PID) on $1"
}

# fio_check TAG: wait for fio round TAG; zero errors, zero verify mismatches
fio_check() {
    _rc=0
    wait "$FIO_PID" || _rc=$?
    _errs=$(awk -F';' '$5 != 0 { print $3 ": error " $5 }' "fio-$1.out")
    _jobs=$(wc -l <"fio-$1.out")
    if [ $_rc != 0 ] || [ -n "$_errs" ] || [ "$_jobs" != 2 ] ||
       grep -qi 'verify\|error' "fio-$1.err"; then
        cat "fio-$1.err"; echo "$_errs"
        fail "fio round $1 failed (rc=$_rc, $_jobs job lines)"
    fi
    log "fio round $1: $_jobs jobs written and verified, no errors"
}

# kill_loop NAME NODE KILLS [RECOVER_CMD]: run fio verify rounds on NODE
# and SIGKILL the daemon KILLS times at random moments while fio runs,
# each time followed by RECOVER_CMD NAME (default: recover).  Every round
# must finish verified.  Sets ROUNDS.
kill_loop() {
    _kn=$1 _node=$2 _kills=$3 _rcmd=${4:-recover}
    ROUNDS=1
    fio_bg "$_node" 1
    _k=0
    while [ $_k -lt "$_kills" ]; do
        rnd_sleep 300 2000
        if ! kill -0 "$FIO_PID" 2>/dev/null; then
            fio_check "$ROUNDS"
            ROUNDS=$((ROUNDS + 1))
            fio_bg "$_node" "$ROUNDS"
            continue
        fi
        _k=$((_k + 1))
        kill9 "$_kn"
        log "kill $_k/$_kills: daemon $KILLED_PID of $_kn killed under fio round $ROUNDS"
        rnd_sleep 0 500  # the guest keeps queueing meanwhile
        "$_rcmd" "$_kn"
    done
    fio_check "$ROUNDS"
}

# resubmitted NAME: total requests the recovered daemons resubmitted
resubmitted() {
    sed -n 's/.*resubmitting \([0-9]*\) request.*/\1/p' "$VCTL_STATE/$1.log" |
        awk '{s += $1} END {print s + 0}'
}

# recover_matrix NAME QUEUES RING KILLS ARGS...: create (ARGS: backend
# options) with QUEUES and RING, attach, kill_loop, check the log and the
# counters, destroy.  EXPECT_BOUNCE=user: also check that the bounce
# buffer is our memory, registered again by the recovered daemons.
recover_matrix() {
    _mn=$1 _mq=$2 _mr=$3 _mk=$4; shift 4
    vdev_create "$_mn" "$@" --queues "$_mq" --ring "$_mr"
    # A failure between a kill and its recover would leave the guest's
    # I/O (and so the cleanup's detach) waiting forever: recover first.
    on_exit "vdusectl recover '$_mn' >/dev/null 2>&1"
    _mnode=$(vdev_attach "$_mn") || exit 1
    nq=$(ls -d /sys/block/${_mnode#/dev/}/mq/* | wc -l)
    assert_eq "$nq" "$_mq" "$_mnode hardware queues"
    kill_loop "$_mn" "$_mnode" "$_mk" "${RECOVER:-recover}"
    if [ -n "${EXPECT_BOUNCE:-}" ]; then
        # The bounce buffer: our memory (REG_UMEM) was registered while
        # every kill hit, and each recovered daemon registered again.
        run dd if="$_mnode" of=/dev/null bs=4k count=16 iflag=direct
        vdusectl show "$_mn" --json >"$VDU_SCRATCH/rb.json" || fail "show $_mn --json failed"
        assert_eq "$(jqv "$VDU_SCRATCH/rb.json" .bounce.mode)" "$EXPECT_BOUNCE" \
            "$_mn: bounce buffer after $_mk recoveries"
        _regs=$(grep -c 'of our memory registered' "$VCTL_STATE/$_mn.log")
        [ "$_regs" -ge "$_mk" ] ||
            fail "$_mn: our memory registered $_regs times over $_mk recoveries"
        log "$_mn: bounce buffer registered $_regs times"
    fi
    _nrec=$(grep -c 'reconnected' "$VCTL_STATE/$_mn.log")
    assert_eq "$_nrec" "$_mk" "$_mn: reconnects logged"
    log "$_mn ($_mq queue(s), $_mr ring): $_mk kills over $ROUNDS fio round(s), $(resubmitted "$_mn") request(s) resubmitted in all"
    ! grep -q 'inconsistent\|malformed' "$VCTL_STATE/$_mn.log" ||
        fail "$_mn: $(grep 'inconsistent\|malformed' "$VCTL_STATE/$_mn.log" | head -n 1)"
    run vdusectl destroy "$_mn" --force
    wait_for_gone "/dev/vduse/$_mn"
    dmesg_check
}
