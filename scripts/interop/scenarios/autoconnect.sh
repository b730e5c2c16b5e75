#!/bin/bash
# autoconnect: the host agents dem-ac (auto-connect) and dem-dm (discovery monitor), static
# builds run as root in the guest from the 9p share, against dem on this machine (REST API on a
# free port, no entries file, --unreachable keep: target t1 is LocalMgmt and dem cannot read
# its discovery controller at the guest's 10.0.2.15, so it serves the model's entries):
#   - the guest's nvmet exports subsystems A, B, C, D and E (memory-backed null_blk, any host)
#     on 10.0.2.15:4420; dem's model (dem-cli) lists A (any host) and B (restricted to h1, the
#     guest's host NQN) on t1's port 1 (tcp 10.0.2.15:4420);
#   - D is connected by hand (nvme connect); dem-dm (watch, --json) and dem-ac
#     (--disconnect removed, host NQN and ID from /etc/nvme) start: dem-ac connects A and B
#     (ctrl_loss_tmo off, the guest's host NQN), dem-dm prints the page;
#   - dem-cli adds C: dem-ac connects it on the change notice; the time from dem-cli to the
#     live controller is measured here (host clock: the guest prints each controller change on
#     its console) and reported as an INFO line (goal < 1 s);
#   - dem-cli deletes B: dem-ac disconnects its controller once B has stayed gone for its
#     --removal-grace (10 s; not before); A, C and the hand-made D stay;
#   - dem is killed (SIGKILL) and restarted (same data directory and ports): dem-ac reports the
#     loss, reconnects (backoff) and disconnects nothing meanwhile; then dem-cli adds E and
#     dem-ac connects it (the persistent connection and its change notices work again);
#   - dem-dm's JSON lines hold the page, added C, removed B, lost and back around the restart,
#     added E; dem-dm --once exits 0 against dem, 1 against a port nothing listens on;
#   - dem-ac stops on SIGTERM with status 0 and leaves every controller connected.
# No nvme connect-all and no timer do the agents' work: the scenario only watches sysfs.
# needs: dem-cli dem-ac dem-dm
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source-path=SCRIPTDIR source=../host/lib.sh
. "$HERE/../host/lib.sh"
scenario_begin autoconnect

GUEST_CHECKS="ac-target-setup hand-connect ac-connects-initial ac-controller-options dm-initial-page
 ac-add-since-page ac-disconnects-removed ac-keeps-others ac-reports-loss ac-reconnects
 ac-nothing-disconnected-during-outage hand-made-survives dm-added dm-removed dm-lost-back
 dm-added-after-restart dm-once-reachable dm-once-unreachable ac-stop-keeps-controllers"
STEP_CHECKS="cli-configure ac-connects-added cli-delete ac-disconnect-seen dem-restart-api
 ac-connects-after-restart"

P=nqn.2024-01.io.example:autoconnect
NQN_A=$P-a NQN_B=$P-b NQN_C=$P-c NQN_D=$P-d-by-hand NQN_E=$P-e
API=${DEM_API_PORT:-$(free_port)}
NOLISTEN=$(free_port)
while [ "$NOLISTEN" = "$API" ]; do NOLISTEN=$(free_port); done
param NQN_A "$NQN_A"; param NQN_B "$NQN_B"; param NQN_C "$NQN_C"
param NQN_D "$NQN_D"; param NQN_E "$NQN_E"
param HOSTNQN "$GUEST_HOSTNQN"; param NOLISTEN_PORT "$NOLISTEN"
param AC_LOG_LEVEL "${DEM_AC_LOG_LEVEL:-debug}"
GRACE=${DEM_AC_REMOVAL_GRACE:-10}   # dem-ac --removal-grace (seconds)
param AC_GRACE "$GRACE"
DEM_ARGS=(--api-port "$API" --unreachable keep)
DOWN=${DEM_AC_DOWN:-3}       # seconds dem stays down after its SIGKILL

