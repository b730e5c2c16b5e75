#!/bin/bash
# rdma: NVMe/RDMA on soft-RoCE (rdma_rxe on the guest's eth0), all inside the guest: dem and
# dem-em built with the RDMA trait run there, from the share.
#   - dem serves discovery over NVMe/RDMA at 10.0.2.15:8009 (and NVMe/TCP on loopback for
#     the REST-configured model);
#   - dem-em serves its in-band management channel over NVMe/RDMA only (10.0.2.15:22335), its
#     REST API on the guest's loopback, allowing only dem's host NQN;
#   - dem-cli (in the guest) makes t1 an InBandMgmt target with TRTYPE rdma and defines port 1
#     (rdma 10.0.2.15:4420) and a restricted subsystem with a null_blk namespace for the guest's
#     host NQN: dem pushes it to dem-em in NVMe-MI commands over RDMA, dem-em writes configfs
#     (the kernel's nvmet-rdma), dem serves the entry once dem-em reports it live;
#   - the kernel host discovers it with `nvme discover -t rdma` through dem, connects
#     (`connect-all -t rdma`, to nvmet-rdma) and does O_DIRECT I/O;
#   - the kernel host, which is not dem, connects to the management NQN over RDMA and is
#     refused (Connect Invalid Host);
#   - DH-HMAC-CHAP over NVMe/RDMA (the guest boots the NVMe drivers rebuilt with
#     authentication): the in-band channel authenticates two-way with every association; dem-cli
#     gives the guest's host NQN a generated key; the kernel host's discovery controller over RDMA
#     with that key is authenticated, without it refused ("no key");
#   - dem-cli deletes the subsystem: dem-em removes it from configfs.
# The RDMA traffic stays inside the guest (rxe to its own address), so there is no capture to
# decode here: tshark checks the NVMe/TCP scenarios' traffic.
# needs: rdma
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source-path=SCRIPTDIR source=../host/lib.sh
. "$HERE/../host/lib.sh"
scenario_begin rdma

GUEST_CHECKS="rxe-link dem-rdma-listen em-start-rdma inband-configure dem-serves-live-subsystem
 configfs-port configfs-namespace configfs-acl discover-lists-subsystem discover-trtype-rdma
 connect-all connect-all-namespace connect-all-rdma direct-io disconnect-io not-dem-refused
 em-logged-refusal rdma-auth-key rdma-auth-no-key-refused cli-delete configfs-subsystem-removed dem-stop-clean
 em-final-stop-clean"

P=nqn.2024-01.io.example:rdma
NQN=$P-t1-nullb0
DEM_HOSTNQN=nqn.2014-08.org.nvmexpress:uuid:8a1b2c3d-4e5f-4a6b-9c7d-0e1f2a3b4c5d
param NQN "$NQN"; param MGMT_NQN "nqn.2014-08.org.nvmexpress.dem:em:t1"; param DEM_HOSTNQN "$DEM_HOSTNQN"
param HOSTNQN "$GUEST_HOSTNQN"; param HOSTID "$GUEST_HOSTID"
param EM_LOG_LEVEL "${DEM_EM_LOG_LEVEL:-info}"
E=$SHARE/expect
{ echo "current discovery subsystem|$DC_NQN|127.0.0.1|8009"; echo "nvme subsystem|$NQN|10.0.2.15|4420"; } > "$E/initial"

trap 'rm -f "$SHARE/dem" "$SHARE/dem-em" "$SHARE/dem-cli"; scenario_cleanup' EXIT
auth_overlay rdma-auth-modules-built

missing=""
for b in DEM_RDMA_BIN DEMEM_RDMA_BIN DEMCLI_RDMA_BIN; do
    [ -n "${!b:-}" ] && [ -x "${!b}" ] || missing="$missing $b='${!b:-}'"
done
if [ -n "$missing" ]; then
    skip_guest "$GUEST_CHECKS" "not run: not executables:$missing (run.sh builds them with the RDMA trait)"
else
    share_file "$DEM_RDMA_BIN" dem
    share_file "$DEMEM_RDMA_BIN" dem-em
    share_file "$DEMCLI_RDMA_BIN" dem-cli
    run_guest "$HERE/rdma.guest.sh" "${DEM_INTEROP_BOOT_TIMEOUT:-280}" -m 1536 "${OVERLAY[@]}"
    rm -f "$SHARE/dem" "$SHARE/dem-em" "$SHARE/dem-cli"
    guest_results "$GUEST_CHECKS"
    # dem ran in the guest: its log is in the console log, and copied here for the summary
    tr -d '\r' < "$OUT/guest/console.log" 2>/dev/null | sed -n '/^--- dem.s log:/,/^--- end of dem.s log/p' > "$OUT/dem.log"
fi
scenario_end
