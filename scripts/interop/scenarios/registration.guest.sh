# registration (guest side): see registration.sh.  busybox ash, with
# /usr/lib/dem-interop/lib.sh sourced by /init.
# shellcheck shell=dash
# shellcheck disable=SC2086  # $DC is a list of nvme-cli options
E=/host/expect
KATO=5
modprobe -a nvme-tcp || { echo "cannot load nvme-tcp"; exit 1; }
ctrl_state() { cat "/sys/class/nvme/$1/state" 2>/dev/null; }

if [ "$(hostname)" = "$GUEST_NAME" ]; then pass guest-name
else fail guest-name "the guest's host name is '$(hostname)', the scenario expects '$GUEST_NAME'"; fi

# --- a persistent discovery controller: dem's own entry only (a registration grants nothing)
aen_watch /tmp/aen
sleep 0.3
run nvme discover -p $DC --keep-alive-tmo=$KATO -o json; rc=$?
CTRL=$(dc_ctrl)
nvme_state
if [ $rc = 0 ] && [ -n "$CTRL" ] && [ "$(ctrl_state "$CTRL")" = live ]; then pass persistent-discover
else fail persistent-discover "rc=$rc, controller '${CTRL:-none}' $(ctrl_state "$CTRL"); $(why $rc)"; fi
# reread CHECK WANT : the log page over the persistent controller
reread() {
    if [ -n "$CTRL" ]; then discover_exact "$1" "$2" -- -p -d "$CTRL" $DC --keep-alive-tmo=$KATO
    else fail "$1" "no persistent discovery controller"; fi
}
reread page-before-adopt $E/before

# dim CHECK TASK : nvme dim on the persistent controller
dim() {
    if [ -z "$CTRL" ]; then fail "$1" "no persistent discovery controller"; return; fi
    run nvme dim -d "$CTRL" --task="$2"; rc=$?
    cat /tmp/out
    if [ $rc = 0 ]; then pass "$1"; else fail "$1" "nvme dim --task=$2: $(why $rc): $(tail -n 1 /tmp/out)"; fi
}
dim dim-register register
host_step listed

# --- the administrator adopts the host by its name and zones it with REG: a notice, then REG
host_step adopt
t0=$(cut -d' ' -f1 /proc/uptime)
if aen_wait /tmp/aen 0x70f002 1 15 "$CTRL"; then pass aen-on-adopt
else fail aen-on-adopt "no NVME_AEN=0x70f002 uevent within 15 s of the zone's activation ($(aen_count /tmp/aen 0x70f002) so far)"; fi
reread reread-shows-adopted $E/adopted

host_step revoke
if aen_wait /tmp/aen 0x70f002 2 15 "$CTRL"; then pass aen-on-revoke
else fail aen-on-revoke "no second NVME_AEN=0x70f002 uevent within 15 s of the zone's deactivation ($(aen_count /tmp/aen 0x70f002) so far)"; fi
reread reread-hides-revoked $E/before

dim dim-deregister deregister
host_step seen
if [ -n "$CTRL" ] && [ "$(ctrl_state "$CTRL")" = live ]; then pass persistent-dc-alive
else fail persistent-dc-alive "controller '${CTRL:-none}' is $(ctrl_state "$CTRL")"; fi
run nvme disconnect-all
