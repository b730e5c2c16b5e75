#!/bin/bash
# management: dem configured only through dem-cli on this machine (its REST API; no entries
# file), and two Linux host NQNs in the guest:
#   - target t1 (in no group): port 1 tcp 10.0.2.15:4420, subsystem ANY (any host) and
#     subsystem ONLY1 (restricted, access list h1); target t2 in group g1: port 1 tcp
#     192.0.2.20:4420, subsystem GRP (any host, but the group rule leaves g1's hosts only);
#     host h1 is in g1, host h2 is known to dem but on no access list and in no group;
#   - `nvme discover --hostnqn` as h1 lists exactly dem's own entry, ANY, ONLY1 and GRP; as h2,
#     and as the guest's own host NQN (unknown to dem), exactly dem's own entry and ANY;
#   - persistent discovery controllers for h1 and h2; dem-cli adds subsystems only h1 may use
#     (ONLY1-LATE, restricted to h1, and GRP-LATE on grouped t2): h1's controller gets the
#     discovery-change AEN (uevent NVME_AEN=0x70f002), h2's gets none; then dem-cli adds ANY-LATE
#     (any host, on t1): both get the AEN and their re-reads list it;
#   - the REST API answers a request without a token, or with a wrong one, with 401.
# The targets are LocalMgmt and dem cannot reach their discovery controllers from here (t1's
# address is the guest's, t2's is nowhere): dem runs with --unreachable keep, so the model's
# entries of a target it has not read are served as they are.
# needs: dem-cli
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source-path=SCRIPTDIR source=../host/lib.sh
. "$HERE/../host/lib.sh"
scenario_begin management

GUEST_CHECKS="h1-discover-exact h2-discover-exact unknown-host-discover-exact persistent-h1
 persistent-h2 aen-h1-on-restricted-add no-aen-h2-on-restricted-add h1-reread-shows-restricted
 h2-reread-unchanged h2-discover-unchanged aen-h2-on-shared-add aen-h1-on-shared-add
 h2-reread-shows-shared h1-reread-shows-shared persistent-dcs-alive h1-discover-final
 h2-discover-final"
STEP_CHECKS="cli-step-restricted cli-step-shared"

H1_ID=$(new_uuid); H2_ID=$(new_uuid)
H1=nqn.2014-08.org.nvmexpress:uuid:$H1_ID
H2=nqn.2014-08.org.nvmexpress:uuid:$H2_ID
param H1_NQN "$H1"; param H1_ID "$H1_ID"
param H2_NQN "$H2"; param H2_ID "$H2_ID"
P=nqn.2024-01.io.example:mgmt
ANY=$P-t1-any ONLY1=$P-t1-only-h1 GRP=$P-t2-group-g1
ONLY1_LATE=$P-t1-only-h1-late GRP_LATE=$P-t2-group-g1-late ANY_LATE=$P-t1-any-late

# what each host must see (nvme-cli JSON records: subtype|subnqn|traddr|trsvcid)
DCREC="current discovery subsystem|$DC_NQN|127.0.0.1|$DC_PORT"
t1() { local n; for n in "$@"; do echo "nvme subsystem|$n|10.0.2.15|4420"; done; }
t2() { local n; for n in "$@"; do echo "nvme subsystem|$n|192.0.2.20|4420"; done; }
E=$SHARE/expect
{ echo "$DCREC"; t1 "$ANY" "$ONLY1"; t2 "$GRP"; } > "$E/h1-initial"
{ echo "$DCREC"; t1 "$ANY"; } > "$E/h2-initial"
{ echo "$DCREC"; t1 "$ANY"; } > "$E/unknown-initial"
{ echo "$DCREC"; t1 "$ANY" "$ONLY1" "$ONLY1_LATE"; t2 "$GRP" "$GRP_LATE"; } > "$E/h1-restricted"
{ echo "$DCREC"; t1 "$ANY" "$ONLY1" "$ONLY1_LATE" "$ANY_LATE"; t2 "$GRP" "$GRP_LATE"; } > "$E/h1-final"
{ echo "$DCREC"; t1 "$ANY" "$ANY_LATE"; } > "$E/h2-final"

