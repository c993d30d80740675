#!/bin/sh
# vdu-timeout: 240
# nbd backend over TLS (nbds://) against servers in the guest, with
# certificates and PSKs made here by certtool/psktool:
#  1. nbdkit --tls=require --tls-verify-peer (memory plugin), 2 queues x 2
#     multi-conn connections, client certificate: fio crc32c verify, and
#     every connection nbdkit saw was TLS;
#  2. nbdkit (file plugin, so the data survives) killed with SIGKILL and
#     restarted under fio verify: zero errors, the reconnects are TLS too;
#  3. qemu-nbd with tls-creds-x509 (client certificate required), 2 queues
#     x 2 connections: fio verify;
#  4. PSK (nbdkit --tls-psk): a pattern written and read back;
#  5. refusals, one stderr line each and no device left: nbd:// to a
#     TLS-only server, nbds:// to a plain one, an untrusted CA, a wrong
#     tls-hostname, a wrong PSK.  The saved state and the daemon log hold
#     paths, never key material.
. "$VDU_TESTDIR/cli-lib.sh"
. "$VDU_TESTDIR/lib-file.sh"
. "$VDU_TESTDIR/lib-tcp.sh"
. "$VDU_TESTDIR/lib-recover.sh"
need_cmd fio nbdkit qemu-nbd certtool psktool ip
nbdkit --dump-config 2>/dev/null | grep -qx 'tls=yes' || skip "nbdkit built without TLS"
ip link set lo up 2>/dev/null || fail "cannot bring lo up"

# ------------------------------------------------------------ the PKI ----
# ca1 signs the server (127.0.0.1 as an IP SAN, localhost) and the client;
# ca2, which nobody trusts, signs server2.  Laid out as nbdkit and qemu
# read them: DIR/{ca-cert,server-cert,server-key}.pem and vdusectl's
# DIR/{ca-cert,client-cert,client-key}.pem.
PKI=$VDU_SCRATCH/pki
mkdir -p "$PKI"
(
    set -e
    cd "$PKI"
    key() { certtool --generate-privkey --key-type=ecdsa --outfile "$1"; }
    ca() {
        key "$1-key.pem"
        printf 'cn = test CA %s\nca\ncert_signing_key\nexpiration_days = 30\n' "$1" >"$1.info"
        certtool --generate-self-signed --load-privkey "$1-key.pem" --template "$1.info" \
            --outfile "$1-cert.pem"
    }
    sign() {
        key "$2-key.pem"
        certtool --generate-certificate --load-privkey "$2-key.pem" \
            --load-ca-certificate "$1-cert.pem" --load-ca-privkey "$1-key.pem" \
            --template "$3" --outfile "$2-cert.pem"
    }
    ca ca1; ca ca2
    printf 'cn = localhost\ndns_name = localhost\nip_address = 127.0.0.1\ntls_www_server\nsigning_key\nencryption_key\nexpiration_days = 30\n' >server.info
    printf 'cn = client\ntls_www_client\nsigning_key\nencryption_key\nexpiration_days = 30\n' >client.info
    sign ca1 server server.info; sign ca2 server2 server.info; sign ca1 client client.info
    mk() { mkdir -p "$1"; cp "$2-cert.pem" "$1/ca-cert.pem"; cp "$3-cert.pem" "$1/$4-cert.pem"; cp "$3-key.pem" "$1/$4-key.pem"; }
    mk srv ca1 server server; mk srv-untrusted ca2 server2 server; mk cli ca1 client client
    # qemu 7.2 generates DH parameters (seconds under TCG) unless given
    # some: the well-known RFC 7919 group, at once
    certtool --get-dh-params --sec-param medium --outfile srv/dh-params.pem
    psktool -u alice -p keys.psk; psktool -u alice -p other.psk
) >"$PKI/pki.log" 2>&1 || { cat "$PKI/pki.log"; fail "certtool/psktool failed"; }
SRV=$PKI/srv CLI=$PKI/cli
log "PKI made in $PKI: $(cd "$PKI" && echo *)"

