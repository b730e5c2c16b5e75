#!/bin/bash
# auth: DH-HMAC-CHAP between the real Linux host and dem's discovery controller. The guest
# boots NVMe drivers rebuilt with in-band authentication (auth/build-auth-modules.sh: Debian's
# 6.1 is built without it). dem-cli gives the guest's host NQN generated keys; then
#   right key -> the page; wrong key and no key -> refused (dem serves on); another host
#   without a key (--auth optional) -> its page; two-way (dhchap_ctrl_secret) on a connection
#   kept alive, and a wrong controller key refused by the host; SHA-512 with ffdhe4096.
# needs: dem-cli
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=../host/lib.sh
. "$HERE/../host/lib.sh"
scenario_begin auth

GUEST_CHECKS="auth-modules-loaded auth-right-key auth-wrong-key-refused auth-no-key-refused
 auth-keyless-host-served auth-two-way-persistent auth-wrong-ctrl-key-refused auth-sha512-ffdhe4096
 auth-dmesg-clean"

# The auth-enabled modules (built once, cached with the guest image) as a guest overlay.
auth_overlay auth-modules-built

X_ID=$(new_uuid)
X=nqn.2014-08.org.nvmexpress:uuid:$X_ID
K_ID=$(new_uuid)
K=nqn.2014-08.org.nvmexpress:uuid:$K_ID
param HOSTNQN_X "$X"; param HOSTID_X "$X_ID"
param HOSTNQN_K "$K"; param HOSTID_K "$K_ID"
# a well-formed key nobody was given
param WRONG_KEY "DHHC-1:00:oKGio6SlpqeoqaqrrK2ur7CxsrO0tba3uLm6u7y9vr8G4daz:"

capture_start
if [ ${#OVERLAY[@]} = 0 ]; then
    skip_guest "$GUEST_CHECKS" "not run: no auth-enabled modules"
elif DEM_NO_ENTRIES=1 dem_start --api-port "${DEM_API_PORT:-0}" --auth optional; then
    if ! dem_api_wait; then
        record FAIL auth-keys-made "dem's REST API did not come up"
        skip_guest "$GUEST_CHECKS" "not run: no REST API"
    elif dem_cli set host guest "$GUEST_HOSTNQN" "$GUEST_HOSTID" --dhchap-secret generate \
            --dhchap-ctrl-secret generate \
        && dem_cli set host strong "$K" "$K_ID" --dhchap-secret generate --dhchap-hash sha512 \
            --dhchap-dhgroup ffdhe4096 \
        && dem_cli show host-key guest; then
        # (JSON may write "/" as "\/")
        keys=$(dem_api GET /host/guest/dhchap | sed 's|\\/|/|g')
        param HOST_KEY "$(echo "$keys" | json_field Secret)"
        param CTRL_KEY "$(echo "$keys" | json_field ControllerSecret)"
        param STRONG_KEY "$(dem_api GET /host/strong/dhchap | sed 's|\\/|/|g' | json_field Secret)"
        if grep -q 'DHHC-1:0' "$OUT/dem-cli.log"; then record PASS auth-keys-made
        else record FAIL auth-keys-made "dem-cli show host-key printed no DHHC-1 secret"; fi
        # no secret in dem's log
        secret=$(echo "$keys" | json_field Secret)
        run_guest "$HERE/auth.guest.sh" "${DEM_INTEROP_BOOT_TIMEOUT:-180}" "${OVERLAY[@]}"
        if [ -n "$secret" ] && ! grep -qF "${secret:10:20}" "$OUT/dem.log"; then record PASS auth-no-secret-in-log
        else record FAIL auth-no-secret-in-log "a host secret appears in dem's log"; fi
        n=$(grep -c 'host failed DH-HMAC-CHAP authentication' "$OUT/dem.log")
        if [ "$n" -ge 1 ]; then record PASS auth-failures-logged
        else record FAIL auth-failures-logged "dem logged no failed authentication"; fi
        if alive "$DEM_PID"; then record PASS auth-dem-serves-on
        else record FAIL auth-dem-serves-on "dem exited"; fi
    else
        record FAIL auth-keys-made "dem-cli set host … --dhchap-secret generate failed: $(tail -n 2 "$OUT/dem-cli.log" | tr '\n' ' ')"
        skip_guest "$GUEST_CHECKS" "not run: no keys"
    fi
    dem_stop
    guest_results "$GUEST_CHECKS"
else
    skip_guest "$GUEST_CHECKS" "not run: dem did not start"
fi
capture_stop
tshark_checks
scenario_end
