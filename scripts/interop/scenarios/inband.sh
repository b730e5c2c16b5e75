#!/bin/bash
# inband: dem manages dem-em over the storage fabric only. dem-em runs in the guest on the
# guest kernel's real nvmet configfs with its REST API on the guest's loopback (no management
# network) and its in-band channel on NVMe/TCP port 22335; dem, on this machine, reaches that
# channel through a qemu port forward, as an NVMe/TCP host under a fixed host NQN on dem-em's
# allow-list:
#   - dem-em enrols first (a one-time join token from dem-cli, the fabric CA's fingerprint, dem's
#     API over TLS at 10.0.2.2, which --tls-name adds to dem's certificate): it gets its
#     certificate and a credential of its own (derived from dem's fabric credential, which stays
#     on this machine) that the in-band channel authenticates with, so no fabric.key is copied;
#   - dem-cli makes t1 an InBandMgmt target and defines port 1 (tcp 10.0.2.15:4420) and a
#     restricted subsystem with a null_blk namespace for h1 (the guest's host NQN): dem
#     authenticates, pushes it in NVMe-MI commands, dem-em writes configfs, and dem serves the
#     entry once dem-em reports it live;
#   - the guest discovers it through dem, connects (connect-all) and does O_DIRECT I/O;
#   - the guest's kernel host, which is not dem, connects to the management NQN and is refused
#     (Connect Invalid Host: "not allowed" in dmesg), and dem-em logs the refusal;
#   - dem-cli deletes the subsystem: dem-em removes it from configfs;
#   - tshark decodes the in-band traffic (ICReq, Connect, NVMe-MI commands) with no malformed
#     frame.
# needs: dem-cli dem-em
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source-path=SCRIPTDIR source=../host/lib.sh
. "$HERE/../host/lib.sh"
scenario_begin inband

GUEST_CHECKS="em-enrolled em-start-inband configfs-port configfs-namespace configfs-acl discover-lists-subsystem
 connect-all connect-all-namespace direct-io disconnect-io not-dem-refused em-logged-refusal
 configfs-subsystem-removed em-final-stop-clean"
STEP_CHECKS="inband-configure dem-serves-live-subsystem inband-own-credential cli-delete"
HOST_CHECKS="join-token tshark-channel-decode tshark-channel-clean"

P=nqn.2024-01.io.example:inband
NQN=$P-t1-nullb0
IB_PORT=$(free_port)
API=${DEM_API_PORT:-$(free_port)}
while [ "$API" = "$IB_PORT" ]; do API=$(free_port); done
DEM_HOSTNQN=nqn.2014-08.org.nvmexpress:uuid:5e1f0d2c-3b4a-4c5d-8e6f-7a8b9c0d1e2f
MGMT_NQN=nqn.2014-08.org.nvmexpress.dem:em:t1
param NQN "$NQN"; param MGMT_NQN "$MGMT_NQN"; param DEM_HOSTNQN "$DEM_HOSTNQN"; param API_PORT "$API"
param HOSTNQN "$GUEST_HOSTNQN"; param HOSTID "$GUEST_HOSTID"
param EM_LOG_LEVEL "${DEM_EM_LOG_LEVEL:-info}"

DCREC="current discovery subsystem|$DC_NQN|127.0.0.1|$DC_PORT"
E=$SHARE/expect
{ echo "$DCREC"; echo "nvme subsystem|$NQN|10.0.2.15|4420"; } > "$E/initial"

# ---------------------------------------------------------------- host steps
step_cmd() { printf 'OUT=%q SCEN=%q %q' "$OUT" "$SCEN" "$1"; }
# t1 managed in band only: its Interface is the forward to the guest's port 22335
step_configure() {
    local err="" t0
    cli() { [ -n "$err" ] || dem_cli "$@" || err="dem-cli $* failed: $(tail -n 2 "$OUT/dem-cli.log" | tr '\n' ' ')"; }
    cli add target t1
    cli set inband t1 tcp ipv4 127.0.0.1 "$IB_PORT"
    cli set portid t1 1 tcp ipv4 10.0.2.15 4420
    cli set subsystem t1 "$NQN" 0
    cli set ns t1 "$NQN" 1 /dev/nullb0
    cli set host h1 "$GUEST_HOSTNQN" "$GUEST_HOSTID"
    cli set acl t1 "$NQN" h1
    if [ -z "$err" ]; then record PASS inband-configure; else record FAIL inband-configure "$err"; fi
    t0=$EPOCHREALTIME
    if wait_target t1 40 reachable 1 && printf '%s' "$TARGET_STATUS" | grep -qF "\"PortIDs\":[1],\"SUBNQN\":\"$NQN\""; then
        record PASS dem-serves-live-subsystem
        echo "served after $(elapsed "$t0") s: $TARGET_STATUS"
    else
        record FAIL dem-serves-live-subsystem "t1 not reachable in band with $NQN live on port 1 and served within 40 s: $(printf '%s' "$TARGET_STATUS" | cut -c1-300)"
    fi
    dem_cli get target t1
    # the channel authenticated with t1's own credential: dem recorded the enrolment, and never
    # said that t1 uses the fabric credential
    if grep -q '"t1"' "$DATA/enrolled-targets.json" 2>/dev/null && ! grep -q 'uses the fabric credential' "$OUT/dem.log"; then
        record PASS inband-own-credential
    else
        record FAIL inband-own-credential "t1 is not in $DATA/enrolled-targets.json, or dem used the fabric credential with it: $(grep -m 1 'uses the fabric credential' "$OUT/dem.log")"
    fi
}
step_delete() {
    if dem_cli -f delete subsystem t1 "$NQN"; then record PASS cli-delete
    else record FAIL cli-delete "dem-cli -f delete subsystem t1 $NQN failed: $(tail -n 2 "$OUT/dem-cli.log" | tr '\n' ' ')"; fi
}
export -f record dem_cli dem_api json_field wait_target elapsed step_configure step_delete
export RESULTS DATA DEMCLI_BIN NQN IB_PORT GUEST_HOSTNQN GUEST_HOSTID

