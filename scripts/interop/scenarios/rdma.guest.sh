# rdma (guest side): soft-RoCE on eth0, dem and dem-em (RDMA trait) from /host, the kernel's
# nvme-rdma host and nvmet-rdma target (see rdma.sh).
# busybox ash, with /usr/lib/dem-interop/lib.sh sourced by /init.
# shellcheck shell=dash
# shellcheck disable=SC2086  # $RD and $AS are lists of nvme-cli options
E=/host/expect
D=/tmp/dem
EM_DIR=/tmp/dem-em
AS="--hostnqn=$HOSTNQN --hostid=$HOSTID"
RD="-t rdma -a 10.0.2.15 -s 8009"
SUB=$CFG/subsystems/$NQN
P1=$CFG/ports/1
modprobe -a crc32_generic ib_core ib_uverbs rdma_cm rdma_ucm rdma_rxe || { echo "cannot load the RDMA modules"; exit 1; }
check rxe-link rdma link add rxe0 type rxe netdev eth0 || { dmesg | tail -n 5; exit 1; }
ibv_devices
modprobe -a nvmet nvmet-rdma nvme-rdma || { echo "cannot load nvmet-rdma/nvme-rdma"; exit 1; }
nullb_memory 1 || { echo "cannot load null_blk"; exit 1; }

alive() { [ -e /proc/$1/stat ] && [ "$(awk '{print $3}' /proc/$1/stat 2>/dev/null)" != Z ]; }
# wait_log FILE PATTERN PID : until FILE has a line matching PATTERN (60 s), while PID lives
wait_log() {
    local i=0
    while ! grep -q "$2" "$1" && alive "$3" && [ $i -lt 600 ]; do sleep 0.1; i=$((i+1)); done
    grep "$2" "$1"
}

# ---------------------------------------------------------------- dem: discovery over RDMA
mkdir -p $D $EM_DIR
echo "+ dem serve --address 127.0.0.1 --rdma-address 10.0.2.15 --port 8009 --dc-nqn $DC_NQN --hostnqn $DEM_HOSTNQN"
/host/dem serve --address 127.0.0.1 --rdma-address 10.0.2.15 --port 8009 --dc-nqn "$DC_NQN" --data-dir $D \
    --hostnqn "$DEM_HOSTNQN" --api-port 22345 --probe-interval 1 --target-timeout 10 --log-level debug \
    > /tmp/dem.log 2>&1 < /dev/null &
DEM_PID=$!
if wait_log /tmp/dem.log 'transport=rdma.*discovery controller listening' $DEM_PID | grep -q 'address=10.0.2.15'; then
    pass dem-rdma-listen
else
    fail dem-rdma-listen "dem $(alive $DEM_PID && echo 'does not say it listens over RDMA' || echo exited): $(tail -n 3 /tmp/dem.log)"
fi

# ---------------------------------------------------------------- dem-em: in-band over RDMA
i=0; while [ ! -s $D/fabric.key ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i+1)); done
cp $D/fabric.key $EM_DIR/fabric.key && chmod 600 $EM_DIR/fabric.key
echo "+ dem-em --api-address 127.0.0.1 --inband-transport rdma --inband-address 10.0.2.15 --alias t1 --inband-allow-host $DEM_HOSTNQN"
/host/dem-em --data-dir $EM_DIR --fabric-key $EM_DIR/fabric.key --api-address 127.0.0.1 \
    --inband-transport rdma --inband-address 10.0.2.15 --inband-port 22335 --alias t1 \
    --inband-allow-host "$DEM_HOSTNQN" --check-interval 2 --log-level "${EM_LOG_LEVEL:-info}" \
    > /tmp/em.log 2>&1 < /dev/null &
EM_PID=$!
if wait_log /tmp/em.log 'in-band management channel listening' $EM_PID | grep 'transport=rdma' | grep -q "nqn=$MGMT_NQN"; then
    pass em-start-rdma
