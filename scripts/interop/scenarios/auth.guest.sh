# auth (guest side): the kernel host authenticates to dem's discovery controller.
# nvme-cli 2.3's `discover` accepts --dhchap-secret but does not hand it to the kernel (the
# kernel then says "qid 0: no key"), and has no --dhchap-ctrl-secret: the discovery
# controllers are created through /dev/nvme-fabrics, as nvme-cli and dem-ac do, with the
# kernel's own dhchap_secret/dhchap_ctrl_secret options; the page is read with nvme-cli.
modprobe -a nvme-tcp || { echo "cannot load nvme-tcp"; exit 1; }
if grep -q nvme_auth /proc/kallsyms; then pass auth-modules-loaded
else fail auth-modules-loaded "nvme-core without authentication loaded"; fi

DISC=nqn.2014-08.org.nvmexpress.discovery
base="transport=tcp,traddr=$DC_ADDR,trsvcid=$DC_PORT,nqn=$DISC"
me="hostnqn=$(cat /etc/nvme/hostnqn),hostid=$(cat /etc/nvme/hostid)"

# the right key: a live controller, and its page (dem's own entry at least)
if c=$(fabrics "$base,$me,dhchap_secret=$HOST_KEY"); then
    run nvme discover --device="$c" -o json; rc=$?
    if [ $rc = 0 ] && grep -q '"subtype" *: *"current discovery subsystem"' /tmp/out; then pass auth-right-key
    else fail auth-right-key "page: $(why $rc)"; fi
    echo 1 > /sys/class/nvme/$c/delete_controller
else
    fail auth-right-key "connect refused: $(dmesg | grep -i nvme | tail -n 2 | tr '\n' ' ')"
fi

# a wrong key and no key: refused by the kernel (authentication failed / no key)
dmesg -c > /dev/null
if c=$(fabrics "$base,$me,dhchap_secret=$WRONG_KEY"); then
    fail auth-wrong-key-refused "a controller was created: $c"
    echo 1 > /sys/class/nvme/$c/delete_controller
else
    msg=$(dmesg | grep -i nvme | tail -n 3 | tr '\n' ' ')
    echo "$msg"
    if echo "$msg" | grep -qiE 'auth.*fail|failure1|ret=401|-EKEYREJECTED|rejected'; then pass auth-wrong-key-refused
    else fail auth-wrong-key-refused "refused, but not for authentication: $msg"; fi
fi
dmesg -c > /dev/null
if c=$(fabrics "$base,$me"); then
    fail auth-no-key-refused "a controller was created: $c"
    echo 1 > /sys/class/nvme/$c/delete_controller
else
    msg=$(dmesg | grep -i nvme | tail -n 3 | tr '\n' ' ')
    echo "$msg"
    if echo "$msg" | grep -q 'no key'; then pass auth-no-key-refused
    else fail auth-no-key-refused "refused, but not for a missing key: $msg"; fi
fi

# another host with no key: served as before (--auth optional), with plain nvme-cli
run nvme discover $DC --hostnqn="$HOSTNQN_X" --hostid="$HOSTID_X" -o json; rc=$?
if [ $rc = 0 ] && grep -q 'current discovery subsystem' /tmp/out; then pass auth-keyless-host-served
else fail auth-keyless-host-served "$(why $rc)"; fi

# two-way: dem proves itself with the controller key; the connection stays (KATO) and serves
if c=$(fabrics "$base,$me,dhchap_secret=$HOST_KEY,dhchap_ctrl_secret=$CTRL_KEY,keep_alive_tmo=5"); then
    sleep 6
    st=$(cat /sys/class/nvme/$c/state)
    run nvme discover --device="$c" -o json; rc=$?
    if [ "$st" = live ] && [ $rc = 0 ] && grep -q 'current discovery subsystem' /tmp/out; then pass auth-two-way-persistent
    else fail auth-two-way-persistent "state $st after 6 s; page: $(why $rc)"; fi
    echo 1 > /sys/class/nvme/$c/delete_controller
else
    fail auth-two-way-persistent "connect refused: $(dmesg | grep -i nvme | tail -n 2 | tr '\n' ' ')"
fi
# a wrong controller key: the host refuses dem (AUTH_Failure2)
dmesg -c > /dev/null
if c=$(fabrics "$base,$me,dhchap_secret=$HOST_KEY,dhchap_ctrl_secret=$WRONG_KEY"); then
    fail auth-wrong-ctrl-key-refused "a controller was created: $c"
    echo 1 > /sys/class/nvme/$c/delete_controller
else
    pass auth-wrong-ctrl-key-refused
fi
dmesg | grep -i nvme | tail -n 3

# SHA-512 and ffdhe4096 for a second host
if c=$(fabrics "$base,hostnqn=$HOSTNQN_K,hostid=$HOSTID_K,dhchap_secret=$STRONG_KEY"); then
    pass auth-sha512-ffdhe4096
    echo 1 > /sys/class/nvme/$c/delete_controller
else
    fail auth-sha512-ffdhe4096 "connect refused: $(dmesg | grep -i nvme | tail -n 2 | tr '\n' ' ')"
fi

dmesg_nvme 40
bad=$(dmesg | grep -iE 'nvme' | grep -iE 'oops|bug|warn|time.?out|reset' | head -n 3)
if [ -z "$bad" ]; then pass auth-dmesg-clean
else fail auth-dmesg-clean "$bad"; fi
