# connect-aen (guest side)
NQN=$NULLB_NQN
KATO=5
modprobe -a nvmet nvmet-tcp nvme-tcp || { echo "cannot load nvmet/nvme-tcp"; exit 1; }

# --- the guest's own kernel target, listed by dem's entries file
if nullb_memory 1 && nvmet_subsys $NQN && nvmet_ns $NQN 1 /dev/nullb0 \
   && nvmet_port 1 tcp 10.0.2.15 4420 && nvmet_link 1 $NQN; then
    pass connect-target-setup
else
    fail connect-target-setup "nvmet configfs setup failed"
fi

# --- connect-all through dem, I/O, disconnect-all
check connect-all nvme connect-all $DC
nvme_state
i=0; while ! ns_dev $NQN > /dev/null && [ $i -lt 100 ]; do sleep 0.1; i=$((i+1)); done
dev=$(ns_dev $NQN)
if [ -n "$dev" ]; then pass connect-all-namespace; echo "namespace: $dev"
else fail connect-all-namespace "no block device for $NQN after connect-all; controllers: $(nvme_state | tr '\n' ';')"; fi
if [ -n "$dev" ]; then
    dd if=/dev/urandom of=/tmp/pattern bs=4096 count=256 2>/dev/null
    if run dd if=/tmp/pattern of=$dev bs=4096 count=256 oflag=direct \
       && run dd if=$dev of=/tmp/readback bs=4096 count=256 iflag=direct; then
        a=$(md5sum < /tmp/pattern); b=$(md5sum < /tmp/readback)
        if [ "$a" = "$b" ]; then pass direct-io
        else fail direct-io "read back differs from written data ($a vs $b)"; fi
    else
        fail direct-io "$(why $?)"
    fi
else
    fail direct-io "no namespace block device"
fi
run nvme disconnect-all; rc=$?
i=0; while [ -n "$(nvme_state)" ] && [ $i -lt 50 ]; do sleep 0.1; i=$((i+1)); done
if [ $rc = 0 ] && [ -z "$(nvme_state)" ]; then pass disconnect-all
else fail disconnect-all "rc=$rc; controllers left: $(nvme_state | tr '\n' ';')"; fi

# --- persistent discovery controller and change notification
aen_watch /tmp/aen
sleep 0.3
run nvme discover -p $DC --keep-alive-tmo=$KATO -o json; rc=$?
t_connect=$(cut -d' ' -f1 /proc/uptime)
ctrl=$(dc_ctrl)
nvme_state
if [ $rc = 0 ] && [ -n "$ctrl" ] && [ "$(cat /sys/class/nvme/$ctrl/state)" = live ]; then
    pass persistent-discover
else
    fail persistent-discover "rc=$rc, controller '${ctrl:-none}' $(cat /sys/class/nvme/$ctrl/state 2>/dev/null); $(why $rc)"
fi

echo "$ADDED_NQN" > /tmp/added.want
echo "$NQN" > /tmp/base.want

host_step add
t0=$(cut -d' ' -f1 /proc/uptime)
if aen_wait /tmp/aen 0x70f002 1 10; then
    pass aen-on-add
    echo "AEN after $(awk -v a="$t0" -v b="$(cut -d' ' -f1 /proc/uptime)" 'BEGIN{printf "%.1f", b-a}') s:"; cat /tmp/aen
else
    fail aen-on-add "no NVME_AEN=0x70f002 uevent within 10 s of the entries file change (uevents: $(tr '\n' ' ' < /tmp/aen 2>/dev/null)); controller ${ctrl:-none} $(cat /sys/class/nvme/$ctrl/state 2>/dev/null)"
fi
discover_json rediscover-shows-added /tmp/added.want -- $DC
# re-read over the persistent controller (this also re-arms the AEN at the controller)
if [ -n "$ctrl" ]; then
    discover_json persistent-reread-shows-added /tmp/added.want -- -p -d $ctrl $DC --keep-alive-tmo=$KATO
else
    fail persistent-reread-shows-added "no persistent discovery controller"
fi

host_step remove
t0=$(cut -d' ' -f1 /proc/uptime)
if aen_wait /tmp/aen 0x70f002 2 10; then
    pass aen-on-remove
    echo "second AEN after $(awk -v a="$t0" -v b="$(cut -d' ' -f1 /proc/uptime)" 'BEGIN{printf "%.1f", b-a}') s"
else
    fail aen-on-remove "no second NVME_AEN=0x70f002 uevent within 10 s of the entries file change + SIGHUP ($(grep -c NVME_AEN /tmp/aen 2>/dev/null) AEN uevents so far)"
fi
discover_json rediscover-hides-removed /tmp/base.want /tmp/added.want -- $DC

# host data beyond the admin queue's 8 KiB of in-capsule data: the kernel host names a transport
# data block, dem asks for the data with an R2T and the host sends it in H2CData PDUs; the
# discovery controller takes no host data, so the command ends with Invalid Field and the
# controller stays live (a transport error would have reset it)
head -c 16384 /dev/zero > /tmp/h2c.bin
if [ -n "$ctrl" ]; then
    run nvme admin-passthru /dev/$ctrl --opcode=0x09 --cdw10=0x80 --data-len=16384 --write --input-file=/tmp/h2c.bin
    rc=$?
    st=$(cat /sys/class/nvme/$ctrl/state 2>/dev/null)
    if [ $rc != 0 ] && [ $rc != 143 ] && grep -qi 'invalid.field' /tmp/out /tmp/err && [ "$st" = live ]; then
        pass r2t-host-data
    else
        fail r2t-host-data "state '${st:-gone}'; $(why $rc)"
    fi
else
    fail r2t-host-data "no persistent discovery controller"
fi

# the persistent controller survives at least 2 x KATO (keep-alive answered)
while [ "$(awk -v a="$t_connect" -v b="$(cut -d' ' -f1 /proc/uptime)" -v k=$KATO 'BEGIN{print (b-a < 2*k+1)}')" = 1 ]; do sleep 0.5; done
nvme_state
st=$(cat /sys/class/nvme/$ctrl/state 2>/dev/null)
if [ -n "$ctrl" ] && [ "$st" = live ] && [ "$(dc_ctrl)" = "$ctrl" ]; then pass persistent-dc-alive
else fail persistent-dc-alive "controller '${ctrl:-none}' state '${st:-gone}' $(awk -v a="$t_connect" -v b="$(cut -d' ' -f1 /proc/uptime)" 'BEGIN{printf "%.0f", b-a}') s after connecting with kato=$KATO"; fi
nvme disconnect-all
dmesg_nvme 60
