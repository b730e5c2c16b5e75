#!/bin/bash
# connect-aen: dem's entries point at the guest's own kernel target (nvmet, TCP
# 10.0.2.15:4420, memory-backed null_blk namespace):
#   - `nvme connect-all` through dem, O_DIRECT write + read back, `nvme disconnect-all`;
#   - persistent discovery (`nvme discover -p`): the host edits dem's entries file (dem
#     notices the change on disk) and the guest kernel must raise the discovery-log-changed
#     AEN (uevent NVME_AEN=0x70f002); the new entry shows on a fresh discover and on a
#     re-read over the persistent controller; then the entry is removed again (file edit +
#     SIGHUP) and a second AEN must follow; the persistent controller stays live (keep-alive);
#   - 16 KiB of host data to the persistent controller (nvme admin-passthru, beyond the admin
#     queue's 8 KiB in-capsule): dem's R2T, the kernel's H2CData, Invalid Field, still live;
#     tshark decodes the R2T and the H2CData.
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=../host/lib.sh
. "$HERE/../host/lib.sh"
scenario_begin connect-aen

GUEST_CHECKS="connect-target-setup connect-all connect-all-namespace direct-io disconnect-all
 persistent-discover aen-on-add rediscover-shows-added persistent-reread-shows-added
 aen-on-remove rediscover-hides-removed r2t-host-data persistent-dc-alive"

NULLB=nqn.2024-01.io.example:interop-nullb0
ADDED=nqn.2024-01.io.example:interop-aen-added
param NULLB_NQN "$NULLB"
param ADDED_NQN "$ADDED"
BASE=$(entry "$NULLB" 10.0.2.15 4420 1)
write_entries "$ENTRIES" "$BASE"
# host steps: the guest asks for them while its persistent discovery controller is connected
write_entries "$OUT/entries-add.json" "$BASE" "$(entry "$ADDED" 10.0.2.15 4420 1 "$GUEST_HOSTNQN")"
cp "$ENTRIES" "$OUT/entries-remove.json"
STEP_ADD="cat '$OUT/entries-add.json' > '$ENTRIES.step' && mv -f '$ENTRIES.step' '$ENTRIES' && echo entries file rewritten with the added entry"
STEP_REMOVE="cat '$OUT/entries-remove.json' > '$ENTRIES.step' && mv -f '$ENTRIES.step' '$ENTRIES' && kill -HUP \$(cat '$OUT/dem.pid') && echo entries file restored, SIGHUP sent"

capture_start
if dem_start; then
    run_guest "$HERE/connect-aen.guest.sh" "${DEM_INTEROP_BOOT_TIMEOUT:-150}" \
        -H "add=$STEP_ADD" -H "remove=$STEP_REMOVE"
    dem_stop
    guest_results "$GUEST_CHECKS"
else
    skip_guest "$GUEST_CHECKS" "not run: dem did not start"
fi
capture_stop
tshark_checks
# The R2T dem sent and the H2CData the kernel answered it with, as tshark decodes them.
if [ -s "$OUT/lo.pcapng" ]; then
    r2t=$(tshark -r "$OUT/lo.pcapng" $TSHARK_DEC -Y 'nvme-tcp.type == 9' -T fields -e frame.number 2> /dev/null | wc -l)
    h2c=$(tshark -r "$OUT/lo.pcapng" $TSHARK_DEC -Y 'nvme-tcp.type == 6' -T fields -e frame.number 2> /dev/null | wc -l)
    if [ "$r2t" -ge 1 ] && [ "$h2c" -ge 1 ]; then
        record PASS "tshark-$SCEN-r2t"
    else
        record FAIL "tshark-$SCEN-r2t" "decoded $r2t R2T and $h2c H2CData PDUs"
    fi
else
    record FAIL "tshark-$SCEN-r2t" "no capture file"
fi
scenario_end