# tshark on the in-band forward: the NVMe/TCP association between dem and dem-em
ib_tshark_checks() {
    local f=$OUT/inband.pcapng dec="-d tcp.port==$IB_PORT,nvme-tcp" icreq connect mi bad
    if [ ! -s "$f" ]; then
        record FAIL tshark-channel-decode "no capture file"; record FAIL tshark-channel-clean "no capture file"; return
    fi
    # shellcheck disable=SC2086
    tshark -r "$f" $dec -Y nvme-tcp -V > "$OUT/tshark-inband-verbose.txt" 2> "$OUT/tshark-inband-read.err"
    # shellcheck disable=SC2086
    icreq=$(tshark -r "$f" $dec -Y 'nvme-tcp.type == 0' -T fields -e frame.number 2>/dev/null | wc -l)
    connect=$(grep -c "Fabric Cmd: Connect\|Command: Connect\|Fabrics Type: Connect" "$OUT/tshark-inband-verbose.txt")
    # shellcheck disable=SC2086
    mi=$(tshark -r "$f" $dec -Y 'nvme.cmd.opc == 0x1d || nvme.cmd.opc == 0x1e' -T fields -e frame.number 2>/dev/null | wc -l)
    if [ "$icreq" -ge 1 ] && [ "$connect" -ge 1 ] && [ "$mi" -ge 3 ]; then
        record PASS tshark-channel-decode
        echo "[$SCEN] in-band capture: $icreq ICReq, $connect Connect, $mi NVMe-MI Send/Receive commands"
    else
        record FAIL tshark-channel-decode "decoded $icreq ICReq, $connect Connect, $mi NVMe-MI commands (opcode 1Dh/1Eh)"
    fi
    # shellcheck disable=SC2086
    bad=$(tshark -r "$f" $dec -Y '_ws.malformed || _ws.expert.severity >= "error"' -T fields -e frame.number -e _ws.col.Info 2>/dev/null)
    if [ -z "$bad" ]; then record PASS tshark-channel-clean
    else record FAIL tshark-channel-clean "$(printf '%s\n' "$bad" | wc -l) frames malformed or with expert errors, first: $(printf '%s\n' "$bad" | head -n 1 | cut -c1-200)"; fi
}

trap 'rm -f "$SHARE/dem-em" "$SHARE/join.token" "$SHARE/ca.hash"; scenario_cleanup' EXIT

capture_start
ALL="$HOST_CHECKS $STEP_CHECKS $GUEST_CHECKS"
if [ -z "${DEMCLI_BIN:-}" ] || [ ! -x "$DEMCLI_BIN" ] || [ -z "${DEMEM_BIN:-}" ] || [ ! -x "$DEMEM_BIN" ]; then
    skip_guest "$ALL" "not run: DEMCLI_BIN '${DEMCLI_BIN:-}' or DEMEM_BIN '${DEMEM_BIN:-}' is not an executable (run.sh builds them)"
elif DEM_NO_ENTRIES=1 dem_start --api-port "$API" --probe-interval 1 --target-timeout 10 --hostnqn "$DEM_HOSTNQN" \
    --tls-name 10.0.2.2; then
    if ! dem_api_wait; then
        skip_guest "$ALL" "not run: dem's REST API did not come up within 30 s: $(tail -n 1 "$OUT/dem.log")"
    else
        echo "[$SCEN] REST API on 127.0.0.1:$API_PORT; dem-em's in-band channel forwarded from 127.0.0.1:$IB_PORT"
        export API_PORT
        join_token t1
        share_file "$DEMEM_BIN" dem-em
        : > "$OUT/dem-cli.log"
        capture_on "$IB_PORT" "$OUT/inband.pcapng"
        IB_CAP=$CAPTURED
        run_guest "$HERE/inband.guest.sh" "${DEM_INTEROP_BOOT_TIMEOUT:-200}" \
            -f "tcp:127.0.0.1:$IB_PORT-:22335" \
            -H "configure=$(step_cmd step_configure)" -H "delete=$(step_cmd step_delete)"
        capture_off "$IB_CAP"
        rm -f "$SHARE/dem-em" "$SHARE/join.token" "$SHARE/ca.hash"
        guest_results "$GUEST_CHECKS"
        step_checks_result "$STEP_CHECKS"
        ib_tshark_checks
    fi
    dem_stop
else
    skip_guest "$ALL" "not run: dem did not start"
fi
capture_stop
# shellcheck disable=SC2119  # no digests here
tshark_checks
scenario_end