else
    fail em-start-rdma "dem-em $(alive $EM_PID && echo 'does not say its in-band channel listens over RDMA' || echo exited): $(tail -n 3 /tmp/em.log)"
fi

# ---------------------------------------------------------------- dem-cli: t1 in band over RDMA
CLI_ERR=""
cli() {
    [ -n "$CLI_ERR" ] && return 1
    echo "+ dem-cli $*"
    DEM_DATA_DIR=$D timeout 30 /host/dem-cli -p 22345 "$@" > /tmp/cli.out 2>&1 < /dev/null || CLI_ERR="dem-cli $* failed: $(tail -n 2 /tmp/cli.out | tr '\n' ' ')"
    cat /tmp/cli.out
}
cli add target t1
cli set inband t1 rdma ipv4 10.0.2.15 22335
cli set portid t1 1 rdma ipv4 10.0.2.15 4420
cli set subsystem t1 "$NQN" 0
cli set ns t1 "$NQN" 1 /dev/nullb0
cli set host h1 "$HOSTNQN" "$HOSTID"
cli set acl t1 "$NQN" h1
if [ -z "$CLI_ERR" ]; then pass inband-configure; else fail inband-configure "$CLI_ERR"; fi
t0=$(cut -d' ' -f1 /proc/uptime)
# up to 60 s (each dem-cli run takes a while under TCG)
while awk -v a="$t0" -v b="$(cut -d' ' -f1 /proc/uptime)" 'BEGIN { exit !(b - a < 60) }'; do
    DEM_DATA_DIR=$D /host/dem-cli -p 22345 get target t1 > /tmp/t1 2>&1 < /dev/null
    grep -Eq 'State: +reachable' /tmp/t1 && grep -Eq 'Entries served: +[1-9]' /tmp/t1 && break
    sleep 0.5
done
cat /tmp/t1
if grep -Eq 'State: +reachable' /tmp/t1 && grep -Eq 'Entries served: +[1-9]' /tmp/t1; then
    pass dem-serves-live-subsystem
    echo "served after $(awk -v a="$t0" -v b="$(cut -d' ' -f1 /proc/uptime)" 'BEGIN{printf "%.1f", b-a}') s"
else
    fail dem-serves-live-subsystem "t1 not reachable in band over RDMA with an entry served within 60 s: $(grep -E 'State|LastError|Entries' /tmp/t1 | tr '\n' ' ')"
fi

# ---------------------------------------------------------------- configfs, discover, connect, I/O
exported_checks $NQN rdma
connect_io_checks $NQN $E/initial -- $RD $AS
if grep -A12 "\"subnqn\" *: *\"$NQN\"" /tmp/discover-lists-subsystem.json | grep -q '"trtype" *: *"rdma"' \
   || grep -B12 "\"subnqn\" *: *\"$NQN\"" /tmp/discover-lists-subsystem.json | grep -q '"trtype" *: *"rdma"'; then
    pass discover-trtype-rdma
else
    fail discover-trtype-rdma "the entry of $NQN is not TRTYPE rdma: $(tr -d '\n' < /tmp/discover-lists-subsystem.json | cut -c1-300)"
fi
if nvme_state | grep "$NQN" | grep -q ' rdma '; then pass connect-all-rdma
else fail connect-all-rdma "no rdma controller for $NQN: $(nvme_state | tr '\n' ';')"; fi
run nvme disconnect -n $NQN; rc=$?
i=0; while ns_dev $NQN > /dev/null && [ $i -lt 50 ]; do sleep 0.1; i=$((i+1)); done
if [ $rc = 0 ] && ! ns_dev $NQN > /dev/null; then pass disconnect-io
else fail disconnect-io "rc=$rc; controllers: $(nvme_state | tr '\n' ';')"; fi

# ---------------------------------------------------------------- a host that is not dem
dmesg -c > /dev/null
run nvme connect -t rdma -a 10.0.2.15 -s 22335 -n "$MGMT_NQN" $AS; rc=$?
dmesg | tail -n 5
if [ $rc != 0 ] && dmesg | grep -q "is not allowed" && ! nvme_state | grep -q "$MGMT_NQN"; then
    pass not-dem-refused
