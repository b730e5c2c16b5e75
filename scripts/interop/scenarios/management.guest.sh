# management (guest side); host NQNs from /host/params.sh, expected records in /host/expect
# (see management.sh).  busybox ash, with /usr/lib/dem-interop/lib.sh sourced by /init.
# shellcheck shell=dash
# shellcheck disable=SC2086  # $DC, $AS_H1 and $AS_H2 are lists of nvme-cli options
E=/host/expect
KATO=5
QUIET=3        # seconds h2 must stay without a notice after h1 got its own
AS_H1="--hostnqn=$H1_NQN --hostid=$H1_ID"
AS_H2="--hostnqn=$H2_NQN --hostid=$H2_ID"
modprobe -a nvme-tcp || { echo "cannot load nvme-tcp"; exit 1; }
since() { awk -v a="$1" -v b="$(cut -d' ' -f1 /proc/uptime)" 'BEGIN{printf "%.1f", b-a}'; }
ctrl_state() { cat "/sys/class/nvme/$1/state" 2>/dev/null; }

# --- each host NQN sees exactly its entries (the group and the access list matter)
discover_exact h1-discover-exact $E/h1-initial -- $DC $AS_H1
discover_exact h2-discover-exact $E/h2-initial -- $DC $AS_H2
discover_exact unknown-host-discover-exact $E/unknown-initial -- $DC
i=0; while [ -n "$(nvme_state)" ] && [ $i -lt 50 ]; do sleep 0.1; i=$((i+1)); done

# --- a persistent discovery controller for each host.  nvme-cli 2.3 reuses any discovery
# controller it finds for the address, whatever its host NQN, unless --force is given: from
# here on, a new connection needs --force.
aen_watch /tmp/aen
sleep 0.3
# connect_persistent CHECK HOSTNQN HOSTID : nvme discover -p as that host; CTRL := its controller
connect_persistent() {
    local rc
    run nvme discover -p --force $DC --hostnqn="$2" --hostid="$3" --keep-alive-tmo=$KATO -o json; rc=$?
    CTRL=$(dc_ctrl "$2")
    if [ $rc = 0 ] && [ -n "$CTRL" ] && [ "$(ctrl_state "$CTRL")" = live ]; then pass "$1"
    else fail "$1" "rc=$rc, controller '${CTRL:-none}' $(ctrl_state "$CTRL"); $(why $rc)"; fi
}
connect_persistent persistent-h1 "$H1_NQN" "$H1_ID"; C1=$CTRL
connect_persistent persistent-h2 "$H2_NQN" "$H2_ID"; C2=$CTRL
t_connect=$(cut -d' ' -f1 /proc/uptime)
nvme_state
echo "persistent discovery controllers: h1 ${C1:-none}, h2 ${C2:-none}"

# reread CHECK WANT CTRL AS : the log page over persistent controller CTRL
reread() {
    if [ -n "$3" ]; then discover_exact "$1" "$2" -- -p -d "$3" $DC $4 --keep-alive-tmo=$KATO
    else fail "$1" "no persistent discovery controller"; fi
}
# rearm CTRL : read the discovery log page header with RAE=0, which re-enables the change
# notice on CTRL.  `nvme discover` does not do it for pages over 4 KiB: libnvme 1.3 keeps RAE
# set on the last chunk of a log page read in several chunks (h1's page has 6 records).
rearm() {
    REARM_RC=none
    [ -n "$1" ] || return
    echo "+ nvme get-log /dev/$1 --log-id=0x70 --log-len=1024   (RAE=0)"
    timeout "$CMD_TIMEOUT" nvme get-log "/dev/$1" --log-id=0x70 --log-len=1024 > /tmp/rearm.out 2>&1
    REARM_RC=$?
    head -n 3 /tmp/rearm.out; echo "  -> rc=$REARM_RC"
}

# --- dem-cli adds subsystems only h1 may use: h1 is notified, h2 is not
host_step restricted
t0=$(cut -d' ' -f1 /proc/uptime)
if [ -z "$C1" ]; then fail aen-h1-on-restricted-add "no persistent discovery controller for h1"
elif aen_wait /tmp/aen 0x70f002 1 15 "$C1"; then
    pass aen-h1-on-restricted-add; echo "h1 ($C1) notified after $(since "$t0") s"
