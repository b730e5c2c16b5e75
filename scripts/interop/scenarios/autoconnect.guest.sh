# autoconnect (guest side): dem-ac and dem-dm from /host against dem on the host (see
# autoconnect.sh).  Parameters from /host/params.sh.  busybox ash, with
# /usr/lib/dem-interop/lib.sh sourced by /init.
# shellcheck shell=dash
# shellcheck disable=SC2086  # $DC is a list of options
AC_DIR=/tmp/dem-ac                 # dem-ac's state directory
since() { awk -v a="$1" -v b="$(uptime_now)" 'BEGIN{printf "%.2f", b-a}'; }
modprobe -a nvmet nvmet-tcp nvme-tcp || { echo "cannot load nvmet/nvme-tcp"; exit 1; }

# ---------------------------------------------------------------- the guest's nvmet: A..E
setup_ok=1
nullb_memory 5 || setup_ok=0
nvmet_port 1 tcp 10.0.2.15 4420 || setup_ok=0
i=0
for n in $NQN_A $NQN_B $NQN_C $NQN_D $NQN_E; do
    { nvmet_subsys $n && nvmet_ns $n 1 /dev/nullb$i && nvmet_link 1 $n; } || setup_ok=0
    i=$((i+1))
done
if [ $setup_ok = 1 ]; then pass ac-target-setup
else fail ac-target-setup "nvmet configfs setup failed: $(ls $CFG/subsystems $CFG/ports/1/subsystems 2>&1 | tr '\n' ' ')"; fi

# every controller change from here on: /tmp/ctl.log and @@CTL lines on the console
ctl_watch /tmp/ctl.log

# ---------------------------------------------------------------- D by hand
check hand-connect nvme connect -t tcp -a 10.0.2.15 -s 4420 -n $NQN_D
ctl_wait $NQN_D 1 10
D_CTL=$(ctl_of $NQN_D live)
echo "hand-made controller for D: ${D_CTL:-none}"

# ---------------------------------------------------------------- dem-dm, dem-ac
echo "+ dem-dm $DC --json > /tmp/dm.json"
/host/dem-dm $DC --json > /tmp/dm.json 2> /tmp/dm.err < /dev/null &
DM_PID=$!
mkdir -p $AC_DIR
# nvme-dem's form of the address: -t tcp -f ipv4 -a ADDR -s PORT (-f is the family, as in nvme-dem)
echo "+ dem-ac $DC -f ipv4 --disconnect removed --removal-grace $AC_GRACE --state-dir $AC_DIR --log-level $AC_LOG_LEVEL 2> /tmp/ac.log"
AC_T0=$(uptime_now)
/host/dem-ac $DC -f ipv4 --disconnect removed --removal-grace "$AC_GRACE" --state-dir $AC_DIR \
    --log-level "$AC_LOG_LEVEL" > /tmp/ac.out 2> /tmp/ac.log < /dev/null &
AC_PID=$!
ac_alive() { [ -e /proc/$AC_PID/stat ] && [ "$(awk '{print $3}' /proc/$AC_PID/stat 2>/dev/null)" != Z ]; }

# 1. A and B connected, once each; the hand-made D left as it is
if ctl_wait $NQN_A 1 30 && ctl_wait $NQN_B 1 10; then
    pass ac-connects-initial; echo "A and B live $(since $AC_T0) s after dem-ac started"
else
    fail ac-connects-initial "after $(since $AC_T0) s: live controllers of A: $(ctl_of $NQN_A live | wc -l), B: $(ctl_of $NQN_B live | wc -l) (want 1 each); dem-ac $(ac_alive && echo running || echo exited): $(tail -n 2 /tmp/ac.log)"
fi
nvme_state
A_CTL=$(ctl_of $NQN_A live | head -n 1)
B_CTL=$(ctl_of $NQN_B live | head -n 1)
# dem-ac's controllers: ctrl_loss_tmo -1 (sysfs "off") and the host NQN of /etc/nvme/hostnqn
bad=""
for c in $A_CTL $B_CTL; do
    t=$(cat /sys/class/nvme/$c/ctrl_loss_tmo 2>/dev/null); h=$(cat /sys/class/nvme/$c/hostnqn 2>/dev/null)
    echo "$c: ctrl_loss_tmo '$t' hostnqn '$h'"
    [ "$t" = off ] && [ "$h" = "$HOSTNQN" ] || bad="$bad $c: ctrl_loss_tmo '$t' hostnqn '$h';"