# ---------------------------------------------------------------- host steps
# They run while the guest waits (run-guest.sh -H TAG="$(step_cmd step_TAG)", with bash -c,
# as exported functions); OUT and SCEN go on the command line (run-guest.sh has variables of
# the same names).
step_cmd() { printf 'OUT=%q SCEN=%q' "$OUT" "$SCEN"; printf ' %q' "$@"; }
# step_add CHECK NQN : dem-cli adds NQN to t1 (any host); CHECK passes when the guest's console
# shows a live controller for it within 10 s. The time from dem-cli to that controller (host
# clock) goes to an INFO line CHECK-latency.
step_add() {
    local check=$1 nqn=$2 off t0 t1 ms0 ms1 verdict
    off=$(console_size)
    t0=$EPOCHREALTIME
    if ! dem_cli add subsystem t1 "$nqn"; then
        record FAIL "$check" "dem-cli add subsystem t1 $nqn failed: $(tail -n 2 "$OUT/dem-cli.log" | tr '\n' ' ')"
        return 1
    fi
    t1=$EPOCHREALTIME
    if console_wait "@@CTL nvme[0-9]*|$nqn|live@@" 10 "$off"; then
        ms0=$(ms_between "$t0" "$CONSOLE_AT"); ms1=$(ms_between "$t1" "$CONSOLE_AT")
        verdict=met; [ "$ms0" -lt 1000 ] || verdict=missed
        record PASS "$check"
        echo "$t0 $t1 $CONSOLE_AT" > "$OUT/timing-$check"
        note "$check-latency" "live controller for $nqn in the guest's sysfs ${ms0} ms after dem-cli add subsystem started, ${ms1} ms after it returned (dem-cli took $(ms_between "$t0" "$t1") ms); goal < 1000 ms: $verdict"
    else
        record FAIL "$check" "no live controller for $nqn in the guest within 10 s of dem-cli add subsystem t1 $nqn (it returned after $(ms_between "$t0" "$t1") ms)"
    fi
    dem_cli logpage host h1
}
# step_delete : dem-cli deletes B; the guest's console must show its controller gone after
# dem-ac's removal grace (not before) and within 10 s more
step_delete() {
    local off t0 t1 ms0
    off=$(console_size)
    t0=$EPOCHREALTIME
    if dem_cli -f delete subsystem t1 "$NQN_B"; then record PASS cli-delete
    else record FAIL cli-delete "dem-cli -f delete subsystem t1 $NQN_B failed: $(tail -n 2 "$OUT/dem-cli.log" | tr '\n' ' ')"; fi
    t1=$EPOCHREALTIME
    if console_wait "@@CTL gone nvme[0-9]*|$NQN_B@@" $((GRACE + 10)) "$off"; then
        ms0=$(ms_between "$t0" "$CONSOLE_AT")
        if [ "$ms0" -ge $((GRACE * 1000)) ]; then record PASS ac-disconnect-seen
        else record FAIL ac-disconnect-seen "B's controller gone ${ms0} ms after dem-cli delete started: before dem-ac's removal grace of $GRACE s"; fi
        note ac-disconnect-latency "B's controller gone from the guest's sysfs ${ms0} ms after dem-cli delete started, $(ms_between "$t1" "$CONSOLE_AT") ms after it returned (removal grace ${GRACE} s)"
    else
        record FAIL ac-disconnect-seen "B's controller still in the guest's sysfs $((GRACE + 10)) s after dem-cli delete returned (removal grace $GRACE s)"
    fi
    dem_cli logpage host h1
}
# aen_breakdown CHECK : after the capture, split CHECK's latency (timing-CHECK: dem-cli start,
# its return, the live controller seen, host clock) at the first change notice dem sent after
# dem-cli started (the completion of an Asynchronous Event Request, on lo)
aen_breakdown() {
    local t0 t1 seen aen
    read -r t0 t1 seen < "$OUT/timing-$1" 2>/dev/null || return 0
    aen=$(tshark -r "$OUT/lo.pcapng" -d "tcp.port==$DC_PORT,nvme-tcp" -Y "tcp.srcport == $DC_PORT && nvme-tcp" \
            -T fields -e frame.time_epoch -e _ws.col.Info 2>/dev/null \
        | awk -F'\t' -v t0="$t0" '$1 >= t0 && $2 ~ /CQE for Async Event Request/ { print $1; exit }')
    if [ -n "$aen" ]; then
        note "$1-breakdown" "dem-cli started -> first change notice (AEN completion) on the wire: $(ms_between "$t0" "$aen") ms ($(ms_between "$t1" "$aen") ms from dem-cli's return); notice -> live controller in the guest: $(ms_between "$aen" "$seen") ms"
    else
        note "$1-breakdown" "no AEN completion from dem on lo after dem-cli started"
    fi
}
export -f record note dem_cli console_size console_wait ms_between step_add step_delete
export RESULTS DATA DEMCLI_BIN NQN_B GRACE

