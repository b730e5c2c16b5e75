# replicas (guest side): dem-ac from /host against three dem replicas on the host (see
# replicas.sh).  Parameters from /host/params.sh.  busybox ash, with
# /usr/lib/dem-interop/lib.sh sourced by /init.
# shellcheck shell=dash
AC_DIR=/tmp/dem-ac
since() { awk -v a="$1" -v b="$(uptime_now)" 'BEGIN{printf "%d", (b-a)*1000}'; }
modprobe -a nvmet nvmet-tcp nvme-tcp || { echo "cannot load nvmet/nvme-tcp"; exit 1; }

setup_ok=1
nullb_memory 3 || setup_ok=0
nvmet_port 1 tcp 10.0.2.15 4420 || setup_ok=0
i=0
for n in $NQN_A $NQN_B $NQN_C; do
    { nvmet_subsys $n && nvmet_ns $n 1 /dev/nullb$i && nvmet_link 1 $n; } || setup_ok=0
    i=$((i+1))
done
if [ $setup_ok = 1 ]; then pass ac-target-setup
else fail ac-target-setup "nvmet configfs setup failed"; fi
ctl_watch /tmp/ctl.log
# the host's own address is reached through qemu's user network (the gateway 10.0.2.2)
ip route add "$R_ADDR/32" via 10.0.2.2 2>/dev/null || ip route add default via 10.0.2.2
ip route

# dem-ac knows replica 1 only
mkdir -p $AC_DIR
echo "+ dem-ac -t tcp -a $R_ADDR -s $R1_PORT --state-dir $AC_DIR --log-level debug"
/host/dem-ac -t tcp -a "$R_ADDR" -s "$R1_PORT" --state-dir $AC_DIR --log-level debug \
    > /tmp/ac.out 2> /tmp/ac.log < /dev/null &
AC_PID=$!
if ctl_wait $NQN_A 1 30 && ctl_wait $NQN_B 1 10; then pass ac-connects-initial
else fail ac-connects-initial "live controllers of A: $(ctl_of $NQN_A live | wc -l), B: $(ctl_of $NQN_B live | wc -l): $(tail -n 3 /tmp/ac.log)"; fi
A_CTL=$(ctl_of $NQN_A live | head -n 1)
B_CTL=$(ctl_of $NQN_B live | head -n 1)
# replica 1's page names replicas 2 and 3 (SUBTYPE 3): dem-ac watches them too
ok=1
for p in $R2_PORT $R3_PORT; do
    file_wait /tmp/ac.log "$R_ADDR:$p.*watching a discovery controller" 15 || ok=0
done
if [ $ok = 1 ]; then pass ac-watches-replicas
else fail ac-watches-replicas "dem-ac does not watch $R_ADDR:$R2_PORT and :$R3_PORT: $(grep watching /tmp/ac.log | tail -n 3)"; fi
grep watching /tmp/ac.log

# replica 1 dies; C is added through replica 2
t0=$(uptime_now)
host_step kill1 60
if ctl_wait $NQN_C 1 20; then
    pass ac-connects-after-failover
    note failover-connect "C live in the guest $(since $t0) ms after the guest asked for the step (kill -9 of replica 1, then dem-cli through replica 2; guest clock)"
else
    fail ac-connects-after-failover "no live controller for C within 20 s of the step: $(tail -n 4 /tmp/ac.log)"
fi
grep -E 'lost|back|watching|connected' /tmp/ac.log | tail -n 10
sleep 1
gone=$(grep ' gone ' /tmp/ctl.log)
if [ -z "$gone" ] && [ "$(ctl_of $NQN_A live)" = "$A_CTL" ] && [ "$(ctl_of $NQN_B live)" = "$B_CTL" ] && [ -n "$A_CTL" ]; then
    pass ac-nothing-disconnected
else
    fail ac-nothing-disconnected "gone: $(echo "$gone" | tr '\n' ';') A was $A_CTL now $(ctl_of $NQN_A live), B was $B_CTL now $(ctl_of $NQN_B live)"
fi

# replica 1 comes back: dem-ac reconnects to it
host_step restart1 70
if file_wait /tmp/ac.log "$R_ADDR:$R1_PORT.*discovery controller back" 60; then pass ac-back-on-replica1
else fail ac-back-on-replica1 "dem-ac logged no 'discovery controller back' for $R_ADDR:$R1_PORT within 60 s: $(grep -E 'lost|back' /tmp/ac.log | tail -n 3)"; fi
# every replica gives the guest the same page, GENCTR included (one discovery controller,
# TP8013), replica 1 restarted too: its GENCTR is the database's, not its own
same_pages() {
    for p in $R1_PORT $R2_PORT $R3_PORT; do
        nvme discover -t tcp -a "$R_ADDR" -s "$p" -o json > "/tmp/page-$p.json" 2> /dev/null || return 1
    done
    grep -q '"genctr"' "/tmp/page-$R1_PORT.json" \
        && cmp -s "/tmp/page-$R1_PORT.json" "/tmp/page-$R2_PORT.json" \
        && cmp -s "/tmp/page-$R1_PORT.json" "/tmp/page-$R3_PORT.json"
}
i=0
until same_pages || [ $i -ge 15 ]; do sleep 1; i=$((i+1)); done
if same_pages; then
    pass same-page-on-every-replica
    note same-page "replicas 1, 2 and 3 gave the guest the same page: genctr $(grep -o '"genctr" *: *[0-9]*' "/tmp/page-$R1_PORT.json" | grep -o '[0-9]*$'), $(grep -c '"subnqn"' "/tmp/page-$R1_PORT.json") entries"
else
    fail same-page-on-every-replica "the pages differ: $(for p in $R1_PORT $R2_PORT $R3_PORT; do echo "$p: $(grep -o '"genctr" *: *[0-9]*' "/tmp/page-$p.json") $(grep -o '"traddr" *: *"[^"]*"' "/tmp/page-$p.json" | tr '\n' ' ')"; done)"
fi
cat "/tmp/page-$R1_PORT.json"
nvme_state
kill -TERM $AC_PID; wait $AC_PID
echo "--- dem-ac's log:"; tail -n 60 /tmp/ac.log
touch /tmp/ctl.stop
nvme disconnect-all
dmesg_nvme 40
