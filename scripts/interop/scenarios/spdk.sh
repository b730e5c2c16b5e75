#!/bin/bash
# spdk: dem-em drives SPDK's NVMe-oF target (nvmf_tgt) on this machine, and the Linux 6.1 guest
# uses it through dem. Runs when SPDK_DIR names a built SPDK tree (build/bin/nvmf_tgt,
# scripts/rpc.py); run.sh leaves it out otherwise.
#   - nvmf_tgt starts without hugepages, root-only features or kernel modules (--no-huge -s 1024
#     -u), its RPC socket in the scenario's folder;
#   - dem (REST API over TLS) makes a join token; dem-em --backend spdk --spdk-socket … enrols
#     with it and joins; dem lists target s1 reachable, and `dem-cli get target s1` names the
#     backend (spdk, SPDK's version, the socket);
#   - from then on dem-cli only: port 1 (tcp on this machine's first global IPv4 address, which
#     the guest reaches through qemu's NAT), a restricted subsystem with a 64 MiB RAM bdev
#     (/spdk/malloc/M1/64M) and the guest's host NQN in its access list; SPDK's own rpc.py sees
#     the subsystem, its namespace, the host, the listener and a discovery listener;
#   - the guest discovers it through dem, connects (connect-all) and does O_DIRECT I/O;
#   - nvmf_tgt is killed and started again (it keeps nothing): dem-em notices and applies the
#     desired state again; rpc.py sees the subsystem again, the guest's controller reconnects by
#     itself, the namespace keeps its UUID, and O_DIRECT I/O works again;
#   - dem-cli deletes the subsystem: rpc.py no longer lists it, its bdev is gone, and objects
#     made by hand in SPDK (a subsystem and a bdev) were never touched.
# needs: dem-cli dem-em
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source-path=SCRIPTDIR source=../host/lib.sh
. "$HERE/../host/lib.sh"
scenario_begin spdk

GUEST_CHECKS="discover-lists-subsystem connect-all connect-all-namespace direct-io reconnect-after-restart
 same-namespace-after-restart direct-io-after-restart disconnect"
STEP_CHECKS="spdk-restart-reapplied cli-delete spdk-subsystem-removed spdk-foreign-untouched"
HOST_CHECKS="spdk-started join-token em-joined-reachable cli-configure spdk-has-subsystem cli-shows-backend
 dem-serves-live-subsystem"

NQN=nqn.2024-01.io.example:spdk-s1-m1
FOREIGN_NQN=nqn.2024-01.io.example:spdk-by-hand
SPDK_DIR=${SPDK_DIR:-}
SOCK=$OUT/spdk.sock
SPDK_DISCOVERY=nqn.2014-08.org.nvmexpress.discovery
EM_DATA=$OUT/em-data
EM_PORT=$(free_port); TGT_PORT=$(free_port)
while [ "$TGT_PORT" = "$EM_PORT" ]; do TGT_PORT=$(free_port); done
API=${DEM_API_PORT:-$(free_port)}
while [ "$API" = "$EM_PORT" ] || [ "$API" = "$TGT_PORT" ]; do API=$(free_port); done
# the address SPDK listens on: one the guest reaches through qemu's user-mode NAT, which
# connects from this machine to the address the guest names
TGT_ADDR=$(ip -4 -o addr show scope global 2>/dev/null | awk '{ sub("/.*", "", $4); print $4; exit }')
param NQN "$NQN"; param TGT_ADDR "$TGT_ADDR"; param HOSTNQN "$GUEST_HOSTNQN"; param HOSTID "$GUEST_HOSTID"; param API_PORT "$API"
DCREC="current discovery subsystem|$DC_NQN|127.0.0.1|$DC_PORT"
{ echo "$DCREC"; echo "nvme subsystem|$NQN|$TGT_ADDR|$TGT_PORT"; } > "$SHARE/expect/initial"