else
    fail not-dem-refused "nvme connect -t rdma to $MGMT_NQN as $HOSTNQN: rc=$rc; dmesg: $(dmesg | tail -n 2 | tr '\n' ' '); controllers: $(nvme_state | tr '\n' ';')"
fi
if grep 'in-band connection refused' /tmp/em.log | grep -q "hostnqn=$HOSTNQN"; then pass em-logged-refusal
else fail em-logged-refusal "dem-em did not log the refusal of $HOSTNQN: $(tail -n 2 /tmp/em.log)"; fi

# ---------------------------------------------------------------- DH-HMAC-CHAP over NVMe/RDMA
# (the in-band channel above already authenticated both ways over RDMA, or nothing would have
# reached configfs)
CLI_ERR=""
cli set host h1 --dhchap-secret generate
KEY=$(grep '^Secret:' /tmp/cli.out | awk '{print $2}')
base="transport=rdma,traddr=10.0.2.15,trsvcid=8009,nqn=nqn.2014-08.org.nvmexpress.discovery,hostnqn=$HOSTNQN,hostid=$HOSTID"
dmesg -c > /dev/null
if [ -n "$CLI_ERR" ] || [ -z "$KEY" ]; then
    fail rdma-auth-key "no key: $CLI_ERR"
elif c=$(fabrics "$base,dhchap_secret=$KEY"); then
    dmesg | grep -i nvme | tail -n 2
    if dmesg | grep -q "$c: qid 0: authenticated"; then pass rdma-auth-key
    else fail rdma-auth-key "$c connected, but the kernel logged no authentication: $(dmesg | tail -n 2 | tr '\n' ' ')"; fi
    echo 1 > /sys/class/nvme/$c/delete_controller
else
    fail rdma-auth-key "refused with the key: $(dmesg | grep -i nvme | tail -n 2 | tr '\n' ' ')"
fi
dmesg -c > /dev/null
if c=$(fabrics "$base"); then
    fail rdma-auth-no-key-refused "a controller was created: $c"
    echo 1 > /sys/class/nvme/$c/delete_controller
elif dmesg | grep -q 'no key'; then pass rdma-auth-no-key-refused
else fail rdma-auth-no-key-refused "refused, but not for a missing key: $(dmesg | grep -i nvme | tail -n 2 | tr '\n' ' ')"; fi

# ---------------------------------------------------------------- delete
CLI_ERR=""
cli -f delete subsystem t1 "$NQN"
if [ -z "$CLI_ERR" ]; then pass cli-delete; else fail cli-delete "$CLI_ERR"; fi
i=0; while [ -d $SUB ] && [ $i -lt 200 ]; do sleep 0.1; i=$((i+1)); done
if [ ! -d $SUB ] && [ ! -L $P1/subsystems/$NQN ]; then pass configfs-subsystem-removed
else fail configfs-subsystem-removed "$SUB still there after 20 s: $(ls $P1/subsystems 2>&1 | tr '\n' ' ')"; fi

# ---------------------------------------------------------------- stop
# stop_clean NAME PID : SIGTERM, then exit status 0 within 20 s
stop_clean() {
    local i=0 rc
    kill -TERM $2
    while alive $2 && [ $i -lt 200 ]; do sleep 0.1; i=$((i+1)); done
    if alive $2; then kill -KILL $2; fail $1 "did not exit within 20 s of SIGTERM"; return; fi
    wait $2; rc=$?
    if [ $rc = 0 ]; then pass $1; else fail $1 "exit status $rc"; fi
}
stop_clean dem-stop-clean $DEM_PID
stop_clean em-final-stop-clean $EM_PID
echo "--- dem-em's log:"; cat /tmp/em.log
echo "--- dem's log:"; cat /tmp/dem.log
echo "--- end of dem's log"
