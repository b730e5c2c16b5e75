#!/bin/bash
# replicas: three dem replicas on one PostgreSQL database (a throwaway cluster of this run,
# scripts/postgres-cluster) serve one fabric to the Linux guest's dem-ac, and one of them dies:
#   - the replicas listen on this machine's own address (the guest reaches it through qemu's
#     user network with the destination unchanged), one port each; each lists the others as
#     SUBTYPE 3 entries of the one discovery NQN they share (TP8013);
#   - dem-cli configures the fabric through replica 2: t1 with port 10.0.2.15:4420 (the
#     guest's nvmet) and subsystems A and B for any host;
#   - dem-ac in the guest is given replica 1 only: it connects A and B, and watches replicas 2
#     and 3 from replica 1's page;
#   - replica 1 is killed (SIGKILL); dem-cli adds C through replica 2: dem-ac connects C (the
#     time from dem-cli to the live controller is an INFO line) and no I/O controller was
#     disconnected;
#   - replica 1 starts again on its data directory: its page lists C (the model is the
#     database's), the other replicas list it again, and dem-ac is back on it;
#   - nvme discover gives the guest the same page, GENCTR included, from each replica.
# needs: dem-cli dem-ac
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source-path=SCRIPTDIR source=../host/lib.sh
. "$HERE/../host/lib.sh"
scenario_begin replicas

GUEST_CHECKS="ac-target-setup ac-connects-initial ac-watches-replicas ac-connects-after-failover
 ac-nothing-disconnected ac-back-on-replica1 same-page-on-every-replica"
STEP_CHECKS="postgres-start replicas-start cli-configure replica1-killed cli-add-through-replica2
 replica1-rejoins"
ALL="$GUEST_CHECKS $STEP_CHECKS"

P=nqn.2024-01.io.example:replicas
NQN_A=$P-a NQN_B=$P-b NQN_C=$P-c
param NQN_A "$NQN_A"; param NQN_B "$NQN_B"; param NQN_C "$NQN_C"
# this machine's own address, as the guest reaches it (not 127.0.0.1: qemu's user network
# turns the guest's 10.0.2.2 into it, and the replicas' pages would not name what the guest used)
HOST_IP=$(ip -4 -o route get 1.1.1.1 2>/dev/null | grep -o 'src [0-9.]*' | cut -d' ' -f2)
[ -n "$HOST_IP" ] || HOST_IP=$(ip -4 -o addr show scope global 2>/dev/null | awk '{print $4}' | cut -d/ -f1 | head -n 1)
declare -a RPORT RAPI RPID
for n in 1 2 3; do
    RPORT[n]=$(free_port); RAPI[n]=$(free_port)
done
param R_ADDR "$HOST_IP"; param R1_PORT "${RPORT[1]}"; param R2_PORT "${RPORT[2]}"; param R3_PORT "${RPORT[3]}"
DC_PORT=${RPORT[1]}   # the capture: replica 1's discovery traffic
PG_DIR=""