# ----------------------------------------------------------- servers ----
# tcp_wait_listen PORT: wait up to 30 s until something listens on
# 127.0.0.1:PORT (/proc/net/tcp, state 0A)
tcp_wait_listen() {
    _hp=$(printf '%04X' "$1") _t0=$(cut -d. -f1 /proc/uptime)
    while ! awk -v a="0100007F:$_hp" '$2 == a && $4 == "0A" { f = 1 } END { exit !f }' /proc/net/tcp; do
        [ $(($(cut -d. -f1 /proc/uptime) - _t0)) -lt 30 ] ||
            fail "nothing listens on 127.0.0.1:$1 after 30 s"
        sleep 0.1
    done
}
# kit NAME PORT ARGS...: nbdkit ARGS on 127.0.0.1:PORT, log /scratch/NAME.log
kit() {
    _kn=$1 _kp=$2; shift 2
    nbdkit -f -i 127.0.0.1 -p "$_kp" "$@" >"/scratch/$_kn.log" 2>&1 &
    on_exit "kill $! 2>/dev/null"
    SERVERS="$SERVERS $!"
    tcp_wait_listen "$_kp"
    log "nbdkit $_kn (pid $!) on 127.0.0.1:$_kp: $*"
}
SERVERS=""
P_X509=10810 P_PLAIN=10811 P_UNTRUSTED=10812 P_PSK=10813 P_QEMU=10814
kit x509 $P_X509 -v --tls=require --tls-certificates="$SRV" --tls-verify-peer memory 256M
kit plain $P_PLAIN --tls=off memory 16M
kit untrusted $P_UNTRUSTED --tls=require --tls-certificates="$PKI/srv-untrusted" memory 16M
kit psk $P_PSK --tls=require --tls-psk="$PKI/keys.psk" memory 64M

# no_key_material FILE: neither a PEM block nor a line of a private key
# nor a PSK in FILE
no_key_material() {
    ! grep -q 'BEGIN' "$1" || fail "$1 holds PEM material: $(grep -m1 BEGIN "$1")"
    for _k in "$CLI/client-key.pem" "$SRV/server-key.pem"; do
        _l=$(sed -n 2p "$_k")
        ! grep -qF "$_l" "$1" || fail "$1 holds a line of $_k"
    done
    for _k in "$PKI/keys.psk" "$PKI/other.psk"; do
        _l=$(cut -d: -f2 "$_k")
        ! grep -qF "$_l" "$1" || fail "$1 holds the PSK of $_k"
    done
}

# ------------------------------ 1. X.509, client certificate, multi-conn ----
vdu_create t1 --backend nbd --url "nbds://127.0.0.1:$P_X509/" -o tls-certificates="$CLI" \
    --queues 2 -o connections=2
cat /run/vduse/t1.log
grep -q '2 connection(s) per queue' /run/vduse/t1.log ||
    fail "t1 does not use 2 connections per queue (multi-conn)"
grep -q ', multi-conn,' /run/vduse/t1.log || fail "nbdkit memory does not offer multi-conn"
grep -q 'TLS (X.509, CA ca-cert.pem, client certificate, TLS1\.' /run/vduse/t1.log ||
    fail "t1's log does not show TLS with X.509 and a client certificate"
fio_verify_tcp "$VDEV" --numjobs=1
assert_eq "$(stats_errors t1)" 0 "t1: request errors"
# nbdkit -v: one "using TLS on this connection" per connection (the probe
# and 2 x 2), each before its "handshake complete"
ntls=$(grep -c 'debug: using TLS on this connection' /scratch/x509.log)
nhs=$(grep -c 'debug: handshake complete' /scratch/x509.log)
log "nbdkit x509: $nhs connections, $ntls of them TLS"
assert_eq "$ntls" "$nhs" "TLS connections of all connections nbdkit saw"
[ "$ntls" -ge 5 ] || fail "nbdkit saw $ntls TLS connections, expected the probe + 2 queues x 2"
! grep -q 'tls=0' /scratch/x509.log || fail "nbdkit saw a connection without TLS"
# saved state: the directory, no key material; the log: no key material
log "t1.json: $(cat /run/vduse/t1.json)"
grep -qF "$CLI" /run/vduse/t1.json ||
    fail "t1.json does not name $CLI: $(cat /run/vduse/t1.json)"