done
if [ -n "$A_CTL" ] && [ -n "$B_CTL" ] && [ -z "$bad" ]; then pass ac-controller-options
else fail ac-controller-options "want ctrl_loss_tmo off and hostnqn $HOSTNQN (/etc/nvme/hostnqn):${bad:- no controllers for A and B}"; fi
# dem-dm printed the page: A and B, not C
if file_wait /tmp/dm.json '"event":"page"' 10 \
   && grep '"event":"page"' /tmp/dm.json | head -n 1 | grep -qF "\"subnqn\":\"$NQN_A\"" \
   && grep '"event":"page"' /tmp/dm.json | head -n 1 | grep -qF "\"subnqn\":\"$NQN_B\"" \
   && ! grep '"event":"page"' /tmp/dm.json | head -n 1 | grep -qF "\"subnqn\":\"$NQN_C\""; then
    pass dm-initial-page
else
    fail dm-initial-page "dem-dm's first page event does not list A and B only: $(head -c 300 /tmp/dm.json) $(tail -n 2 /tmp/dm.err)"
fi

# 2. dem-cli adds C (the host times it, see autoconnect.sh): dem-ac connects it
t0=$(uptime_now)
host_step addc
ctl_wait $NQN_C 1 10
t_c=$(grep " state [^ ]* $NQN_C live\$" /tmp/ctl.log | head -n 1 | cut -d' ' -f1)
sp=$(grep 'connected' /tmp/ac.log | grep -F "subnqn=$NQN_C" | grep -o 'since-page=[0-9]* ms' | head -n 1)
if [ -n "$sp" ]; then pass ac-add-since-page
else fail ac-add-since-page "dem-ac logged no 'connected ... subnqn=$NQN_C ... since-page=N ms' line: $(grep -F "$NQN_C" /tmp/ac.log | tail -n 2)"; fi
note ac-add-guest "C live in sysfs $(awk -v a="$t0" -v b="${t_c:-0}" 'BEGIN{ if (b > 0) printf "%d ms", (b-a)*1000; else printf "never" }') after the guest asked for the host step (guest clock, includes the console round trip and dem-cli's run); dem-ac: ${sp:-no since-page}"
C_CTL=$(ctl_of $NQN_C live | head -n 1)

# 3. dem-cli deletes B: dem-ac disconnects B's controller once its removal grace is over (the
# host checks the timing); A, C and D stay
host_step deleteb 60
if ctl_wait $NQN_B 0 10; then pass ac-disconnects-removed
else fail ac-disconnects-removed "B still has controllers after the delete and dem-ac's removal grace ($AC_GRACE s): $(ctl_of $NQN_B | tr '\n' ' '); $(grep -i 'disconnect\|entry gone' /tmp/ac.log | tail -n 2)"; fi
sleep 1
nvme_state
bad=""
for n in $NQN_A $NQN_C $NQN_D; do
    [ "$(ctl_of $n live | wc -l)" = 1 ] || bad="$bad $n: $(ctl_of $n | wc -l) controllers, $(ctl_of $n live | wc -l) live;"
done
if [ -z "$bad" ]; then pass ac-keeps-others
else fail ac-keeps-others "want one live controller each:$bad"; fi

# 5. dem dies and comes back (a main step on the host: SIGKILL, a few seconds down, restart)
t_kill=$(uptime_now)
host_step restart 70
if file_wait /tmp/ac.log 'discovery controller lost' 15; then pass ac-reports-loss
else fail ac-reports-loss "dem-ac logged no 'discovery controller lost': $(tail -n 3 /tmp/ac.log)"; fi
if file_wait /tmp/ac.log 'discovery controller back' 60; then
    pass ac-reconnects; echo "dem-ac back $(since $t_kill) s after the restart step began"
else
    fail ac-reconnects "dem-ac logged no 'discovery controller back' within 60 s of dem's restart: $(tail -n 3 /tmp/ac.log)"
fi
grep -E 'lost|back|connecting' /tmp/ac.log | tail -n 8
sleep 1
nvme_state
# nothing gone but B: every controller of A, C and D still there, once, live
gone=$(grep ' gone ' /tmp/ctl.log | grep -v -F " $NQN_B")
bad=""
for n in $NQN_A $NQN_C $NQN_D; do
    [ "$(ctl_of $n live | wc -l)" = 1 ] || bad="$bad $n: $(ctl_of $n live | wc -l) live;"
done
if [ -z "$gone" ] && [ -z "$bad" ] && [ "$(ctl_of $NQN_A live)" = "$A_CTL" ] && [ "$(ctl_of $NQN_C live)" = "$C_CTL" ]; then
    pass ac-nothing-disconnected-during-outage
else
    fail ac-nothing-disconnected-during-outage "disappeared: $(echo "$gone" | tr '\n' ';')${bad:+ want one live controller each:$bad} (A was $A_CTL, C $C_CTL)"
fi
echo "--- controller changes:"; cat /tmp/ctl.log