# ---------------------------------------------------------------- PostgreSQL and the replicas
STORE_URL="" STORE_PASSWORD=""
postgres_start() {
    local env
    PG_DIR=$(mktemp -d /tmp/dem-interop-pg.XXXXXX); chmod 755 "$PG_DIR"
    if ! env=$("$HERE/../../postgres-cluster" start "$PG_DIR/cluster" 2> "$OUT/postgres.err"); then
        record FAIL postgres-start "scripts/postgres-cluster start: $(tail -n 3 "$OUT/postgres.err" | tr '\n' ' ')"
        return 1
    fi
    STORE_URL=$(echo "$env" | sed -n 's/^DEM_TEST_POSTGRES=//p'); STORE_URL=${STORE_URL%/postgres}/fabric
    STORE_PASSWORD=$(echo "$env" | sed -n 's/^DEM_TEST_POSTGRES_PASSWORD_FILE=//p')
    if PGPASSWORD=$(cat "$STORE_PASSWORD") psql -q "${STORE_URL%/fabric}/postgres" -c "CREATE DATABASE fabric" \
        > "$OUT/postgres.log" 2>&1; then
        record PASS postgres-start
    else
        record FAIL postgres-start "CREATE DATABASE fabric: $(tail -n 2 "$OUT/postgres.log" | tr '\n' ' ')"
        return 1
    fi
}
postgres_stop() { [ -n "$PG_DIR" ] && "$HERE/../../postgres-cluster" stop "$PG_DIR/cluster"; rm -rf "$PG_DIR"; PG_DIR=""; }
# replica_start N : dem serve on HOST_IP:RPORT[N] (REST API on 127.0.0.1:RAPI[N]) with its own
# data directory, on the shared store; waits until it listens (30 s)
replica_start() {
    local n=$1 _ nqn=()
    [ "$n" = 1 ] && nqn=(--dc-nqn "$DC_NQN")
    mkdir -p "$DATA/r$n"
    setsid "$DEM_BIN" serve --address "$HOST_IP" --port "${RPORT[n]}" --api-port "${RAPI[n]}" \
        --data-dir "$DATA/r$n" "${nqn[@]}" --store "$STORE_URL" --store-password-file "$STORE_PASSWORD" \
        --unreachable keep --no-mdns --log-level "${DEM_LOG_LEVEL:-debug}" \
        >> "$OUT/dem-r$n.stdout" 2>> "$OUT/dem-r$n.log" < /dev/null &
    RPID[n]=$!
    for _ in $(seq 1 300); do
        ss -Hltn "sport = :${RPORT[n]}" 2>/dev/null | grep -q . && return 0
        alive "${RPID[n]}" || return 1
        sleep 0.1
    done
    return 1
}
replica_kill() { [ -n "${RPID[$1]:-}" ] && { kill -KILL -- -"${RPID[$1]}" 2>/dev/null; wait "${RPID[$1]}" 2>/dev/null; }; RPID[$1]=""; }
# cli N ARGS... : dem-cli through replica N (its REST API, its fabric CA; the admin token of
# replica 2, which every replica accepts: the tokens are the database's)
cli() { local n=$1; shift; DATA=$DATA/r$n API_PORT=${RAPI[n]} dem_cli "$@"; }
# lists N TEXT... : replica N's page for h1 (dem-cli logpage) has every TEXT
lists() {
    local n=$1 t; shift
    cli "$n" logpage host h1 || return 1
    awk '/^\$ dem-cli /{ out = "" } { out = out $0 "\n" } END { printf "%s", out }' "$OUT/dem-cli.log" > "$OUT/page-r$n.txt"
    for t in "$@"; do grep -qF -- "$t" "$OUT/page-r$n.txt" || return 1; done
}

# main_step kill1 | restart1 (run_guest_serving, in this shell)
main_step() {
    local t0 t1 i
    case $1 in
    kill1)
        replica_kill 1
        if ss -Hltn "sport = :${RPORT[1]}" | grep -q .; then record FAIL replica1-killed "its port still listens"; return 1; fi
        record PASS replica1-killed
        t0=$EPOCHREALTIME
        if cli 2 add subsystem t1 "$NQN_C"; then
            t1=$EPOCHREALTIME
            record PASS cli-add-through-replica2
            echo "$t0 $t1" > "$OUT/timing-add-c"
        else
            record FAIL cli-add-through-replica2 "dem-cli add subsystem t1 $NQN_C through replica 2: $(tail -n 2 "$OUT/dem-cli.log" | tr '\n' ' ')"
            return 1
        fi
        ;;
    restart1)
        if ! replica_start 1; then record FAIL replica1-rejoins "replica 1 did not start again: $(tail -n 1 "$OUT/dem-r1.log")"; return 1; fi
        # replica 1 serves C (the database's model), and the others list it again within 10 s
        for i in $(seq 1 50); do
            lists 1 "$NQN_C" && lists 2 "$HOST_IP" "${RPORT[1]}" && break
            sleep 0.2
        done
        if lists 1 "$NQN_C" "${RPORT[2]}" "${RPORT[3]}" && lists 2 "${RPORT[1]}"; then record PASS replica1-rejoins
        else record FAIL replica1-rejoins "after its restart: replica 1's page $(tr '\n' ' ' < "$OUT/page-r1.txt" | head -c 400); replica 2's $(tr '\n' ' ' < "$OUT/page-r2.txt" | head -c 400)"; fi
        ;;
    *) return 1 ;;
    esac
}

