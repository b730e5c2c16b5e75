#!/bin/bash
# endpoint: dem-em (dem's endpoint manager) in the guest, on the guest kernel's real nvmet
# configfs, configured by dem on this machine (REST API on a free port, no entries file)
# through dem-cli:
#   - dem serves its API over TLS (its fabric CA; --tls-name 10.0.2.2, the address the guest
#     reaches it at); dem-cli makes a one-time join token; dem-em enrols with it and the CA's
#     fingerprint (no fabric.key is copied), then joins dem with its certificate (POST
#     /dem/join over 10.0.2.2); dem reaches dem-em's API over mutual TLS through a qemu port
#     forward, and lists target t1 as reachable; the used join token is refused again;
#   - dem-em's API refuses a client without a certificate, with another CA's, and the fabric
#     credential in their place, and answers dem's certificate (curl);
#   - a tshark capture of the management ports (dem's API, dem-em's) holds TLS records only;
#   - dem-cli defines port 1 (tcp 10.0.2.15:4420) and a restricted subsystem with a null_blk
#     namespace whose access list holds h1 (the guest's host NQN): dem pushes it to dem-em,
#     the configfs tree shows it, and dem serves the entry once dem-em reports it live;
#   - the guest discovers it through dem, connects (connect-all) and does O_DIRECT I/O;
#   - dem-em is restarted (SIGTERM, same data directory) while O_DIRECT I/O keeps running:
#     the I/O never fails, the restarted dem-em makes no configfs change, the kernel target
#     exports the same, and dem sees the target reachable and serving again;
#   - the fabric CA is rotated (dem-cli rotate ca 600): dem-em gets a certificate of the new CA
#     and trusts both; finished (dem-cli rotate ca finish), it trusts the new CA alone, answers
#     dem's new certificate, and stays managed; testssl.sh finds its listener TLS 1.3 only, AEAD
#     ciphers only, and its chain of trust good for the new CA;
#   - dem-cli deletes the subsystem: it leaves configfs (directory and port link), the
#     persistent discovery controller gets the discovery-change AEN and its re-read no longer
#     lists it;
#   - local management: a subsystem on port 2 (10.0.2.15:4421) made by hand in configfs;
#     target t2 (LocalMgmt) reads it through the target's own discovery controller (its
#     in-band interface: a port forward to 10.0.2.15:4421), the guest gets an AEN and sees it
#     through dem; dem-em leaves the objects it did not create alone.
# needs: dem-cli dem-em
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source-path=SCRIPTDIR source=../host/lib.sh
. "$HERE/../host/lib.sh"
scenario_begin endpoint

GUEST_CHECKS="em-enrolled em-start-join configfs-port configfs-namespace configfs-acl discover-lists-subsystem
 connect-all connect-all-namespace direct-io em-stop-clean em-restart-join em-restart-no-configfs-ops
 em-restart-export-unchanged em-status-no-drift io-during-restart disconnect-io persistent-discover
 aen-on-delete configfs-subsystem-removed persistent-reread-hides-deleted local-target-setup
 aen-on-local-add persistent-reread-shows-local local-discover em-leaves-local-alone
 em-final-stop-clean"
STEP_CHECKS="em-joined-reachable em-api-no-certificate-refused em-api-other-ca-refused
 em-api-fabric-key-refused em-api-dem-certificate-200 join-token-reused-401 cli-configure dem-serves-live-subsystem em-rejoined
 ca-rotation-renews-target ca-rotation-finished em-api-rotated-dem-certificate-200 em-testssl cli-delete local-configure local-harvested"
HOST_CHECKS="join-token mgmt-tls-only"

P=nqn.2024-01.io.example:endpoint
NQN=$P-t1-nullb0 LOCAL_NQN=$P-t2-local
EM_PORT=$(free_port); LOCAL_PORT=$(free_port)
while [ "$LOCAL_PORT" = "$EM_PORT" ]; do LOCAL_PORT=$(free_port); done
API=${DEM_API_PORT:-$(free_port)}
while [ "$API" = "$EM_PORT" ] || [ "$API" = "$LOCAL_PORT" ]; do API=$(free_port); done
param NQN "$NQN"; param LOCAL_NQN "$LOCAL_NQN"
param HOSTNQN "$GUEST_HOSTNQN"; param HOSTID "$GUEST_HOSTID"
param API_PORT "$API"; param EM_FWD_PORT "$EM_PORT"
param EM_LOG_LEVEL "${DEM_EM_LOG_LEVEL:-info}"

