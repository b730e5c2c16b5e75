# endpoint (guest side): dem-em from /host/dem-em on this kernel's nvmet configfs, joined to
# dem on the host (see endpoint.sh).  Parameters and expected records from /host/params.sh and
# /host/expect.  busybox ash, with /usr/lib/dem-interop/lib.sh sourced by /init.
# shellcheck shell=dash
# shellcheck disable=SC2086  # $DC and $AS are lists of nvme-cli options
E=/host/expect
KATO=5
EM_DIR=/tmp/dem-em                 # dem-em's data directory (kept across its restart)
AS="--hostnqn=$HOSTNQN --hostid=$HOSTID"
SUB=$CFG/subsystems/$NQN
since() { awk -v a="$1" -v b="$(cut -d' ' -f1 /proc/uptime)" 'BEGIN{printf "%.1f", b-a}'; }
modprobe -a nvmet nvmet-tcp nvme-tcp || { echo "cannot load nvmet/nvme-tcp"; exit 1; }
nullb_memory 1 || { echo "cannot load null_blk"; exit 1; }

# ---------------------------------------------------------------- dem-em
EM_PID=""
em_start() { # em_start LOG [ARGS...] : dem-em in the background (EM_PID), its output in LOG
    local log=$1
    shift
    mkdir -p $EM_DIR
    echo "+ dem-em --data-dir $EM_DIR ... --join https://$DC_ADDR:$API_PORT --alias t1 --advertise-port $EM_FWD_PORT $* > $log"
    /host/dem-em --data-dir $EM_DIR \
        --api-address 0.0.0.0 --api-port 22334 --join "https://$DC_ADDR:$API_PORT" --alias t1 \
        --advertise-address 127.0.0.1 --advertise-port "$EM_FWD_PORT" --check-interval 2 \
        --log-level "${EM_LOG_LEVEL:-info}" "$@" > "$log" 2>&1 < /dev/null &
    EM_PID=$!
    EM_T0=$(cut -d' ' -f1 /proc/uptime)
}
em_alive() { [ -n "$EM_PID" ] && [ -e /proc/$EM_PID/stat ] && [ "$(awk '{print $3}' /proc/$EM_PID/stat 2>/dev/null)" != Z ]; }
# log_wait FILE PATTERN SECS : wait until FILE holds a line with PATTERN while dem-em runs
log_wait() {
    local i=0
    while [ $i -lt $(($3 * 10)) ]; do
        grep -q "$2" "$1" 2>/dev/null && return 0
        em_alive || return 1
        sleep 0.1; i=$((i+1))
    done
    return 1
}
# em_stop : SIGTERM, then up to 20 s for the exit; EM_RC := its exit status ("hung" when
# it had to be killed)
em_stop() {
    local i=0
    [ -n "$EM_PID" ] || { EM_RC="not running"; return; }
    kill -TERM $EM_PID
    while em_alive && [ $i -lt 200 ]; do sleep 0.1; i=$((i+1)); done
    if em_alive; then kill -KILL $EM_PID; wait $EM_PID; EM_RC=hung
    else wait $EM_PID; EM_RC=$?; fi
    echo "dem-em (pid $EM_PID) stopped after $(awk -v i=$i 'BEGIN{printf "%.1f", i/10}') s: $EM_RC"
    EM_PID=""
}
em() { run /host/dem-em "$@" --data-dir $EM_DIR; }   # em SUBCOMMAND : dem-em status/export
# the "apply done" lines of a dem-em log (one per reconciliation, with its operation count)
applies() { grep 'apply done' "$1"; }

# the first start enrols: a one-time join token and the fabric CA's fingerprint, no fabric.key
mkdir -p $EM_DIR
em_start /tmp/em1.log --token "$(cat /host/join.token)" --ca-hash "$(cat /host/ca.hash)"
if log_wait /tmp/em1.log 'enrolled with dem' 60 && [ "$(stat -c %a $EM_DIR/dem-em.key)" = 600 ] \
    && [ -s $EM_DIR/dem-em.pem ] && [ -s $EM_DIR/fabric-ca.pem ]; then
    pass em-enrolled; echo "dem-em enrolled after $(since "$EM_T0") s: $(grep 'enrolled with dem' /tmp/em1.log)"
else
    fail em-enrolled "dem-em $(em_alive && echo 'did not enrol within 60 s' || echo exited): $(tail -n 3 /tmp/em1.log); $(ls -l $EM_DIR 2>&1 | tr '\n' ' ')"
fi
if log_wait /tmp/em1.log 'joined dem' 60; then
    pass em-start-join; echo "dem-em joined dem after $(since "$EM_T0") s"
else
    fail em-start-join "dem-em $(em_alive && echo 'did not join within 60 s' || echo exited): $(tail -n 3 /tmp/em1.log)"