no_key_material /run/vduse/t1.json
no_key_material /run/vduse/t1.log
vdu_destroy t1
log "1: X.509 + client certificate, 2x2 TLS connections, fio verified"

# ------------------------------------- 2. server SIGKILL + restart under fio ----
NBD_PORT=10809
nbd_start -v --tls=require --tls-certificates="$SRV" --tls-verify-peer
vdu_create t2 --backend nbd --url "nbds://127.0.0.1:$NBD_PORT/" -o tls-certificates="$CLI" \
    --queues 2 -o timeout=30
round=1
fio_bg "$VDEV" "$round"
sleep 1
while ! kill -0 "$FIO_PID" 2>/dev/null; do
    # fio was faster than expected: check the round, take another
    fio_check "$round"
    [ $round -lt 4 ] || fail "fio ended before the server could be killed, $round times"
    round=$((round + 1))
    fio_bg "$VDEV" "$round"
    sleep 0.5
done
nbd_kill KILL
sleep 1
nbd_start -v --tls=require --tls-certificates="$SRV" --tls-verify-peer
fio_check "$round"
# a reconnect left to the back-off timer: one more request waits for it
run dd if="$VDEV" of=/dev/null bs=4k count=1 iflag=direct status=none
grep 'lost\|reconnected\|retrying' /run/vduse/t2.log
grep -q 'lost' /run/vduse/t2.log || fail "the daemon did not notice the outage"
grep -q 'reconnected' /run/vduse/t2.log || fail "no reconnect logged"
assert_eq "$(stats_errors t2)" 0 "t2: request errors"
# both nbdkit runs with -v: the probe and 2 connections, then the 2
# reconnects, all TLS
ntls=$(grep -c 'debug: using TLS on this connection' /scratch/nbdkit.log)
nhs=$(grep -c 'debug: handshake complete' /scratch/nbdkit.log)
log "nbdkit file (both runs): $nhs connections, $ntls of them TLS"
assert_eq "$ntls" "$nhs" "TLS connections of all connections nbdkit saw"
[ "$ntls" -ge 5 ] || fail "nbdkit saw $ntls TLS connections, expected 3 + 2 reconnects"
fio_bg "$VDEV" after
fio_check after
assert_eq "$(stats_errors t2)" 0 "t2: request errors"
no_key_material /run/vduse/t2.log
vdu_destroy t2
log "2: nbdkit killed and restarted under fio: verified, zero errors"

# --------------------------------------------------- 3. qemu-nbd, X.509 ----
truncate -s 64M /scratch/q.img || fail "cannot create /scratch/q.img"
qemu-nbd -f raw -b 127.0.0.1 -p $P_QEMU -t -e 8 \
    --object "tls-creds-x509,id=tls0,dir=$SRV,endpoint=server" --tls-creds tls0 \
    /scratch/q.img >/scratch/qemu-nbd.log 2>&1 &
on_exit "kill $! 2>/dev/null"
QN=$!
tcp_wait_listen $P_QEMU
log "qemu-nbd (pid $QN) on 127.0.0.1:$P_QEMU"
vdu_create t3 --backend nbd --url "nbds://127.0.0.1:$P_QEMU/" -o tls-certificates="$CLI" \
    --queues 2 -o connections=2
cat /run/vduse/t3.log
grep -q 'TLS (X.509, CA ca-cert.pem, client certificate, TLS1\.' /run/vduse/t3.log ||
    fail "t3's log does not show TLS"
grep -q '2 connection(s) per queue' /run/vduse/t3.log ||
    fail "t3 does not use 2 connections per queue (qemu-nbd's multi-conn)"