# what the guest must see (nvme-cli JSON records: subtype|subnqn|traddr|trsvcid)
DCREC="current discovery subsystem|$DC_NQN|127.0.0.1|$DC_PORT"
E=$SHARE/expect
{ echo "$DCREC"; echo "nvme subsystem|$NQN|10.0.2.15|4420"; } > "$E/initial"
echo "$DCREC" > "$E/deleted"
{ echo "$DCREC"; echo "nvme subsystem|$LOCAL_NQN|10.0.2.15|4421"; } > "$E/local"

# ---------------------------------------------------------------- host steps
# They run while the guest waits: run-guest.sh -H TAG="$(step_cmd step_TAG)" runs them with
# bash -c, as exported functions.  OUT and SCEN go on the command line (run-guest.sh has
# variables of the same names).
step_cmd() { printf 'OUT=%q SCEN=%q %q' "$OUT" "$SCEN" "$1"; }
# em_api NAME WANT [CURL-ARGS...] : dem-em's GET /status through the port forward, over TLS
# with the fabric CA trusted, answers WANT (000: the TLS handshake was refused)
em_api() {
    local name=$1 want=$2 code
    shift 2
    code=$(curl -s -o "$OUT/$name.body" -w '%{http_code}' --max-time 10 --cacert "$DATA/fabric-ca.pem" "$@" \
        "https://127.0.0.1:$EM_PORT/status" 2>"$OUT/$name.err")
    if [ "$code" = "$want" ]; then record PASS "$name"
    else record FAIL "$name" "dem-em's GET /status answered ${code:-nothing} (want $want): $(head -c 200 "$OUT/$name.body" 2>/dev/null) $(head -c 200 "$OUT/$name.err")"; fi
}
# dem-em joined: t1 is listed and reachable (dem got its status through the forward)
step_joined() {
    local t0=$EPOCHREALTIME
    if wait_target t1 20 reachable && dem_cli list target && dem_api GET /dem/targets | grep -q '"Alias":"t1"'; then
        record PASS em-joined-reachable
        echo "t1 reachable after $(elapsed "$t0") s: $TARGET_STATUS"
    else
        record FAIL em-joined-reachable "t1 not listed as reachable within 20 s of dem-em's join: $(printf '%s' "$TARGET_STATUS" | cut -c1-300)"
    fi
    em_api em-api-no-certificate-refused 000
    em_api em-api-other-ca-refused 000 --cert "$OUT/other.pem" --key "$OUT/other.key"
    em_api em-api-fabric-key-refused 000 -H "Authorization: Bearer $(cat "$DATA/fabric.key")"
    em_api em-api-dem-certificate-200 200 --cert "$DATA/dem-api.pem" --key "$DATA/dem-api.key"
    local code
    code=$(curl -s -o "$OUT/reused.body" -w '%{http_code}' --max-time 10 --cacert "$DATA/fabric-ca.pem" -X POST \
        -H "Authorization: Bearer $(cat "$SHARE/join.token")" -H 'Content-Type: application/json' \
        --data '{"Alias":"t1","CSR":"x"}' "$(api_url)/dem/enrol")
    if [ "$code" = 401 ]; then record PASS join-token-reused-401
    else record FAIL join-token-reused-401 "POST /dem/enrol with the used join token answered ${code:-nothing}: $(head -c 200 "$OUT/reused.body")"; fi
}
# dem-cli defines port, subsystem, namespace, host and access list; dem serves the entry once
# dem-em reports the subsystem live on port 1
step_configure() {
    local err="" t0
    cli() { [ -n "$err" ] || dem_cli "$@" || err="dem-cli $* failed: $(tail -n 2 "$OUT/dem-cli.log" | tr '\n' ' ')"; }
    cli set portid t1 1 tcp ipv4 10.0.2.15 4420
    cli set subsystem t1 "$NQN" 0
    cli set ns t1 "$NQN" 1 /dev/nullb0
    cli set host h1 "$GUEST_HOSTNQN" "$GUEST_HOSTID"
    cli set acl t1 "$NQN" h1
    if [ -z "$err" ]; then record PASS cli-configure; else record FAIL cli-configure "$err"; fi
    t0=$EPOCHREALTIME
    if wait_target t1 20 reachable 1 && printf '%s' "$TARGET_STATUS" | grep -qF "\"PortIDs\":[1],\"SUBNQN\":\"$NQN\""; then
        record PASS dem-serves-live-subsystem
        echo "served after $(elapsed "$t0") s: $TARGET_STATUS"
    else
        record FAIL dem-serves-live-subsystem "t1 not reachable with $NQN live on port 1 and served within 20 s: $(printf '%s' "$TARGET_STATUS" | cut -c1-300)"
    fi
    dem_cli get target t1
    dem_cli logpage host h1
}
# after dem-em's restart: reachable and serving again
step_rejoined() {
    local t0=$EPOCHREALTIME
    if wait_target t1 30 reachable 1 && printf '%s' "$TARGET_STATUS" | grep -qF "\"SUBNQN\":\"$NQN\""; then
        record PASS em-rejoined
        echo "reachable and serving after $(elapsed "$t0") s: $TARGET_STATUS"
    else
        record FAIL em-rejoined "t1 not reachable and serving $NQN within 30 s of dem-em's restart: $(printf '%s' "$TARGET_STATUS" | cut -c1-300)"
    fi
    grep -a 'target state changed\|dem-em joined' "$OUT/dem.log" | tail -n 6
    step_rotate
}
# cert_of ALIAS : target ALIAS's certificate as dem's GET /target/ALIAS/status reports it, as
# "issuer trusted-CA..." (fingerprints)
cert_of() {
    dem_api GET "/target/$1/status" | python3 -c 'import json, sys; c = json.load(sys.stdin).get("Certificate") or {}; print(c.get("Issuer", "-"), *c.get("Trusts", []))'
}
# ca_hash FILE : the SHA-256 of the first certificate of FILE, as dem writes it
ca_hash() { openssl x509 -in "$1" -noout -fingerprint -sha256 | sed 's/.*=//; s/://g' | tr 'A-F' 'a-f' | sed 's/^/sha256:/'; }
# the fabric CA is rotated while the guest's dem-em is managed: started with an overlap, dem-em
# gets a certificate of the new CA and trusts both; finished, it trusts the new one alone, takes
# dem's new certificate, and is still managed (the delete that follows goes through it)
step_rotate() {
    local old new cert
    old=$(ca_hash "$DATA/fabric-ca.pem")
    if dem_cli rotate ca 600 && new=$(ca_hash "$DATA/fabric-ca-next.pem") && cert=$(cert_of t1) \
        && [ "$cert" = "$new $old $new" ]; then
        record PASS ca-rotation-renews-target
        echo "rotation started: t1's certificate issued by $new, trusting $old and $new"
    else
        record FAIL ca-rotation-renews-target "dem-cli rotate ca 600: t1 reports '${cert:-}' (want issuer ${new:-?} trusting $old ${new:-?}): $(tail -n 3 "$OUT/dem-cli.log" | tr '\n' ' ')"
    fi
    if dem_cli -f rotate ca finish && cert=$(cert_of t1) && [ "$(ca_hash "$DATA/fabric-ca.pem")" = "$new" ] \
        && [ "$cert" = "$new $new" ] && wait_target t1 20 reachable 1; then
        record PASS ca-rotation-finished
        echo "rotation finished: fabric-ca.pem is $new; t1 trusts it alone and is reachable"
    else
        record FAIL ca-rotation-finished "dem-cli -f rotate ca finish: t1 reports '${cert:-}', fabric-ca.pem $(ca_hash "$DATA/fabric-ca.pem"): $(tail -n 3 "$OUT/dem-cli.log" | tr '\n' ' ') $(printf '%s' "$TARGET_STATUS" | cut -c1-200)"
    fi
    em_api em-api-rotated-dem-certificate-200 200 --cert "$DATA/dem-api.pem" --key "$DATA/dem-api.key"
    # testssl.sh against dem-em's listener (its renewed certificate, the new CA)
    local testssl verdict
    testssl=$(command -v testssl || command -v testssl.sh)
    if [ -z "$testssl" ]; then
        record FAIL em-testssl "testssl.sh is not installed (scripts/test installs it: apt-get install testssl.sh)"
        return
    fi
    rm -f "$OUT/testssl-em.json"
    "$testssl" --quiet --color 0 --warnings off --add-ca "$DATA/fabric-ca.pem" --jsonfile "$OUT/testssl-em.json" \
        -p -s -S "127.0.0.1:$EM_PORT" >"$OUT/testssl-em.log" 2>&1
    if verdict=$(python3 "$TESTSSL_CHECK" "$OUT/testssl-em.json"); then
        record PASS em-testssl
        echo "testssl.sh against dem-em: $verdict"
    else
        record FAIL em-testssl "testssl.sh against dem-em's API: $verdict (see $OUT/testssl-em.log)"
    fi
}
step_delete() {
    if dem_cli -f delete subsystem t1 "$NQN"; then record PASS cli-delete
    else record FAIL cli-delete "dem-cli -f delete subsystem t1 $NQN failed: $(tail -n 2 "$OUT/dem-cli.log" | tr '\n' ' ')"; fi
}
# target t2, managed locally: dem reads its discovery controller at the in-band interface (the
# port forward to the guest's nvmet port 2)
step_local() {
    local err="" t0
    dem_cli add target t2 || err="dem-cli add target t2 failed: $(tail -n 2 "$OUT/dem-cli.log" | tr '\n' ' ')"
    [ -n "$err" ] || dem_cli set local t2 tcp ipv4 127.0.0.1 "$LOCAL_PORT" \
        || err="dem-cli set local t2 tcp ipv4 127.0.0.1 $LOCAL_PORT failed: $(tail -n 2 "$OUT/dem-cli.log" | tr '\n' ' ')"
    [ -n "$err" ] || dem_cli add subsystem t2 "$LOCAL_NQN" || err="dem-cli add subsystem t2 $LOCAL_NQN failed: $(tail -n 2 "$OUT/dem-cli.log" | tr '\n' ' ')"
    if [ -z "$err" ]; then record PASS local-configure; else record FAIL local-configure "$err"; fi
    t0=$EPOCHREALTIME
    if wait_target t2 20 reachable 1; then
        record PASS local-harvested
        echo "t2 harvested and served after $(elapsed "$t0") s: $TARGET_STATUS"
    else
        record FAIL local-harvested "t2 not reachable with its entry served within 20 s: $(printf '%s' "$TARGET_STATUS" | cut -c1-300)"
    fi
    dem_cli get target t2
}
export -f record dem_cli dem_api json_field wait_target elapsed em_api cert_of ca_hash \
    step_joined step_configure step_rejoined step_rotate step_delete step_local
