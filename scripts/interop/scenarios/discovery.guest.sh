# discovery (guest side); parameters from /host/params.sh, expectations in /host/expect.
E=/host/expect
modprobe -a nvme-tcp || { echo "cannot load nvme-tcp"; exit 1; }

# plain text output lists the subsystems this host may see, and only those
run nvme discover $DC; rc=$?
if [ $rc != 0 ]; then fail discover-plain "$(why $rc)"
else
    miss=""; for n in $(cat $E/default.want); do grep -qF "$n" /tmp/out || miss="$miss $n"; done
    extra=""; for n in $(cat $E/default.hide); do grep -qF "$n" /tmp/out && extra="$extra $n"; done
    if [ -z "$miss$extra" ]; then pass discover-plain
    else fail discover-plain "missing:${miss:- none}; must be hidden:${extra:- none}"; fi
fi

discover_json discover-json $E/default.want $E/default.hide -- $DC
# dem's own entry: SUBTYPE 3 "current discovery subsystem", its unique NQN (--dc-nqn),
# the address and port it listens on (127.0.0.1:DC_PORT)
json_records /tmp/discover-json.json > /tmp/records
echo "records (subtype|subnqn|traddr|trsvcid):"; cat /tmp/records
if grep -qxF "current discovery subsystem|$DC_NQN|127.0.0.1|$DC_PORT" /tmp/records; then pass discover-json-dc-entry
else fail discover-json-dc-entry "no record 'current discovery subsystem|$DC_NQN|127.0.0.1|$DC_PORT'; SUBTYPE 3 records: $(grep '^current discovery subsystem' /tmp/records | tr '\n' ' ')"; fi

discover_raw discover-raw $E/default.bin -- $DC
xxd -l 16 /tmp/discover-raw.bin

# per-host pages
discover_json hostnqn-x-json $E/x.want $E/x.hide -- $DC --hostnqn=$HOSTNQN_X --hostid=$HOSTID_X
discover_raw hostnqn-x-raw $E/x.bin -- $DC --hostnqn=$HOSTNQN_X --hostid=$HOSTID_X
discover_json hostnqn-y-json $E/y.want $E/y.hide -- $DC --hostnqn=$HOSTNQN_Y --hostid=$HOSTID_Y
discover_raw hostnqn-y-raw $E/y.bin -- $DC --hostnqn=$HOSTNQN_Y --hostid=$HOSTID_Y

# every non-persistent discovery controller was deleted again (clean shutdown/disconnect)
i=0; while [ -n "$(nvme_state)" ] && [ $i -lt 50 ]; do sleep 0.1; i=$((i+1)); done
left=$(nvme_state)
if [ -z "$left" ]; then pass discover-leaves-no-controller
else fail discover-leaves-no-controller "controllers left: $left"; fi

# header and data digests last: a bad digest has been seen to oops the 6.1 host
# (CRC32C on every PDU header and data)
discover_json digest-discover-json $E/default.want $E/default.hide -- $DC --hdr-digest --data-digest
discover_raw digest-discover-raw $E/default.bin -- $DC --hdr-digest --data-digest

# the kernel logged no NVMe error / timeout / reset
dmesg_nvme 60
bad=$(dmesg | grep -v 'ommand line' | grep -iE 'nvme' | grep -iE 'err|fail|bad|time.?out|incomplete|invalid|unsupported|reset|abort|unknown|recover' | head -n 3)
if [ -z "$bad" ]; then pass guest-dmesg-clean-discovery
else fail guest-dmesg-clean-discovery "$bad"; fi