else
    fail aen-h1-on-restricted-add "no NVME_AEN=0x70f002 uevent for $C1 within 15 s of dem-cli's changes (uevents: $(tr '\n' ' ' < /tmp/aen 2>/dev/null)); $C1 $(ctrl_state "$C1")"
fi
sleep $QUIET
n2=$(aen_count /tmp/aen 0x70f002 "$C2")
if [ -z "$C2" ]; then fail no-aen-h2-on-restricted-add "no persistent discovery controller for h2"
elif [ "$n2" = 0 ]; then pass no-aen-h2-on-restricted-add; echo "h2 ($C2): no notice $(since "$t0") s after the changes"
else fail no-aen-h2-on-restricted-add "h2's controller $C2 got $n2 NVME_AEN=0x70f002 for subsystems it may not use (uevents: $(tr '\n' ' ' < /tmp/aen))"; fi
cat /tmp/aen 2>/dev/null
reread h1-reread-shows-restricted $E/h1-restricted "$C1" "$AS_H1"
rearm "$C1"
reread h2-reread-unchanged $E/h2-initial "$C2" "$AS_H2"
discover_exact h2-discover-unchanged $E/h2-initial -- --force $DC $AS_H2

# --- dem-cli adds a subsystem for any host: both are notified
n1=$(aen_count /tmp/aen 0x70f002 "$C1"); n2=$(aen_count /tmp/aen 0x70f002 "$C2")
host_step shared
t0=$(cut -d' ' -f1 /proc/uptime)
if [ -z "$C2" ]; then fail aen-h2-on-shared-add "no persistent discovery controller for h2"
elif aen_wait /tmp/aen 0x70f002 $((n2+1)) 15 "$C2"; then
    pass aen-h2-on-shared-add; echo "h2 ($C2) notified after $(since "$t0") s"
else
    fail aen-h2-on-shared-add "no NVME_AEN=0x70f002 uevent for $C2 within 15 s of dem-cli's change ($(aen_count /tmp/aen 0x70f002 "$C2") so far); $C2 $(ctrl_state "$C2")"
fi
if [ -z "$C1" ]; then fail aen-h1-on-shared-add "no persistent discovery controller for h1"
elif aen_wait /tmp/aen 0x70f002 $((n1+1)) 15 "$C1"; then
    pass aen-h1-on-shared-add; echo "h1 ($C1) notified after $(since "$t0") s"
else
    fail aen-h1-on-shared-add "no second NVME_AEN=0x70f002 uevent for $C1 within 15 s of dem-cli's change ($(aen_count /tmp/aen 0x70f002 "$C1") so far; RAE=0 re-arm read rc=$REARM_RC); $C1 $(ctrl_state "$C1")"
fi
cat /tmp/aen
reread h2-reread-shows-shared $E/h2-final "$C2" "$AS_H2"
reread h1-reread-shows-shared $E/h1-final "$C1" "$AS_H1"

# --- both persistent controllers stayed up at least 2 x KATO (keep-alive answered)
while [ "$(awk -v a="$t_connect" -v b="$(cut -d' ' -f1 /proc/uptime)" -v k=$KATO 'BEGIN{print (b-a < 2*k+1)}')" = 1 ]; do sleep 0.5; done
nvme_state
s1=$(ctrl_state "$C1"); s2=$(ctrl_state "$C2")
if [ -n "$C1" ] && [ -n "$C2" ] && [ "$s1" = live ] && [ "$s2" = live ]; then pass persistent-dcs-alive
else fail persistent-dcs-alive "h1 '${C1:-none}' ${s1:-gone}, h2 '${C2:-none}' ${s2:-gone}, $(since "$t_connect") s after connecting with kato=$KATO"; fi
run nvme disconnect-all
i=0; while [ -n "$(nvme_state)" ] && [ $i -lt 50 ]; do sleep 0.1; i=$((i+1)); done

# --- fresh connections see the final pages
discover_exact h1-discover-final $E/h1-final -- $DC $AS_H1
discover_exact h2-discover-final $E/h2-final -- $DC $AS_H2
dmesg_nvme 60