TESTSSL_CHECK=$(cd "$HERE/../../api" && pwd)/testssl-check.py
export RESULTS DATA DEMCLI_BIN NQN LOCAL_NQN EM_PORT LOCAL_PORT GUEST_HOSTNQN GUEST_HOSTID SHARE TESTSSL_CHECK

# dem-em's binary is linked into the share for the boot only
trap 'rm -f "$SHARE/dem-em" "$SHARE/join.token" "$SHARE/ca.hash"; scenario_cleanup' EXIT

capture_start
# the management links: dem's API (administrators, dem-em) and dem-em's (dem, via the forward)
capture_on "$API or tcp port $EM_PORT" "$OUT/mgmt.pcapng" && MGMT_CAP=$CAPTURED
# a client certificate of another CA, which dem-em must refuse
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 -subj "/OU=dem/CN=dem" \
    -keyout "$OUT/other.key" -out "$OUT/other.pem" 2>/dev/null
ALL="$HOST_CHECKS $STEP_CHECKS $GUEST_CHECKS"
if [ -z "${DEMCLI_BIN:-}" ] || [ ! -x "$DEMCLI_BIN" ] || [ -z "${DEMEM_BIN:-}" ] || [ ! -x "$DEMEM_BIN" ]; then
    skip_guest "$ALL" "not run: DEMCLI_BIN '${DEMCLI_BIN:-}' or DEMEM_BIN '${DEMEM_BIN:-}' is not an executable (run.sh builds them)"