fi
host_step joined
host_step configure

# ---------------------------------------------------------------- configfs as dem-cli set it
P1=$CFG/ports/1
exported_checks $NQN

# ---------------------------------------------------------------- discover, connect, I/O
connect_io_checks $NQN $E/initial -- $DC $AS
dev=$DEV

# ---------------------------------------------------------------- restart dem-em under I/O
# io_loop DEV : until /tmp/io.stop exists, O_DIRECT write 1 MiB at a moving offset, read it
# back and compare; the rounds done go to /tmp/io.n, the first failure to /tmp/io.fail
io_loop() {
    local n=0 off
    while [ ! -f /tmp/io.stop ]; do
        off=$(( (n % 64) * 256 ))
        timeout 60 dd if=/tmp/pattern of=$1 bs=4096 count=256 seek=$off oflag=direct 2> /tmp/io.err \
            || { echo "round $n: write failed: $(tail -n 1 /tmp/io.err)" > /tmp/io.fail; break; }
        timeout 60 dd if=$1 of=/tmp/io.read bs=4096 count=256 skip=$off iflag=direct 2> /tmp/io.err \
            || { echo "round $n: read failed: $(tail -n 1 /tmp/io.err)" > /tmp/io.fail; break; }
        cmp -s /tmp/pattern /tmp/io.read || { echo "round $n: read back differs" > /tmp/io.fail; break; }
        n=$((n+1)); echo $n > /tmp/io.n
    done
}
rounds() { cat /tmp/io.n 2>/dev/null || echo 0; }
rm -f /tmp/io.stop /tmp/io.fail /tmp/io.n
IO_PID=""
if [ -n "$dev" ]; then
    io_loop $dev &
    IO_PID=$!
    i=0; while [ "$(rounds)" -lt 1 ] && [ ! -f /tmp/io.fail ] && [ $i -lt 300 ]; do sleep 0.1; i=$((i+1)); done
fi
em export; cp /tmp/out /tmp/export.before
n_stop=$(rounds)
echo "I/O rounds before the restart: $n_stop"
em_stop
if [ "$EM_RC" = 0 ]; then pass em-stop-clean
else fail em-stop-clean "dem-em's exit status after SIGTERM: $EM_RC; $(tail -n 2 /tmp/em1.log)"; fi
echo "--- dem-em's log:"; cat /tmp/em1.log
em_start /tmp/em2.log
if log_wait /tmp/em2.log 'desired state applied' 60 && log_wait /tmp/em2.log 'joined dem' 60; then
    pass em-restart-join; echo "restarted dem-em applied its state and joined after $(since "$EM_T0") s"
else
    fail em-restart-join "restarted dem-em $(em_alive && echo 'did not apply and join within 60 s' || echo exited): $(tail -n 3 /tmp/em2.log)"
fi
host_step rejoined
em export; cp /tmp/out /tmp/export.after
n_end=$(rounds)
echo "I/O rounds after the restart: $n_end"
applies /tmp/em2.log
napply=$(applies /tmp/em2.log | wc -l)
nzero=$(applies /tmp/em2.log | grep -c 'errors=0 .*operations=0 ')
nops=$(grep -c ' op=' /tmp/em2.log)
if [ "$napply" -ge 1 ] && [ "$nzero" = "$napply" ] && [ "$nops" = 0 ]; then
    pass em-restart-no-configfs-ops; echo "restarted dem-em: $napply applies, all with operations=0"
else
    fail em-restart-no-configfs-ops "restarted dem-em: $napply 'apply done' lines, $nzero with errors=0 operations=0, $nops configfs operations logged: $(grep -m 2 ' op=' /tmp/em2.log)"
fi
if [ -s /tmp/export.before ] && cmp -s /tmp/export.before /tmp/export.after; then pass em-restart-export-unchanged
else fail em-restart-export-unchanged "dem-em export differs before/after the restart: $(diff /tmp/export.before /tmp/export.after 2>&1 | grep '^[-+][^-+]' | head -n 3 | tr '\n' ' ')"; fi
check em-status-no-drift /host/dem-em status --data-dir $EM_DIR
touch /tmp/io.stop
[ -n "$IO_PID" ] && wait $IO_PID
n_last=$(rounds)
if [ -z "$dev" ]; then fail io-during-restart "no namespace block device"
elif [ -f /tmp/io.fail ]; then fail io-during-restart "$(cat /tmp/io.fail) ($n_last rounds done; $n_stop before the restart)"
elif [ "$n_end" -gt "$n_stop" ]; then pass io-during-restart; echo "I/O: $n_last rounds in all, $((n_end - n_stop)) during the restart"
else fail io-during-restart "no I/O round completed during the restart ($n_stop before, $n_end after)"; fi
dmesg | grep -iE 'nvme.*(reset|reconnect|error|timeout)' | tail -n 5

