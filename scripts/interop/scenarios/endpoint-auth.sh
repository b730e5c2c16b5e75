#!/bin/bash
# endpoint-auth: targets demand the keys dem holds. dem-em in the guest, on nvmet rebuilt with
# in-band authentication (auth/build-auth-modules.sh), joins dem; dem-cli gives the guest's host
# NQN a generated key (two-way: a controller key too) and allows it on a restricted subsystem.
# dem pushes the keys sealed; dem-em writes hosts/<nqn>/dhchap_* in configfs. In the guest:
#   configfs holds the key (and not in dem-em's answers), the kernel host without the key is
#   refused by nvmet, with the key it connects (one-way and two-way) and does O_DIRECT I/O;
#   dem-ac with --dhchap-secret-file authenticates to dem and connects the subsystem with it.
# needs: dem-cli dem-em dem-ac
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source-path=SCRIPTDIR source=../host/lib.sh
. "$HERE/../host/lib.sh"
scenario_begin endpoint-auth

GUEST_CHECKS="ea-modules-loaded ea-em-join ea-configfs-key ea-em-answers-sealed ea-connect-no-key-refused
 ea-connect-wrong-key-refused ea-connect-key-io ea-connect-two-way ea-ac-connects ea-no-secret-in-em-ac-logs
 ea-dmesg-clean"
STEP_CHECKS="ea-configure ea-served"

auth_overlay ea-modules-built

NQN=nqn.2024-01.io.example:endpoint-auth-t1
EM_PORT=$(free_port)
API=$(free_port)
while [ "$API" = "$EM_PORT" ]; do API=$(free_port); done
param NQN "$NQN"; param HOSTNQN "$GUEST_HOSTNQN"; param HOSTID "$GUEST_HOSTID"
param API_PORT "$API"; param EM_FWD_PORT "$EM_PORT"
param WRONG_KEY "DHHC-1:00:oKGio6SlpqeoqaqrrK2ur7CxsrO0tba3uLm6u7y9vr8G4daz:"

step_cmd() { printf 'OUT=%q SCEN=%q SHARE=%q %q' "$OUT" "$SCEN" "$SHARE" "$1"; }
# dem-cli: port 1, a restricted subsystem with nullb0, host h1 (the guest) with generated keys
# on its access list; the keys go to the share for the guest (/host/keys.sh)
step_configure() {
    local err="" keys
    cli() { [ -n "$err" ] || dem_cli "$@" || err="dem-cli $* failed: $(tail -n 2 "$OUT/dem-cli.log" | tr '\n' ' ')"; }
    cli set portid t1 1 tcp ipv4 10.0.2.15 4420
    cli set subsystem t1 "$NQN" 0
    cli set ns t1 "$NQN" 1 /dev/nullb0
    cli set host h1 "$GUEST_HOSTNQN" "$GUEST_HOSTID" --dhchap-secret generate --dhchap-ctrl-secret generate
    cli set acl t1 "$NQN" h1
    # (JSON may write "/" as "\/")
    keys=$(dem_api GET /host/h1/dhchap | sed 's|\\/|/|g')
    { echo "HOST_KEY='$(echo "$keys" | json_field Secret)'"; echo "CTRL_KEY='$(echo "$keys" | json_field ControllerSecret)'"; } > "$SHARE/keys.sh"
    if [ -z "$err" ] && grep -q "HOST_KEY='DHHC-1" "$SHARE/keys.sh"; then record PASS ea-configure
    else record FAIL ea-configure "${err:-no key from GET /host/h1/dhchap}"; fi
    if wait_target t1 30 reachable 1 && printf '%s' "$TARGET_STATUS" | grep -qF "\"SUBNQN\":\"$NQN\""; then
        record PASS ea-served
    else
        record FAIL ea-served "t1 not reachable with $NQN live within 30 s: $(printf '%s' "$TARGET_STATUS" | cut -c1-300)"
    fi
}
export -f record dem_cli dem_api json_field wait_target elapsed step_configure
export RESULTS DATA DEMCLI_BIN NQN GUEST_HOSTNQN GUEST_HOSTID

trap 'rm -f "$SHARE/dem-em" "$SHARE/dem-ac" "$SHARE/fabric.key" "$SHARE/keys.sh"; scenario_cleanup' EXIT

capture_start
ALL="$STEP_CHECKS $GUEST_CHECKS"
if [ ${#OVERLAY[@]} = 0 ]; then
    skip_guest "$ALL" "not run: no auth-enabled modules"
elif [ -z "${DEMEM_BIN:-}" ] || [ ! -x "$DEMEM_BIN" ] || [ -z "${DEMAC_BIN:-}" ] || [ ! -x "$DEMAC_BIN" ]; then
    skip_guest "$ALL" "not run: DEMEM_BIN '${DEMEM_BIN:-}' or DEMAC_BIN '${DEMAC_BIN:-}' is not an executable (run.sh builds them)"
elif DEM_NO_ENTRIES=1 dem_start --api-port "$API" --probe-interval 1 --target-timeout 5 --insecure-http; then
    if ! dem_api_wait; then
        skip_guest "$ALL" "not run: dem's REST API did not come up"
    else
        export API_PORT
        cp "$DATA/fabric.key" "$SHARE/fabric.key"
        share_file "$DEMEM_BIN" dem-em
        share_file "$DEMAC_BIN" dem-ac
        : > "$OUT/dem-cli.log"
        run_guest "$HERE/endpoint-auth.guest.sh" "${DEM_INTEROP_BOOT_TIMEOUT:-200}" \
            -f "tcp:127.0.0.1:$EM_PORT-:22334" -H "configure=$(step_cmd step_configure)" "${OVERLAY[@]}"
        secret=$(grep HOST_KEY "$SHARE/keys.sh" 2>/dev/null | cut -d"'" -f2)
        if [ -n "$secret" ] && ! grep -qF "${secret:10:24}" "$OUT/dem.log"; then
            record PASS ea-no-secret-in-dem-log
        else
            record FAIL ea-no-secret-in-dem-log "the host secret appears in dem's log (or was never made)"
        fi
        guest_results "$GUEST_CHECKS"
        step_checks_result "$STEP_CHECKS"
    fi
    dem_stop
else
    skip_guest "$ALL" "not run: dem did not start"
fi
capture_stop
tshark_checks
scenario_end
