# endpoint-auth (guest side): dem-em provisions nvmet's host keys; the kernel host proves them.
# shellcheck shell=dash
EM_DIR=/tmp/dem-em
SUB=$CFG/subsystems/$NQN
modprobe -a nvmet nvmet-tcp nvme-tcp || { echo "cannot load nvmet/nvme-tcp"; exit 1; }
nullb_memory 1 || { echo "cannot load null_blk"; exit 1; }
if grep -q nvmet_setup_auth /proc/kallsyms; then pass ea-modules-loaded
else fail ea-modules-loaded "nvmet without authentication loaded"; fi

mkdir -p $EM_DIR && cp /host/fabric.key $EM_DIR/fabric.key && chmod 600 $EM_DIR/fabric.key
/host/dem-em --data-dir $EM_DIR --fabric-key $EM_DIR/fabric.key \
    --api-address 0.0.0.0 --api-port 22334 --join "http://$DC_ADDR:$API_PORT" --alias t1 \
    --advertise-address 127.0.0.1 --advertise-port "$EM_FWD_PORT" --check-interval 2 \
    --log-level info > /tmp/em.log 2>&1 < /dev/null &
i=0; while ! grep -q 'joined dem' /tmp/em.log && [ $i -lt 600 ]; do sleep 0.1; i=$((i+1)); done
if grep -q 'joined dem' /tmp/em.log; then pass ea-em-join; else fail ea-em-join "$(tail -n 3 /tmp/em.log)"; fi

host_step configure
. /host/keys.sh
H=$CFG/hosts/$HOSTNQN
i=0; while [ "$(cat $H/dhchap_key 2>/dev/null)" != "$HOST_KEY" ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i+1)); done
echo "--- configfs hosts/…: hash $(cat $H/dhchap_hash 2>&1), group $(cat $H/dhchap_dhgroup 2>&1), allowed: $(ls $SUB/allowed_hosts 2>&1)"
if [ "$(cat $H/dhchap_key 2>/dev/null)" = "$HOST_KEY" ] && [ "$(cat $H/dhchap_ctrl_key 2>/dev/null)" = "$CTRL_KEY" ] \
    && [ -L "$SUB/allowed_hosts/$HOSTNQN" ]; then pass ea-configfs-key
else fail ea-configfs-key "hosts/$HOSTNQN/dhchap_key is not the key dem-cli made (or the host is not allowed)"; fi
# dem-em's own answers carry the keys sealed only
wget -q -O /tmp/config.json --header "Authorization: Bearer $(cat $EM_DIR/fabric.key)" http://127.0.0.1:22334/config 2>/dev/null \
    || /host/dem-em --help > /dev/null
if [ -s /tmp/config.json ] && grep -q DEMSEAL-1 /tmp/config.json && ! grep -q "${HOST_KEY#DHHC-1:00:}" /tmp/config.json; then
    pass ea-em-answers-sealed
elif [ ! -s /tmp/config.json ]; then
    if grep -q "${HOST_KEY#DHHC-1:00:}" $EM_DIR/*.json 2>/dev/null; then fail ea-em-answers-sealed "the key is in dem-em's state files"
    else pass ea-em-answers-sealed; fi
else fail ea-em-answers-sealed "GET /config shows the key in the clear"; fi

T="-t tcp -a 10.0.2.15 -s 4420 -n $NQN --hostnqn=$HOSTNQN --hostid=$HOSTID"
dmesg -c > /dev/null
run nvme connect $T; rc=$?
if [ $rc != 0 ]; then pass ea-connect-no-key-refused
else fail ea-connect-no-key-refused "connected without a key"; nvme disconnect -n $NQN; fi
dmesg | grep -i nvme | tail -n 3
run nvme connect $T --dhchap-secret="$WRONG_KEY"; rc=$?
if [ $rc != 0 ]; then pass ea-connect-wrong-key-refused
else fail ea-connect-wrong-key-refused "connected with a wrong key"; nvme disconnect -n $NQN; fi
dmesg | grep -i nvme | tail -n 3

run nvme connect $T --dhchap-secret="$HOST_KEY"; rc=$?
i=0; while ! ns_dev "$NQN" > /dev/null && [ $i -lt 100 ]; do sleep 0.1; i=$((i+1)); done
DEV=$(ns_dev "$NQN")
dd if=/dev/urandom of=/tmp/pattern bs=4096 count=64 2>/dev/null
if [ $rc = 0 ] && [ -n "$DEV" ] && dd if=/tmp/pattern of="$DEV" bs=4096 count=64 oflag=direct 2>/dev/null \
    && dd if="$DEV" of=/tmp/readback bs=4096 count=64 iflag=direct 2>/dev/null && cmp -s /tmp/pattern /tmp/readback; then
    pass ea-connect-key-io
else fail ea-connect-key-io "rc=$rc dev=$DEV: $(why $rc)"; fi
nvme disconnect -n $NQN > /dev/null 2>&1; sleep 0.5

run nvme connect $T --dhchap-secret="$HOST_KEY" --dhchap-ctrl-secret="$CTRL_KEY"; rc=$?
if [ $rc = 0 ] && dmesg | grep -q 'authenticated'; then pass ea-connect-two-way
else fail ea-connect-two-way "$(why $rc)"; fi
nvme disconnect -n $NQN > /dev/null 2>&1; sleep 0.5

# dem-ac: its discovery connection to dem authenticates, and the I/O controller gets the key
echo "$HOST_KEY" > /tmp/hostkey; chmod 600 /tmp/hostkey
/host/dem-ac -t tcp -a $DC_ADDR -s $DC_PORT --dhchap-secret-file /tmp/hostkey --state-dir /tmp/dem-ac \
    --log-level info > /tmp/ac.log 2>&1 < /dev/null &
AC=$!
i=0; while ! ns_dev "$NQN" > /dev/null && [ $i -lt 200 ]; do sleep 0.1; i=$((i+1)); done
if ns_dev "$NQN" > /dev/null; then pass ea-ac-connects
else fail ea-ac-connects "no namespace of $NQN within 20 s: $(tail -n 3 /tmp/ac.log)"; fi
kill -TERM $AC; sleep 1
tail -n 5 /tmp/ac.log
nvme disconnect-all > /dev/null 2>&1

if grep -qF "${HOST_KEY#DHHC-1:00:}" /tmp/em.log /tmp/ac.log; then fail ea-no-secret-in-em-ac-logs "the host key is in dem-em's or dem-ac's log"
else pass ea-no-secret-in-em-ac-logs; fi
echo "--- dem-em's log (tail)"; tail -n 15 /tmp/em.log
dmesg_nvme 40
bad=$(dmesg | grep -iE 'nvme' | grep -iE 'oops|bug|warn|reset' | head -n 3)
if [ -z "$bad" ]; then pass ea-dmesg-clean; else fail ea-dmesg-clean "$bad"; fi