# ---------------------------------------------------------------- delete: configfs + AEN
run nvme disconnect -n $NQN; rc=$?
i=0; while ns_dev $NQN > /dev/null && [ $i -lt 50 ]; do sleep 0.1; i=$((i+1)); done
if [ $rc = 0 ] && ! ns_dev $NQN > /dev/null; then pass disconnect-io
else fail disconnect-io "rc=$rc; controllers: $(nvme_state | tr '\n' ';')"; fi
aen_watch /tmp/aen
sleep 0.3
discover_exact persistent-discover $E/initial -- -p $DC $AS --keep-alive-tmo=$KATO
ctrl=$(dc_ctrl "$HOSTNQN")
nvme_state
echo "persistent discovery controller: ${ctrl:-none} $(cat /sys/class/nvme/$ctrl/state 2>/dev/null)"
host_step delete
t0=$(cut -d' ' -f1 /proc/uptime)
if [ -z "$ctrl" ]; then fail aen-on-delete "no persistent discovery controller"
elif aen_wait /tmp/aen 0x70f002 1 15 "$ctrl"; then pass aen-on-delete; echo "AEN after $(since "$t0") s"
else fail aen-on-delete "no NVME_AEN=0x70f002 uevent for $ctrl within 15 s of dem-cli's delete (uevents: $(tr '\n' ' ' < /tmp/aen 2>/dev/null)); $ctrl $(cat /sys/class/nvme/$ctrl/state 2>/dev/null)"; fi
i=0; while { [ -e $SUB ] || [ -L $P1/subsystems/$NQN ]; } && [ $i -lt 150 ]; do sleep 0.1; i=$((i+1)); done
if [ ! -e $SUB ] && [ ! -L $P1/subsystems/$NQN ]; then pass configfs-subsystem-removed; echo "gone from configfs after $(since "$t0") s"
else fail configfs-subsystem-removed "15 s after the delete: subsystems/: $(ls $CFG/subsystems | tr '\n' ' '); ports/1/subsystems/: $(ls $P1/subsystems | tr '\n' ' ')"; fi
if [ -n "$ctrl" ]; then
    discover_exact persistent-reread-hides-deleted $E/deleted -- -p -d $ctrl $DC $AS --keep-alive-tmo=$KATO
else
    fail persistent-reread-hides-deleted "no persistent discovery controller"
fi

# ---------------------------------------------------------------- local management (t2)
# a subsystem on port 2 made by hand: dem-em did not create it and must leave it alone
if nvmet_subsys $LOCAL_NQN && nvmet_port 2 tcp 10.0.2.15 4421 && nvmet_link 2 $LOCAL_NQN; then
    pass local-target-setup
else
    fail local-target-setup "nvmet configfs setup of port 2 / $LOCAL_NQN failed"
fi
n=$(aen_count /tmp/aen 0x70f002 "$ctrl")
host_step local
t0=$(cut -d' ' -f1 /proc/uptime)
if [ -z "$ctrl" ]; then fail aen-on-local-add "no persistent discovery controller"
elif aen_wait /tmp/aen 0x70f002 $((n+1)) 15 "$ctrl"; then pass aen-on-local-add; echo "AEN after $(since "$t0") s"
else fail aen-on-local-add "no NVME_AEN=0x70f002 uevent for $ctrl within 15 s of t2's subsystem ($(aen_count /tmp/aen 0x70f002 "$ctrl") so far); $ctrl $(cat /sys/class/nvme/$ctrl/state 2>/dev/null)"; fi
if [ -n "$ctrl" ]; then
    discover_exact persistent-reread-shows-local $E/local -- -p -d $ctrl $DC $AS --keep-alive-tmo=$KATO
else
    fail persistent-reread-shows-local "no persistent discovery controller"
fi
run nvme disconnect-all
i=0; while [ -n "$(nvme_state)" ] && [ $i -lt 50 ]; do sleep 0.1; i=$((i+1)); done
discover_exact local-discover $E/local -- $DC $AS
em status; rc=$?
if [ $rc = 0 ] && [ -L $CFG/ports/2/subsystems/$LOCAL_NQN ] && [ "$(cat $CFG/subsystems/$LOCAL_NQN/attr_allow_any_host)" = 1 ]; then
    pass em-leaves-local-alone
else
    fail em-leaves-local-alone "dem-em status rc=$rc; ports/2/subsystems: $(ls $CFG/ports/2/subsystems 2>&1 | tr '\n' ' ')"
fi

em_stop
if [ "$EM_RC" = 0 ]; then pass em-final-stop-clean
else fail em-final-stop-clean "dem-em's exit status after SIGTERM: $EM_RC; $(tail -n 2 /tmp/em2.log)"; fi
echo "--- restarted dem-em's log:"; cat /tmp/em2.log
dmesg_nvme 60