# ---------------------------------------------------------------- SPDK and dem-em
TGT_PID="" EM_PID=""
# tgt_start : nvmf_tgt in the background (TGT_PID), its log appended to $OUT/nvmf_tgt.log
tgt_start() {
    echo "+ nvmf_tgt --no-huge -s 1024 -u -r $SOCK" >> "$OUT/nvmf_tgt.log"
    LD_LIBRARY_PATH=$SPDK_DIR/build/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH} setsid "$SPDK_DIR/build/bin/nvmf_tgt" \
        --no-huge -s 1024 -u -r "$SOCK" >> "$OUT/nvmf_tgt.log" 2>&1 < /dev/null &
    TGT_PID=$!
    local _
    for _ in $(seq 1 100); do
        rpc spdk_get_version > /dev/null 2>&1 && return 0
        alive "$TGT_PID" || return 1
        sleep 0.1
    done
    return 1
}
tgt_kill() { [ -n "$TGT_PID" ] && { kill -KILL -- -"$TGT_PID" 2>/dev/null; wait "$TGT_PID" 2>/dev/null; }; TGT_PID=""; }
# rpc ARGS... : SPDK's own rpc.py on the target's socket
rpc() { python3 "$SPDK_DIR/scripts/rpc.py" -s "$SOCK" "$@"; }
# subsystems : nvmf_get_subsystems as "nqn listeners(traddr:trsvcid) hosts allow_any_host
# namespaces(nsid:bdev:uuid)" lines
subsystems() {
    rpc nvmf_get_subsystems | python3 -c '
import json, sys
for s in json.load(sys.stdin):
    print(s["nqn"], ",".join(a["traddr"] + ":" + a["trsvcid"] for a in s.get("listen_addresses", [])),
          ",".join(h["nqn"] for h in s.get("hosts", [])) or "-", s.get("allow_any_host"),
          ",".join("%d:%s:%s" % (n["nsid"], n["bdev_name"], n.get("uuid", "")) for n in s.get("namespaces", [])) or "-")'
}
bdevs() { rpc bdev_get_bdevs | python3 -c 'import json, sys; print(" ".join(sorted(b["name"] for b in json.load(sys.stdin))))'; }
export -f rpc subsystems bdevs
export SPDK_DIR SOCK

# ---------------------------------------------------------------- host steps
step_cmd() { printf 'OUT=%q SCEN=%q %q' "$OUT" "$SCEN" "$1"; }
# nvmf_tgt is killed and started again: dem-em applies the desired state again within 15 s
step_restart() {
    local t0 i=0 line
    kill -KILL "$(cat "$OUT/nvmf_tgt.pid")" 2>/dev/null
    sleep 1
    LD_LIBRARY_PATH=$SPDK_DIR/build/lib setsid "$SPDK_DIR/build/bin/nvmf_tgt" --no-huge -s 1024 -u -r "$SOCK" \
        >> "$OUT/nvmf_tgt.log" 2>&1 < /dev/null &
    echo $! > "$OUT/nvmf_tgt.pid"
    t0=$EPOCHREALTIME
    # whole again: listener, host and namespace (with its UUID) as before the restart
    while [ $i -lt 150 ]; do
        line=$(subsystems 2>/dev/null | grep -F "$NQN ")
        [ "$line" = "$(cat "$OUT/subsystem.before")" ] && break
        sleep 0.1; i=$((i+1))
    done
    if [ -n "$line" ] && [ "$line" = "$(cat "$OUT/subsystem.before")" ]; then
        record PASS spdk-restart-reapplied
        echo "nvmf_tgt restarted: dem-em made $NQN again after $(elapsed "$t0") s: $line"
    else
        record FAIL spdk-restart-reapplied "after nvmf_tgt's restart rpc.py shows '${line:-nothing}' (before: $(cat "$OUT/subsystem.before")) within 15 s"
    fi
    grep -a 'new connection\|desired state applied' "$OUT/dem-em.log" | tail -n 3
    # SPDK kept nothing of what was made by hand either: made again, never to be touched
    rpc bdev_malloc_create -b byhand 8 512 > /dev/null && rpc nvmf_create_subsystem "$FOREIGN_NQN" -a > /dev/null
}
# dem-cli deletes the subsystem: gone from SPDK with its bdev; the objects made by hand stay
step_delete() {
    local i=0
    if dem_cli -f delete subsystem s1 "$NQN"; then record PASS cli-delete
    else record FAIL cli-delete "dem-cli -f delete subsystem s1 $NQN failed: $(tail -n 2 "$OUT/dem-cli.log" | tr '\n' ' ')"; fi
    while subsystems | grep -qF "$NQN " && [ $i -lt 100 ]; do sleep 0.1; i=$((i+1)); done
    if ! subsystems | grep -qF "$NQN " && ! bdevs | grep -qw M1; then
        record PASS spdk-subsystem-removed
    else
        record FAIL spdk-subsystem-removed "rpc.py still shows: $(subsystems | grep -F "$NQN ") bdevs: $(bdevs)"
    fi
    if subsystems | grep -qF "$FOREIGN_NQN " && bdevs | grep -qw byhand; then record PASS spdk-foreign-untouched
    else record FAIL spdk-foreign-untouched "the subsystem or bdev made by hand is gone: $(subsystems | tr '\n' ';') bdevs: $(bdevs)"; fi
    echo "SPDK now: $(subsystems | tr '\n' ';') bdevs: $(bdevs)"
}
export -f record dem_cli dem_api json_field wait_target elapsed step_restart step_delete
export RESULTS DATA DEMCLI_BIN NQN FOREIGN_NQN