# then dem-cli adds E (the host times it): the persistent connection and its notices are back
host_step adde
ctl_wait $NQN_E 1 10
sp=$(grep 'connected' /tmp/ac.log | grep -F "subnqn=$NQN_E" | grep -o 'since-page=[0-9]* ms' | head -n 1)
note ac-add-after-restart-guest "dem-ac connected E: ${sp:-no since-page logged}"

# 4. the hand-made D survived everything
if [ -n "$D_CTL" ] && [ "$(ctl_of $NQN_D live)" = "$D_CTL" ] && ! grep -q " gone $D_CTL $NQN_D\$" /tmp/ctl.log; then
    pass hand-made-survives
else
    fail hand-made-survives "D's controller was '${D_CTL:-none}', now '$(ctl_of $NQN_D | tr '\n' ' ')'; $(grep -F "$NQN_D" /tmp/ctl.log | tr '\n' ';')"
fi

# 6. dem-dm's report (JSON lines)
echo "--- dem-dm's output:"; cat /tmp/dm.json; cat /tmp/dm.err
# ev_line EVENT [NQN] : line number of the first dem-dm event EVENT (about subsystem NQN)
ev_line() {
    grep -n "\"event\":\"$1\"" /tmp/dm.json | { if [ -n "${2:-}" ]; then grep -F "\"subnqn\":\"$2\""; else cat; fi; } \
        | head -n 1 | cut -d: -f1
}
l_add_c=$(ev_line added $NQN_C); l_rm_b=$(ev_line removed $NQN_B)
l_lost=$(ev_line lost); l_back=$(ev_line back); l_add_e=$(ev_line added $NQN_E)
echo "dem-dm event lines: added C ${l_add_c:-none}, removed B ${l_rm_b:-none}, lost ${l_lost:-none}, back ${l_back:-none}, added E ${l_add_e:-none}"
if [ -n "$l_add_c" ]; then pass dm-added; else fail dm-added "no {\"event\":\"added\",...\"subnqn\":\"$NQN_C\"} line"; fi
if [ -n "$l_rm_b" ]; then pass dm-removed; else fail dm-removed "no {\"event\":\"removed\",...\"subnqn\":\"$NQN_B\"} line"; fi
if [ -n "$l_lost" ] && [ -n "$l_back" ] && [ "$l_lost" -lt "$l_back" ] && [ "$l_lost" -gt "${l_rm_b:-0}" ]; then pass dm-lost-back
else fail dm-lost-back "want a lost line, then a back line, after the removal: lost at line ${l_lost:-none}, back at ${l_back:-none}, removed B at ${l_rm_b:-none}"; fi
if [ -n "$l_add_e" ] && [ "$l_add_e" -gt "${l_back:-999999}" ]; then pass dm-added-after-restart
else fail dm-added-after-restart "want an added line for E after the back line: added E at line ${l_add_e:-none}, back at ${l_back:-none}"; fi
run /host/dem-dm $DC --once; rc=$?
if [ $rc = 0 ] && grep -qF "$NQN_A" /tmp/out && grep -qF "$NQN_C" /tmp/out && grep -qF "$NQN_E" /tmp/out && ! grep -qF "$NQN_B" /tmp/out; then
    pass dm-once-reachable
else
    fail dm-once-reachable "want exit status 0 and a page with A, C and E but not B: $(why $rc)"
fi
run /host/dem-dm -t tcp -a $DC_ADDR -s $NOLISTEN_PORT --once; rc=$?
if [ $rc = 1 ]; then pass dm-once-unreachable
else fail dm-once-unreachable "want exit status 1 against $DC_ADDR:$NOLISTEN_PORT (nothing listens): $(why $rc)"; fi
kill -TERM $DM_PID 2>/dev/null; wait $DM_PID 2>/dev/null

# dem-ac stops on SIGTERM (status 0) and leaves the controllers connected
before=$(nvme_state | sort)
kill -TERM $AC_PID
i=0; while ac_alive && [ $i -lt 200 ]; do sleep 0.1; i=$((i+1)); done
if ac_alive; then kill -KILL $AC_PID; wait $AC_PID; ac_rc=hung; else wait $AC_PID; ac_rc=$?; fi
sleep 1
after=$(nvme_state | sort)
echo "--- dem-ac's log:"; cat /tmp/ac.log
nvme_state
if [ "$ac_rc" = 0 ] && [ "$before" = "$after" ] && [ "$(echo "$after" | grep -c ' live ')" = 4 ]; then
    pass ac-stop-keeps-controllers
else
    fail ac-stop-keeps-controllers "dem-ac's exit status after SIGTERM: $ac_rc; controllers before: $(echo "$before" | tr '\n' ';') after: $(echo "$after" | tr '\n' ';') (want A, C, D and E live)"
fi
echo "--- dem-ac's record:"; cat $AC_DIR/* 2>/dev/null; echo
touch /tmp/ctl.stop
nvme disconnect-all
dmesg_nvme 60
