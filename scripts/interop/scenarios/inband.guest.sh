# inband (guest side): dem-em from /host/dem-em on this kernel's nvmet configfs, its REST API
# on loopback only, managed by dem on the host through its in-band channel (see inband.sh).
# busybox ash, with /usr/lib/dem-interop/lib.sh sourced by /init.
# shellcheck shell=dash
# shellcheck disable=SC2086  # $DC and $AS are lists of nvme-cli options
E=/host/expect
EM_DIR=/tmp/dem-em
AS="--hostnqn=$HOSTNQN --hostid=$HOSTID"
SUB=$CFG/subsystems/$NQN
modprobe -a nvmet nvmet-tcp nvme-tcp || { echo "cannot load nvmet/nvme-tcp"; exit 1; }
nullb_memory 1 || { echo "cannot load null_blk"; exit 1; }

# dem-em enrols with dem (a one-time join token and the CA's fingerprint; dem's API at the
# host's 10.0.2.2) and gets the fabric credential its in-band channel authenticates with: no
# fabric.key is copied
mkdir -p $EM_DIR
echo "+ dem-em --enrol https://$DC_ADDR:$API_PORT --token … --ca-hash … --api-address 127.0.0.1 --inband-address 0.0.0.0 --alias t1 --inband-allow-host $DEM_HOSTNQN"
/host/dem-em --data-dir $EM_DIR --enrol "https://$DC_ADDR:$API_PORT" --token "$(cat /host/join.token)" \
    --ca-hash "$(cat /host/ca.hash)" --api-address 127.0.0.1 \
    --inband-address 0.0.0.0 --inband-port 22335 --alias t1 --inband-allow-host "$DEM_HOSTNQN" \
    --check-interval 2 --log-level "${EM_LOG_LEVEL:-info}" > /tmp/em.log 2>&1 < /dev/null &
EM_PID=$!
em_alive() { [ -e /proc/$EM_PID/stat ] && [ "$(awk '{print $3}' /proc/$EM_PID/stat 2>/dev/null)" != Z ]; }
i=0
while ! grep -q 'in-band management channel listening' /tmp/em.log && em_alive && [ $i -lt 600 ]; do sleep 0.1; i=$((i+1)); done
if grep -q 'enrolled with dem' /tmp/em.log && [ "$(stat -c %a $EM_DIR/fabric.key)" = 600 ]; then pass em-enrolled
else fail em-enrolled "dem-em did not enrol: $(grep -m 3 -i 'enrol\|critical' /tmp/em.log); $(ls -l $EM_DIR 2>&1 | tr '\n' ' ')"; fi
if grep 'in-band management channel listening' /tmp/em.log | grep -q "nqn=$MGMT_NQN"; then pass em-start-inband
else fail em-start-inband "dem-em $(em_alive && echo 'does not say its in-band channel listens' || echo exited): $(tail -n 3 /tmp/em.log)"; fi
host_step configure

# ---------------------------------------------------------------- configfs as dem-cli set it
P1=$CFG/ports/1
exported_checks $NQN

# ---------------------------------------------------------------- discover, connect, I/O
connect_io_checks $NQN $E/initial -- $DC $AS
dev=$DEV

run nvme disconnect -n $NQN; rc=$?
i=0; while ns_dev $NQN > /dev/null && [ $i -lt 50 ]; do sleep 0.1; i=$((i+1)); done
if [ $rc = 0 ] && ! ns_dev $NQN > /dev/null; then pass disconnect-io
else fail disconnect-io "rc=$rc; controllers: $(nvme_state | tr '\n' ';')"; fi

# ---------------------------------------------------------------- a host that is not dem
dmesg -c > /dev/null
run nvme connect -t tcp -a 10.0.2.15 -s 22335 -n "$MGMT_NQN" $AS; rc=$?
cat /tmp/out
dmesg | tail -n 5
if [ $rc != 0 ] && dmesg | grep -q "is not allowed" && ! nvme_state | grep -q "$MGMT_NQN"; then
    pass not-dem-refused
else
    fail not-dem-refused "nvme connect to $MGMT_NQN as $HOSTNQN: rc=$rc; dmesg: $(dmesg | tail -n 2 | tr '\n' ' '); controllers: $(nvme_state | tr '\n' ';')"
fi
if grep 'in-band connection refused' /tmp/em.log | grep -q "hostnqn=$HOSTNQN"; then pass em-logged-refusal
else fail em-logged-refusal "dem-em did not log the refusal of $HOSTNQN: $(tail -n 2 /tmp/em.log)"; fi

# ---------------------------------------------------------------- delete
host_step delete
i=0; while [ -d $SUB ] && [ $i -lt 200 ]; do sleep 0.1; i=$((i+1)); done
if [ ! -d $SUB ] && [ ! -L $P1/subsystems/$NQN ]; then pass configfs-subsystem-removed
else fail configfs-subsystem-removed "$SUB still there after 20 s: $(ls $P1/subsystems 2>&1 | tr '\n' ' ')"; fi

kill -TERM $EM_PID
i=0; while em_alive && [ $i -lt 200 ]; do sleep 0.1; i=$((i+1)); done
if em_alive; then kill -KILL $EM_PID; fail em-final-stop-clean "dem-em did not exit within 20 s of SIGTERM"
else wait $EM_PID; rc=$?; if [ $rc = 0 ]; then pass em-final-stop-clean; else fail em-final-stop-clean "exit status $rc"; fi; fi
echo "--- dem-em's log:"; cat /tmp/em.log