trap 'tgt_kill; [ -n "$EM_PID" ] && { kill -TERM "$EM_PID" 2>/dev/null; wait "$EM_PID" 2>/dev/null; }; kill -KILL "$(cat "$OUT/nvmf_tgt.pid" 2>/dev/null)" 2>/dev/null; scenario_cleanup' EXIT

ALL="$HOST_CHECKS $STEP_CHECKS $GUEST_CHECKS"
if [ -z "$SPDK_DIR" ] || [ ! -x "$SPDK_DIR/build/bin/nvmf_tgt" ] || [ ! -f "$SPDK_DIR/scripts/rpc.py" ]; then
    skip_guest "$ALL" "not run: SPDK_DIR '${SPDK_DIR}' has no build/bin/nvmf_tgt and scripts/rpc.py"
    scenario_end; exit 0
fi
if [ -z "$TGT_ADDR" ]; then
    skip_guest "$ALL" "not run: this machine has no global IPv4 address for SPDK to listen on that the guest can reach"
    scenario_end; exit 0
fi
if tgt_start; then
    record PASS spdk-started
    echo "$TGT_PID" > "$OUT/nvmf_tgt.pid"
    echo "[$SCEN] $(rpc spdk_get_version | python3 -c 'import json, sys; print(json.load(sys.stdin)["version"])') on $SOCK"
    # made by hand, before dem-em: never to be touched
    rpc bdev_malloc_create -b byhand 8 512 > /dev/null && rpc nvmf_create_subsystem "$FOREIGN_NQN" -a > /dev/null
else
    record FAIL spdk-started "nvmf_tgt did not answer on $SOCK within 10 s: $(tail -n 3 "$OUT/nvmf_tgt.log" | tr '\n' ' ')"
fi
if [ -z "$TGT_PID" ]; then
    skip_guest "$(echo "$ALL" | sed 's/spdk-started//')" "not run: nvmf_tgt did not start"
elif [ -z "${DEMCLI_BIN:-}" ] || [ ! -x "$DEMCLI_BIN" ] || [ -z "${DEMEM_BIN:-}" ] || [ ! -x "$DEMEM_BIN" ]; then
    skip_guest "$(echo "$ALL" | sed 's/spdk-started//')" "not run: DEMCLI_BIN or DEMEM_BIN is not an executable (run.sh builds them)"