configure() {
    : > "$OUT/dem-cli.log"
    local err=""
    c() { [ -n "$err" ] || cli 2 "$@" || err="dem-cli $* failed: $(tail -n 2 "$OUT/dem-cli.log" | tr '\n' ' ')"; }
    c add target t1
    c set portid t1 1 tcp ipv4 10.0.2.15 4420
    c add subsystem t1 "$NQN_A"
    c add subsystem t1 "$NQN_B"
    c set host h1 "$GUEST_HOSTNQN" "$GUEST_HOSTID"
    # replica 1 has the change: its page lists A and B, and the other replicas' ports
    if [ -z "$err" ]; then
        local i
        for i in $(seq 1 50); do lists 1 "$NQN_A" "$NQN_B" "${RPORT[2]}" "${RPORT[3]}" && break; sleep 0.2; done
        lists 1 "$NQN_A" "$NQN_B" "${RPORT[2]}" "${RPORT[3]}" \
            || err="replica 1's page does not list A, B and replicas 2 and 3 within 10 s: $(tr '\n' ' ' < "$OUT/page-r1.txt" | head -c 400)"
    fi
    if [ -z "$err" ]; then record PASS cli-configure; else record FAIL cli-configure "$err"; fi
    [ -z "$err" ]
}

cleanup_replicas() { for n in 1 2 3; do replica_kill $n; done; postgres_stop; }
trap 'rm -f "$SHARE/dem-ac"; cleanup_replicas; scenario_cleanup' EXIT

capture_start
if [ -z "${DEMCLI_BIN:-}" ] || [ ! -x "$DEMCLI_BIN" ] || [ -z "${DEMAC_BIN:-}" ] || [ ! -x "$DEMAC_BIN" ]; then
    skip_guest "$ALL" "not run: DEMCLI_BIN '${DEMCLI_BIN:-}' or DEMAC_BIN '${DEMAC_BIN:-}' is not an executable (run.sh builds them)"
elif [ -z "$HOST_IP" ]; then
    skip_guest "$ALL" "not run: this machine has no IPv4 address but 127.0.0.1 for the guest to reach the replicas at"
elif ! postgres_start; then
    skip_guest "${ALL#postgres-start}" "not run: no PostgreSQL"
elif ! { replica_start 1 && replica_start 2 && replica_start 3; }; then
    record FAIL replicas-start "a replica did not start: $(for n in 1 2 3; do tail -n 1 "$OUT/dem-r$n.log"; done | tr '\n' ' ')"
    skip_guest "${ALL#postgres-start replicas-start}" "not run: the replicas did not start"
else
    record PASS replicas-start
    echo "[$SCEN] replicas at $HOST_IP:${RPORT[1]} ${RPORT[2]} ${RPORT[3]} (REST API on 127.0.0.1:${RAPI[1]} ${RAPI[2]} ${RAPI[3]}), store $STORE_URL"
    for i in $(seq 1 300); do grep -aq 'REST API listening' "$OUT/dem-r2.log" && break; sleep 0.1; done
    if ! configure; then
        skip_guest "$GUEST_CHECKS replica1-killed cli-add-through-replica2 replica1-rejoins" "not run: configuring the fabric through replica 2 failed"
    else
        share_file "$DEMAC_BIN" dem-ac
        run_guest_serving "$HERE/replicas.guest.sh" "${DEM_INTEROP_BOOT_TIMEOUT:-200}" \
            -H "kill1=$(main_step_cmd kill1)" \
            -H "restart1=$(main_step_cmd restart1 60)"
        rm -f "$SHARE/dem-ac"
        guest_results "$GUEST_CHECKS"
        guest_notes
        step_checks_result "$STEP_CHECKS"
        if read -r t0 t1 < "$OUT/timing-add-c" 2>/dev/null; then
            note failover-add "dem-cli add subsystem through replica 2 took $(ms_between "$t0" "$t1") ms, replica 1 dead (the guest's side: failover-connect)"
        fi
    fi
fi
capture_stop
# shellcheck disable=SC2119  # no digests here
tshark_checks
scenario_end
