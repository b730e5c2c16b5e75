#!/bin/bash
# discovery: the guest's nvme-cli discovers against dem on the host (10.0.2.2:8009):
#   plain, JSON and raw output (raw byte-identical to `dem logpage --raw`), the same with
#   header and data digests, and per-host filtering (host NQNs X and Y see different pages).
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=../host/lib.sh
. "$HERE/../host/lib.sh"
scenario_begin discovery

GUEST_CHECKS="discover-plain discover-json discover-json-dc-entry discover-raw
 hostnqn-x-json hostnqn-x-raw hostnqn-y-json hostnqn-y-raw discover-leaves-no-controller
 digest-discover-json digest-discover-raw guest-dmesg-clean-discovery"

X_ID=$(new_uuid); Y_ID=$(new_uuid)
X=nqn.2014-08.org.nvmexpress:uuid:$X_ID
Y=nqn.2014-08.org.nvmexpress:uuid:$Y_ID
param HOSTNQN_X "$X"; param HOSTID_X "$X_ID"
param HOSTNQN_Y "$Y"; param HOSTID_Y "$Y_ID"

P=nqn.2024-01.io.example:interop
write_entries "$ENTRIES" \
    "$(entry $P-open-1 10.0.2.15 4420 1)" \
    "$(entry $P-open-2 192.0.2.10 4421 2)" \
    "$(entry $P-only-x 192.0.2.11 4420 3 "$X")" \
    "$(entry $P-only-y 192.0.2.12 4420 4 "$Y")" \
    "$(entry $P-guest-and-x 192.0.2.13 4420 5 "$GUEST_HOSTNQN" "$X")"
expect_list default.want $P-open-1 $P-open-2 $P-guest-and-x
expect_list default.hide $P-only-x $P-only-y
expect_list x.want $P-open-1 $P-open-2 $P-only-x $P-guest-and-x
expect_list x.hide $P-only-y
expect_list y.want $P-open-1 $P-open-2 $P-only-y
expect_list y.hide $P-only-x $P-guest-and-x

dem_logpage default "$GUEST_HOSTNQN"
dem_logpage x "$X"
dem_logpage y "$Y"
dem_logpage_result

capture_start
if dem_start; then
    run_guest "$HERE/discovery.guest.sh" "${DEM_INTEROP_BOOT_TIMEOUT:-120}"
    dem_stop
    guest_results "$GUEST_CHECKS"
else
    skip_guest "$GUEST_CHECKS" "not run: dem did not start"
fi
capture_stop
tshark_checks digests
scenario_end
