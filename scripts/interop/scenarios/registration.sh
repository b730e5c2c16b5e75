#!/bin/bash
# registration: a Linux host registers itself with dem (TP8010 Discovery Information
# Management) and the administrator adopts it without typing its NQN:
#   - target t1 (LocalMgmt, unreachable from here: dem runs with --unreachable keep) has port 1
#     tcp 10.0.2.15:4420 and subsystem REG, restricted to its access list (empty);
#   - the guest opens a persistent discovery controller (`nvme discover -p`): its page lists
#     dem's own entry only; `nvme dim --task register` on that controller succeeds;
#   - dem-cli lists the registration (registered, host, the guest's host name, its host NQN);
#     `dem-cli adopt registration <host name>` makes it a host; zone lab/z1 gets the host and
#     REG; the dry run (`dem-cli diff zone`) says the host gains REG, and nothing changes until
#     `dem-cli activate zone`: then the persistent controller gets the discovery-change AEN and
#     its re-read lists REG; deleting the zone and activating again sends a second AEN and REG
#     goes;
#   - `nvme dim --task deregister` succeeds; dem-cli then lists the guest as seen, not
#     registered, still adopted; tshark decodes both DIM commands cleanly.
# needs: dem-cli
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source-path=SCRIPTDIR source=../host/lib.sh
. "$HERE/../host/lib.sh"
scenario_begin registration

GUEST_CHECKS="guest-name persistent-discover page-before-adopt dim-register aen-on-adopt
 reread-shows-adopted aen-on-revoke reread-hides-revoked dim-deregister persistent-dc-alive"
STEP_CHECKS="cli-step-listed cli-step-adopt cli-step-revoke cli-step-seen"

# The guest's host name (scripts/interop/guest/init): what `nvme dim` sends as ENAME.
NAME=dem-interop
REG=nqn.2024-01.io.example:registration-t1
param GUEST_NAME "$NAME"
DCREC="current discovery subsystem|$DC_NQN|127.0.0.1|$DC_PORT"
E=$SHARE/expect
echo "$DCREC" > "$E/before"
{ echo "$DCREC"; echo "nvme subsystem|$REG|10.0.2.15|4420"; } > "$E/adopted"

CONF_ERR=""
cli() { [ -n "$CONF_ERR" ] || dem_cli "$@" || CONF_ERR="dem-cli $* failed: $(tail -n 2 "$OUT/dem-cli.log" | tr '\n' ' ')"; }
configure() {
    : > "$OUT/dem-cli.log"
    cli add target t1
    cli set portid t1 1 tcp ipv4 10.0.2.15 4420
    cli set subsystem t1 "$REG" 0
    if [ -z "$CONF_ERR" ]; then record PASS cli-configure
    else record FAIL cli-configure "$CONF_ERR"; fi
    [ -z "$CONF_ERR" ]
}

capture_start
if [ -z "${DEMCLI_BIN:-}" ] || [ ! -x "$DEMCLI_BIN" ]; then
    record FAIL cli-configure "DEMCLI_BIN is not an executable: '${DEMCLI_BIN:-}' (run.sh builds it)"
    skip_guest "$GUEST_CHECKS $STEP_CHECKS" "not run: no dem-cli"
elif DEM_NO_ENTRIES=1 dem_start --api-port "${DEM_API_PORT:-0}" --unreachable keep; then
    if ! dem_api_wait; then
        record FAIL cli-configure "dem's REST API did not come up within 30 s: $(tail -n 1 "$OUT/dem.log")"
        skip_guest "$GUEST_CHECKS $STEP_CHECKS" "not run: no REST API"
    elif configure; then
        LIST="$(dem_cli_cmd list registration)"
        # The table's row: STATE TYPE NAME NQN FROM ADOPTED WHEN.
        STEP_LISTED="$LIST > '$OUT/list-registered.txt'; cat '$OUT/list-registered.txt'; grep -Eq '^registered +host +$NAME +$GUEST_HOSTNQN ' '$OUT/list-registered.txt'"
        DIFF="$(dem_cli_cmd diff zone)"
        # The dry run names the host (by its alias) and the entry it gains.
        STEP_ADOPT="$(dem_cli_cmd adopt registration "$NAME") && $(dem_cli_cmd get host "$NAME") && $(dem_cli_cmd link zone lab z1 host "$NAME") && $(dem_cli_cmd link zone lab z1 subsystem "$REG") && $DIFF > '$OUT/diff.txt' && cat '$OUT/diff.txt' && grep -q \"^Host '$NAME'\" '$OUT/diff.txt' && grep -q '^  + $REG on target .t1. port 1 (10.0.2.15:4420)' '$OUT/diff.txt' && $(dem_cli_cmd activate zone)"
        STEP_REVOKE="$(dem_cli_cmd -f delete zone lab z1) && $DIFF && $(dem_cli_cmd activate zone)"
        STEP_SEEN="$LIST > '$OUT/list-seen.txt'; cat '$OUT/list-seen.txt'; ! grep -q '^registered' '$OUT/list-seen.txt' && grep -Eq '^seen +host +- +$GUEST_HOSTNQN +[^ ]+ +$NAME ' '$OUT/list-seen.txt'"
        run_guest "$HERE/registration.guest.sh" "${DEM_INTEROP_BOOT_TIMEOUT:-180}" \
            -H "listed=$STEP_LISTED" -H "adopt=$STEP_ADOPT" -H "revoke=$STEP_REVOKE" -H "seen=$STEP_SEEN"
        guest_results "$GUEST_CHECKS"
        step_result cli-step-listed listed
        step_result cli-step-adopt adopt
        step_result cli-step-revoke revoke
        step_result cli-step-seen seen
    else
        skip_guest "$GUEST_CHECKS $STEP_CHECKS" "not run: configuring dem through dem-cli failed"
    fi
    dem_stop
else
    skip_guest "cli-configure $GUEST_CHECKS $STEP_CHECKS" "not run: dem did not start"
fi
capture_stop
# shellcheck disable=SC2119  # no digests here
tshark_checks
# Both Discovery Information Management commands (admin opcode 21h), as tshark decodes them.
if [ -s "$OUT/lo.pcapng" ]; then
    dim=$(tshark -r "$OUT/lo.pcapng" $TSHARK_DEC -Y 'nvme.cmd.opc == 0x21' -T fields -e frame.number 2> /dev/null | wc -l)
    if [ "$dim" -ge 2 ]; then record PASS "tshark-$SCEN-dim"
    else record FAIL "tshark-$SCEN-dim" "decoded $dim DIM command capsules (want the register and the deregister)"; fi
else
    record FAIL "tshark-$SCEN-dim" "no capture file"
fi
scenario_end