# main_step restart (run_guest_serving, in this shell): dem dies (SIGKILL), stays down DOWN
# seconds and comes back with the same data directory and ports; its model must have survived
main_step() {
    [ "$1" = restart ] || return 1
    local err=""
    dem_kill || err="dem was not running"
    sleep "$DOWN"
    if [ -z "$err" ] && ! SCEN=$SCEN-restart DEM_NO_ENTRIES=1 dem_start "${DEM_ARGS[@]}"; then
        err="dem did not start again: $(tail -n 1 "$OUT/dem.log")"
    fi
    [ -n "$err" ] || dem_api_wait || err="dem's REST API did not come up again within 30 s: $(tail -n 1 "$OUT/dem.log")"
    if [ -z "$err" ]; then
        dem_cli logpage host h1
        # the output of that last dem-cli command
        awk '/^\$ dem-cli /{ out = "" } { out = out $0 "\n" } END { printf "%s", out }' "$OUT/dem-cli.log" > "$OUT/logpage-after-restart.txt"
        grep -q -- "$NQN_C" "$OUT/logpage-after-restart.txt" \
            || err="after the restart, dem-cli logpage host h1 does not list C: $(tail -n 5 "$OUT/logpage-after-restart.txt" | tr '\n' ' ')"
    fi
    if [ -z "$err" ]; then record PASS dem-restart-api; else record FAIL dem-restart-api "$err"; fi
    [ -z "$err" ]
}

# configure: t1, port 1 and subsystems A (any host) and B (restricted to h1, the guest)
CONF_ERR=""
cli() { [ -n "$CONF_ERR" ] || dem_cli "$@" || CONF_ERR="dem-cli $* failed: $(tail -n 2 "$OUT/dem-cli.log" | tr '\n' ' ')"; }
configure() {
    : > "$OUT/dem-cli.log"
    cli add target t1
    cli set portid t1 1 tcp ipv4 10.0.2.15 4420
    cli add subsystem t1 "$NQN_A"
    cli set subsystem t1 "$NQN_B" 0
    cli set host h1 "$GUEST_HOSTNQN" "$GUEST_HOSTID"
    cli set acl t1 "$NQN_B" h1
    cli logpage host h1
    if [ -z "$CONF_ERR" ]; then record PASS cli-configure
    else record FAIL cli-configure "$CONF_ERR"; fi
    [ -z "$CONF_ERR" ]
}

# the binaries are linked into the share for the boot only
trap 'rm -f "$SHARE/dem-ac" "$SHARE/dem-dm"; scenario_cleanup' EXIT

capture_start
ALL="$GUEST_CHECKS $STEP_CHECKS"
if [ -z "${DEMCLI_BIN:-}" ] || [ ! -x "$DEMCLI_BIN" ] || [ -z "${DEMAC_BIN:-}" ] || [ ! -x "$DEMAC_BIN" ] \
   || [ -z "${DEMDM_BIN:-}" ] || [ ! -x "$DEMDM_BIN" ]; then
    skip_guest "$ALL" "not run: DEMCLI_BIN '${DEMCLI_BIN:-}', DEMAC_BIN '${DEMAC_BIN:-}' or DEMDM_BIN '${DEMDM_BIN:-}' is not an executable (run.sh builds them)"
elif DEM_NO_ENTRIES=1 dem_start "${DEM_ARGS[@]}"; then
    if ! dem_api_wait; then
        skip_guest "$ALL" "not run: dem's REST API did not come up within 30 s: $(tail -n 1 "$OUT/dem.log")"
    elif ! configure; then
        skip_guest "$GUEST_CHECKS ${STEP_CHECKS#cli-configure}" "not run: configuring dem through dem-cli failed"
    else
        echo "[$SCEN] REST API on 127.0.0.1:$API_PORT; nothing listens on 127.0.0.1:$NOLISTEN"
        export API_PORT
        share_file "$DEMAC_BIN" dem-ac
        share_file "$DEMDM_BIN" dem-dm
        run_guest_serving "$HERE/autoconnect.guest.sh" "${DEM_INTEROP_BOOT_TIMEOUT:-200}" \
            -H "addc=$(step_cmd step_add ac-connects-added "$NQN_C")" \
            -H "deleteb=$(step_cmd step_delete)" \
            -H "restart=$(main_step_cmd restart)" \
            -H "adde=$(step_cmd step_add ac-connects-after-restart "$NQN_E")"
        rm -f "$SHARE/dem-ac" "$SHARE/dem-dm"
        guest_results "$GUEST_CHECKS"
        guest_notes
        step_checks_result "$STEP_CHECKS"
    fi
    dem_stop
else
    skip_guest "$ALL" "not run: dem did not start"
fi
capture_stop
aen_breakdown ac-connects-added
aen_breakdown ac-connects-after-restart
# shellcheck disable=SC2119  # no digests here
tshark_checks
scenario_end
