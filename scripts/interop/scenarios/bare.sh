#!/bin/bash
# bare: dem started with no arguments at all (127.0.0.1:8009, its generated unique NQN, no
# entries file) answers the guest's `nvme discover -t tcp -a 10.0.2.2 -s 8009` with its own
# SUBTYPE 3 entry.
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=../host/lib.sh
. "$HERE/../host/lib.sh"
scenario_begin bare

GUEST_CHECKS="bare-discover bare-dc-entry"
capture_start
if DEM_BARE=1 dem_start; then
    run_guest "$HERE/bare.guest.sh" "${DEM_INTEROP_BOOT_TIMEOUT:-120}"
    dem_stop
    guest_results "$GUEST_CHECKS"
else
    skip_guest "$GUEST_CHECKS" "not run: dem did not start"
fi
capture_stop
tshark_checks
scenario_end
