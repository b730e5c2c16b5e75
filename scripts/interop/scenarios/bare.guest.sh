# bare (guest side): the command from the README, against dem started with no arguments
modprobe -a nvme-tcp || { echo "cannot load nvme-tcp"; exit 1; }
run nvme discover -t tcp -a 10.0.2.2 -s 8009; rc=$?
if [ $rc != 0 ]; then fail bare-discover "$(why $rc)"; else pass bare-discover; fi
run nvme discover -t tcp -a 10.0.2.2 -s 8009 -o json; rc=$?
cp /tmp/out /tmp/bare.json
json_records /tmp/bare.json > /tmp/records
echo "records (subtype|subnqn|traddr|trsvcid):"; cat /tmp/records
if [ $rc = 0 ] && [ "$(wc -l < /tmp/records)" = 1 ] \
    && grep -qE '^current discovery subsystem\|nqn\.2014-08\.org\.nvmexpress:uuid:[0-9a-f-]{36}\|127\.0\.0\.1\|8009$' /tmp/records; then
    pass bare-dc-entry
else
    fail bare-dc-entry "expected exactly dem's own entry (current discovery subsystem, a uuid NQN, 127.0.0.1, 8009); got: $(tr '\n' ' ' < /tmp/records)"
fi
dmesg_nvme 20