elif DEM_NO_ENTRIES=1 dem_start --api-port "$API" --probe-interval 1 --target-timeout 5 --tls-name 10.0.2.2; then
    dem_api_wait
    export API_PORT
    : > "$OUT/dem-cli.log"
    join_token s1
    # dem-em as a new user starts it: the backend, the socket, the join URL, the token and the CA
    echo "+ dem-em --backend spdk --spdk-socket $SOCK --join https://127.0.0.1:$API_PORT --token … --ca-hash … --alias s1"
    setsid "$DEMEM_BIN" --backend spdk --spdk-socket "$SOCK" --data-dir "$EM_DATA" \
        --api-address 127.0.0.1 --api-port "$EM_PORT" --join "https://127.0.0.1:$API_PORT" \
        --token "$(cat "$SHARE/join.token")" --ca-hash "$(cat "$SHARE/ca.hash")" --alias s1 --check-interval 2 \
        --log-level info > "$OUT/dem-em.log" 2>&1 < /dev/null &
    EM_PID=$!
    if wait_target s1 60 reachable; then record PASS em-joined-reachable
    else record FAIL em-joined-reachable "s1 not reachable within 60 s: $(printf '%s' "$TARGET_STATUS" | cut -c1-300); $(tail -n 3 "$OUT/dem-em.log" | tr '\n' ' ')"; fi
    err=""
    cli() { [ -n "$err" ] || dem_cli "$@" || err="dem-cli $* failed: $(tail -n 2 "$OUT/dem-cli.log" | tr '\n' ' ')"; }
    cli set portid s1 1 tcp ipv4 "$TGT_ADDR" "$TGT_PORT"
    cli set subsystem s1 "$NQN" 0
    cli set ns s1 "$NQN" 1 /spdk/malloc/M1/64M
    cli set host h1 "$GUEST_HOSTNQN" "$GUEST_HOSTID"
    cli set acl s1 "$NQN" h1
    if [ -z "$err" ]; then record PASS cli-configure; else record FAIL cli-configure "$err"; fi
    if wait_target s1 20 reachable 1; then record PASS dem-serves-live-subsystem
    else record FAIL dem-serves-live-subsystem "s1 not reachable with $NQN served within 20 s: $(printf '%s' "$TARGET_STATUS" | cut -c1-300)"; fi
    line=$(subsystems | grep -F "$NQN ")
    echo "rpc.py nvmf_get_subsystems: $line"
    echo "$line" > "$OUT/subsystem.before"
    want="$NQN $TGT_ADDR:$TGT_PORT $GUEST_HOSTNQN False 1:M1:"
    if [ "${line#"$want"}" != "$line" ] && subsystems | grep -F "$SPDK_DISCOVERY " | grep -qF "$TGT_ADDR:$TGT_PORT"; then
        record PASS spdk-has-subsystem
    else
        record FAIL spdk-has-subsystem "rpc.py shows '$line' (want '$want…') and discovery: $(subsystems | grep -F "$SPDK_DISCOVERY ")"
    fi
    dem_cli get target s1
    if grep -q "Backend.*spdk (SPDK v[0-9.]* .*) at $SOCK" "$OUT/dem-cli.log"; then record PASS cli-shows-backend
    else record FAIL cli-shows-backend "dem-cli get target s1 does not name the backend: $(grep -i backend "$OUT/dem-cli.log" | tail -n 1)"; fi
    run_guest "$HERE/spdk.guest.sh" "${DEM_INTEROP_BOOT_TIMEOUT:-200}" \
        -H "restart=$(step_cmd step_restart)" -H "delete=$(step_cmd step_delete)"
    guest_results "$GUEST_CHECKS"
    step_checks_result "$STEP_CHECKS"
    kill -TERM "$EM_PID" 2>/dev/null; wait "$EM_PID" 2>/dev/null; EM_PID=""
    dem_stop
else
    skip_guest "$(echo "$ALL" | sed 's/spdk-started//')" "not run: dem did not start"
fi
scenario_end
