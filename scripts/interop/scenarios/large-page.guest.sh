# large-page (guest side)
E=/host/expect
modprobe -a nvme-tcp || { echo "cannot load nvme-tcp"; exit 1; }

# every bulk entry listed, and nothing else but dem's own SUBTYPE 3 entries
run nvme discover $DC -o json; rc=$?
cp /tmp/out /tmp/large.json
if [ $rc != 0 ]; then fail large-discover-json "nvme discover $(why $rc)"
else
    json_subnqns /tmp/large.json > /tmp/large.subnqns
    json_records /tmp/large.json > /tmp/records
    total=$(wc -l < /tmp/records)
    curr=$(grep -c '^current discovery subsystem|' /tmp/records)
    p=$(list_problems /tmp/large.subnqns $E/all.want)
    echo "records: $total ($curr current discovery subsystem)"
    if [ -n "$p" ]; then fail large-discover-json "$p($total records)"
    elif [ "$curr" -lt 1 ] || [ $((total - curr)) != "$BULK_COUNT" ]; then
        fail large-discover-json "$total records, $curr of them 'current discovery subsystem'; expected $BULK_COUNT + dem's own"
    else pass large-discover-json; fi
fi

discover_raw large-discover-raw $E/all.bin -- $DC
echo "raw page: $(wc -c < /tmp/large-discover-raw.bin 2>/dev/null) bytes"
discover_raw large-digest-discover-raw $E/all.bin -- $DC --hdr-digest --data-digest
dmesg_nvme 30