assert_eq "$(blockdev --getsize64 "$VDEV")" $((64 * 1024 * 1024)) "t3 size"
fio_bg "$VDEV" qemu
fio_check qemu
assert_eq "$(stats_errors t3)" 0 "t3: request errors"
vdu_destroy t3
kill -0 $QN 2>/dev/null || { cat /scratch/qemu-nbd.log; fail "qemu-nbd died"; }
log "3: qemu-nbd with tls-creds-x509: fio verified"

# ------------------------------------------------------------- 4. PSK ----
vdu_create t4 --backend nbd --url "nbds://127.0.0.1:$P_PSK/" \
    -o tls-psk-file="$PKI/keys.psk" -o tls-username=alice
cat /run/vduse/t4.log
grep -q 'TLS (PSK user alice, TLS1\.' /run/vduse/t4.log || fail "t4's log does not show TLS with PSK"
dd if=/dev/urandom of=/scratch/pat bs=64k count=16 status=none || fail "pattern"
for off in 0 37 511; do  # in 64 KiB units: 0, 2.3 MiB, ~32 MiB
    run dd if=/scratch/pat of="$VDEV" bs=64k seek=$off oflag=direct conv=notrunc status=none
done
for off in 0 37 511; do
    rm -f /scratch/back
    run dd if="$VDEV" of=/scratch/back bs=64k skip=$off count=16 iflag=direct status=none
    cmp /scratch/pat /scratch/back || fail "t4: data at $off x 64 KiB differs"
done
assert_eq "$(stats_errors t4)" 0 "t4: request errors"
grep -qF "$PKI/keys.psk" /run/vduse/t4.json || fail "t4.json does not name the PSK file"
no_key_material /run/vduse/t4.json
no_key_material /run/vduse/t4.log
vdu_destroy t4
log "4: PSK: 3 x 1 MiB written and read back"

# -------------------------------------------------------- 5. refusals ----
# refused NAME GREP_REGEX ARGS...: vdusectl create NAME ARGS fails with one
# stderr line matching GREP_REGEX, and leaves no device behind
refused() {
    _rn=$1 _re=$2; shift 2
    vdev_cleanup "$_rn"
    expect_error 1 vdusectl create "$_rn" --backend nbd "$@"
    echo "$err_text" | grep -q -- "$_re" || fail "$_rn: '$_re' not in: $err_text"
    for _f in /dev/vduse/"$_rn" /sys/class/vduse/"$_rn" "$VCTL_STATE/$_rn.json" \
              "$VCTL_STATE/$_rn.pid" "$VCTL_STATE/$_rn.sock"; do
        [ ! -e "$_f" ] || fail "$_rn: a refused create left $_f"
    done
    ! vdusectl list | grep -qw "$_rn" || fail "$_rn: listed after a refused create"
    if [ -e "$VCTL_STATE/$_rn.log" ]; then
        log "$_rn: $VCTL_STATE/$_rn.log stays: $(cat "$VCTL_STATE/$_rn.log")"
        no_key_material "$VCTL_STATE/$_rn.log"
    fi
}
refused r1 'use nbds://' --url "nbd://127.0.0.1:$P_X509/"
refused r2 'does not offer TLS' --url "nbds://127.0.0.1:$P_PLAIN/" -o tls-certificates="$CLI"
refused r3 'NOT trusted.*issuer is unknown' --url "nbds://127.0.0.1:$P_UNTRUSTED/" \
    -o tls-certificates="$CLI"
refused r4 'does not match.*wrong\.example' --url "nbds://127.0.0.1:$P_X509/" \
    -o tls-certificates="$CLI" -o tls-hostname=wrong.example
refused r5 'TLS' --url "nbds://127.0.0.1:$P_PSK/" -o tls-psk-file="$PKI/other.psk" \
    -o tls-username=alice
log "nbdkit psk said: $(tail -n 1 /scratch/psk.log)"
log "5: refusals: one line each, no device left"

for s in $SERVERS $NBD_PID $QN; do
    kill -0 "$s" 2>/dev/null || fail "server $s died during the test"
done
dmesg_check
log "all verified"