elif DEM_NO_ENTRIES=1 dem_start --api-port "$API" --probe-interval 1 --target-timeout 5 --tls-name 10.0.2.2; then
    if ! dem_api_wait; then
        skip_guest "$ALL" "not run: dem's REST API did not come up within 30 s: $(tail -n 1 "$OUT/dem.log")"
    else
        echo "[$SCEN] REST API on 127.0.0.1:$API_PORT; dem-em's API forwarded from 127.0.0.1:$EM_PORT, t2's nvmet port 2 from 127.0.0.1:$LOCAL_PORT"
        export API_PORT
        join_token t1
        share_file "$DEMEM_BIN" dem-em
        : > "$OUT/dem-cli.log"
        run_guest "$HERE/endpoint.guest.sh" "${DEM_INTEROP_BOOT_TIMEOUT:-200}" \
            -f "tcp:127.0.0.1:$EM_PORT-:22334" -f "tcp:127.0.0.1:$LOCAL_PORT-:4421" \
            -H "joined=$(step_cmd step_joined)" -H "configure=$(step_cmd step_configure)" \
            -H "rejoined=$(step_cmd step_rejoined)" -H "delete=$(step_cmd step_delete)" \
            -H "local=$(step_cmd step_local)"
        rm -f "$SHARE/dem-em" "$SHARE/join.token" "$SHARE/ca.hash"
        guest_results "$GUEST_CHECKS"
        step_checks_result "$STEP_CHECKS"
    fi
    dem_stop
