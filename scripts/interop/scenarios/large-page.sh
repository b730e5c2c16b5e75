#!/bin/bash
# large-page: a discovery log page of 45 entries plus dem's own (> 32 KiB, read by nvme-cli
# in several Get Log Page chunks): JSON lists them all, raw output is byte-identical to
# `dem logpage --raw`, with and without digests.
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=../host/lib.sh
. "$HERE/../host/lib.sh"
scenario_begin large-page

GUEST_CHECKS="large-discover-json large-discover-raw large-digest-discover-raw"
N=45
P=nqn.2024-01.io.example:interop-bulk
es=(); names=()
for i in $(seq 1 $N); do
    n=$(printf '%s-%02d' $P "$i")
    names+=("$n")
    es+=("$(entry "$n" "192.0.2.$((100 + i))" "$((4420 + i))" "$i")")
done
write_entries "$ENTRIES" "${es[@]}"
expect_list all.want "${names[@]}"
param BULK_COUNT $N

dem_logpage all "$GUEST_HOSTNQN"
dem_logpage_result

capture_start
if dem_start; then
    run_guest "$HERE/large-page.guest.sh" "${DEM_INTEROP_BOOT_TIMEOUT:-120}"
    dem_stop
    guest_results "$GUEST_CHECKS"
else
    skip_guest "$GUEST_CHECKS" "not run: dem did not start"
fi
capture_stop
tshark_checks digests
scenario_end
