# spdk (guest side): the guest as a host of SPDK's target on the host machine, found through
# dem (see spdk.sh).  busybox ash, with /usr/lib/dem-interop/lib.sh sourced by /init.
# shellcheck shell=dash
# shellcheck disable=SC2086  # $DC and $AS are lists of nvme-cli options
E=/host/expect
AS="--hostnqn=$HOSTNQN --hostid=$HOSTID"
modprobe -a nvme-tcp || { echo "cannot load nvme-tcp"; exit 1; }
# the target's address is reached through qemu's NAT (the guest has no default route)
ip route add "$TGT_ADDR" via "$DC_ADDR" dev eth0

# ---------------------------------------------------------------- discover, connect, I/O
connect_io_checks $NQN $E/initial -- $DC $AS
dev=$DEV
ctl=""
[ -n "$dev" ] && ctl=$(ctl_of $NQN)
uuid_before=$(cat /sys/block/${dev#/dev/}/uuid 2>/dev/null)
echo "namespace $dev on $ctl, uuid $uuid_before"

# ---------------------------------------------------------------- nvmf_tgt restarts
host_step restart 60
# the controller reconnects by itself (reconnect_delay 10 s)
i=0; state=""; seen=""
while [ $i -lt 600 ]; do
    state=$(cat /sys/class/nvme/$ctl/state 2>/dev/null)
    [ "$state" != live ] && seen="$seen ${state:-gone}"
    [ "$state" = live ] && { [ -n "$seen" ] || [ $i -gt 150 ]; } && break
    sleep 0.1; i=$((i+1))
done
echo "controller states seen while nvmf_tgt restarted:$(echo "$seen" | tr ' ' '\n' | uniq | tr '\n' ' ')"
nvme_state
if [ -n "$ctl" ] && [ "$state" = live ]; then pass reconnect-after-restart; echo "$ctl live again after $((i / 10)) s"
else fail reconnect-after-restart "controller '${ctl:-none}' is '${state:-gone}' 60 s after nvmf_tgt's restart"; fi
# the same namespace: same UUID, same block device (dem-em gives it a UUID that lasts)
j=0; while [ ! -b "$dev" ] && [ $j -lt 100 ]; do sleep 0.1; j=$((j+1)); done
uuid_after=$(cat /sys/block/${dev#/dev/}/uuid 2>/dev/null)
if [ -n "$uuid_before" ] && [ "$uuid_after" = "$uuid_before" ] && [ "$(ns_dev $NQN)" = "$dev" ]; then
    pass same-namespace-after-restart
else
    fail same-namespace-after-restart "namespace uuid '$uuid_before' then '$uuid_after', device $dev then $(ns_dev $NQN); $(dmesg_nvme | tail -n 3 | tr '\n' ' ')"
fi
# a RAM bdev starts empty: write a new pattern and read it back
dd if=/dev/urandom of=/tmp/pattern2 bs=4096 count=256 2>/dev/null
dev2=$(ns_dev $NQN)
if [ -z "$dev2" ]; then
    fail direct-io-after-restart "no block device for $NQN"
elif run dd if=/tmp/pattern2 of="$dev2" bs=4096 count=256 oflag=direct \
     && run dd if="$dev2" of=/tmp/readback2 bs=4096 count=256 iflag=direct; then
    if cmp -s /tmp/pattern2 /tmp/readback2; then pass direct-io-after-restart
    else fail direct-io-after-restart "read back differs from written data"; fi
else
    fail direct-io-after-restart "$(why $?)"
fi
check disconnect nvme disconnect -n $NQN
dmesg_nvme | tail -n 8

# ---------------------------------------------------------------- delete
host_step delete 60