else
    skip_guest "$ALL" "not run: dem did not start"
fi
capture_stop
capture_off "${MGMT_CAP:-}"
# dem <-> dem-em and dem-em -> dem: TLS records only, never HTTP (a retransmitted segment
# repeats bytes already sent, which tshark does not dissect again: the original is checked)
m=$OUT/mgmt.pcapng
if [ -s "$m" ]; then
    mt() { tshark -r "$m" -d "tcp.port==$API,tls" -d "tcp.port==$EM_PORT,tls" "$@" 2>> "$OUT/tshark-read.err"; }
    clear=$(mt -Y 'http || (tcp.len > 0 && !tls && !tcp.reassembled_in && !tcp.analysis.retransmission && !tcp.analysis.spurious_retransmission)' | wc -l)
    hellos=$(mt -Y 'tls.handshake.type == 1' | wc -l)
    # TLS 1.3 records carry application data under the outer (opaque) type 23
    appdata=$(mt -Y 'tls.record.opaque_type == 23 || tls.record.content_type == 23' | wc -l)
    em_appdata=$(mt -Y "tcp.port == $EM_PORT && (tls.record.opaque_type == 23 || tls.record.content_type == 23)" | wc -l)
    if [ "$clear" = 0 ] && [ "$hellos" -ge 2 ] && [ "$appdata" -ge 1 ] && [ "$em_appdata" -ge 1 ]; then
        record PASS mgmt-tls-only
        echo "management capture: $hellos ClientHellos, $appdata frames of TLS application data ($em_appdata to or from dem-em), no clear payload"
    else
        record FAIL mgmt-tls-only "$clear frames with clear payload, $hellos ClientHellos, $appdata TLS application-data frames ($em_appdata on dem-em's port): $(mt -Y 'http || (tcp.len > 0 && !tls && !tcp.reassembled_in && !tcp.analysis.retransmission && !tcp.analysis.spurious_retransmission)' | head -n 3)"
    fi
else
    record FAIL mgmt-tls-only "no capture of the management ports"
fi
# shellcheck disable=SC2119  # no digests here
tshark_checks
scenario_end