# configure: every dem-cli command must succeed; the first failure is the check's detail
CONF_ERR=""
cli() { [ -n "$CONF_ERR" ] || dem_cli "$@" || CONF_ERR="dem-cli $* failed: $(tail -n 2 "$OUT/dem-cli.log" | tr '\n' ' ')"; }
configure() {
    : > "$OUT/dem-cli.log"
    cli add target t1
    cli set portid t1 1 tcp ipv4 10.0.2.15 4420
    cli add subsystem t1 "$ANY"
    cli set subsystem t1 "$ONLY1" 0
    cli set host h1 "$H1" "$H1_ID"
    cli set host h2 "$H2" "$H2_ID"
    cli set acl t1 "$ONLY1" h1
    cli add target t2
    cli set portid t2 1 tcp ipv4 192.0.2.20 4420
    cli add subsystem t2 "$GRP"
    cli add group g1
    cli link target t2 g1
    cli link host h1 g1
    # for the logs: dem's own view of both hosts' pages
    cli logpage host h1
    cli logpage host h2
    if [ -z "$CONF_ERR" ]; then record PASS cli-configure
    else record FAIL cli-configure "$CONF_ERR"; fi
    [ -z "$CONF_ERR" ]
}
# api_401 NAME [CURL-ARGS...] : the REST API must answer GET /target with 401
api_401() {
    local name=$1 code
    shift
    # shellcheck disable=SC2046
    code=$(curl -s -o "$OUT/$name.body" -w '%{http_code}' --max-time 10 "$@" $(api_curl_tls) "$(api_url)/target")
    if [ "$code" = 401 ]; then record PASS "$name"
    else record FAIL "$name" "GET /target answered ${code:-nothing} (want 401): $(head -c 200 "$OUT/$name.body" 2>/dev/null)"; fi
}
capture_start
if [ -z "${DEMCLI_BIN:-}" ] || [ ! -x "$DEMCLI_BIN" ]; then
    record FAIL cli-configure "DEMCLI_BIN is not an executable: '${DEMCLI_BIN:-}' (run.sh builds it)"
    skip_guest "api-anonymous-401 api-bad-token-401 $GUEST_CHECKS $STEP_CHECKS" "not run: no dem-cli"
elif DEM_NO_ENTRIES=1 dem_start --api-port "${DEM_API_PORT:-0}" --unreachable keep; then
    if ! dem_api_wait; then
        record FAIL cli-configure "dem's REST API did not come up within 30 s: $(tail -n 1 "$OUT/dem.log")"
        skip_guest "api-anonymous-401 api-bad-token-401 $GUEST_CHECKS $STEP_CHECKS" "not run: no REST API"
    else
        echo "[$SCEN] REST API on 127.0.0.1:$API_PORT"
        api_401 api-anonymous-401
        api_401 api-bad-token-401 -H "Authorization: Bearer not-a-dem-token"
        if configure; then
            # host steps: the guest asks for them while its persistent discovery controllers are up
            STEP_RESTRICTED="$(dem_cli_cmd set subsystem t1 "$ONLY1_LATE" 0) && $(dem_cli_cmd set acl t1 "$ONLY1_LATE" h1) && $(dem_cli_cmd add subsystem t2 "$GRP_LATE")"
            STEP_SHARED="$(dem_cli_cmd add subsystem t1 "$ANY_LATE")"
            run_guest "$HERE/management.guest.sh" "${DEM_INTEROP_BOOT_TIMEOUT:-180}" \
                -H "restricted=$STEP_RESTRICTED" -H "shared=$STEP_SHARED"
            guest_results "$GUEST_CHECKS"
            step_result cli-step-restricted restricted
            step_result cli-step-shared shared
        else
            skip_guest "$GUEST_CHECKS $STEP_CHECKS" "not run: configuring dem through dem-cli failed"
        fi
    fi
    dem_stop
else
    skip_guest "cli-configure api-anonymous-401 api-bad-token-401 $GUEST_CHECKS $STEP_CHECKS" "not run: dem did not start"
fi
capture_stop
# shellcheck disable=SC2119  # no digests here
tshark_checks
scenario_end
