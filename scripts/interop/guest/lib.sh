# lib.sh - helpers for the dem interop guest scenarios (busybox ash).
# run-guest.sh installs this as /usr/lib/dem-interop/lib.sh; /init sources it
# before running /scenario.sh.  A scenario's host side may share parameters as
# /host/params.sh (sourced here) and expected files under /host/expect/.
CFG=/sys/kernel/config/nvmet
DC_ADDR=10.0.2.2          # the host's 127.0.0.1 as seen from the guest
DC_PORT=8009
CMD_TIMEOUT=60            # seconds, for every command run through run/check
[ -f /host/params.sh ] && . /host/params.sh
DC="-t tcp -a $DC_ADDR -s $DC_PORT"

# ---------------------------------------------------------------- results
# result NAME PASS|FAIL [detail]  -> "@@RESULT NAME PASS|FAIL detail@@" on the console
result() {
    local d
    d=$(printf '%s' "${3:-}" | tr '\n\r@' '  _' | cut -c1-400)
    echo "@@RESULT $1 $2${d:+ $d}@@"
}
pass() { result "$1" PASS; }
fail() { result "$1" FAIL "$2"; }

# run CMD... : echo and run CMD with a timeout; stdout -> /tmp/out, stderr -> /tmp/err
# (both also echoed).  Returns CMD's status (143 when the timeout killed it).
run() {
    local t0 rc
    echo "+ $*"
    t0=$(cut -d' ' -f1 /proc/uptime)
    timeout "$CMD_TIMEOUT" "$@" > /tmp/out 2> /tmp/err
    rc=$?
    cat /tmp/out
    [ -s /tmp/err ] && sed 's/^/  stderr: /' /tmp/err
    echo "  -> rc=$rc in $(awk -v a="$t0" -v b="$(cut -d' ' -f1 /proc/uptime)" 'BEGIN{printf "%.2f", b-a}')s"
    return $rc
}
# why RC : short failure detail from the last run
why() {
    local t=""
    [ "$1" = 143 ] && t=" (killed after ${CMD_TIMEOUT}s)"
    echo "rc=$1$t: $(tail -n 3 /tmp/err /tmp/out 2>/dev/null | grep -v '^==>' | grep . | tail -n 2 | tr '\n' ' ')"
}
# check NAME CMD... : run CMD; PASS when it exits 0
check() {
    local name=$1 rc
    shift
    run "$@"; rc=$?
    if [ $rc = 0 ]; then pass "$name"; return 0; fi
    fail "$name" "$(why $rc)"
    return 1
}

# ---------------------------------------------------------------- discovery log checks
# json_subnqns FILE : the subnqn of every record in nvme-cli JSON output, one per line
json_subnqns() { grep -o '"subnqn" *: *"[^"]*"' "$1" | sed 's/.*: *"//; s/"$//'; }
# json_records FILE : one line per record of nvme-cli JSON output: subtype|subnqn|traddr|trsvcid
json_records() {
    awk -F'"' '
        /^ *\{/ { st=""; nqn=""; ta=""; ts="" }
        $2=="subtype" { st=$4 } $2=="subnqn" { nqn=$4 } $2=="traddr" { ta=$4 } $2=="trsvcid" { ts=$4 }
        /^ *\}/ && nqn!="" { print st "|" nqn "|" ta "|" ts; nqn="" }' "$1"
}
# list_problems GOTFILE WANTFILE [HIDEFILE] : prints what is missing / unexpected, if anything
list_problems() {
    local n miss="" nmiss=0 extra="" nextra=0
    for n in $(cat "$2"); do
        grep -qxF "$n" "$1" || { nmiss=$((nmiss+1)); [ $nmiss -le 3 ] && miss="$miss $n"; }
    done
    if [ -n "${3:-}" ] && [ -f "$3" ]; then
        for n in $(cat "$3"); do
            grep -qxF "$n" "$1" && { nextra=$((nextra+1)); [ $nextra -le 3 ] && extra="$extra $n"; }
        done
    fi
    [ $nmiss = 0 ] || printf 'missing %s of %s:%s%s; ' $nmiss "$(wc -l < "$2")" "$miss" "$([ $nmiss -gt 3 ] && echo ' ...')"
    [ $nextra = 0 ] || printf 'listed but must be hidden (%s):%s; ' $nextra "$extra"
}
# raw_problems GOT EXPECTED : prints how two raw discovery log pages differ, if they do
raw_problems() {
    local gs es first off where
    [ -s "$1" ] || { echo "no raw page written"; return; }
    [ -s "$2" ] || { echo "no expected page $2"; return; }
    cmp -s "$1" "$2" && return
    gs=$(wc -c < "$1"); es=$(wc -c < "$2")
    first=$(cmp "$1" "$2" 2>&1 | head -n 1)
    off=$(cmp -l "$1" "$2" 2>/dev/null | head -n 1 | awk '{print $1-1}')
    if [ -n "$off" ]; then
        if [ "$off" -lt 1024 ]; then where="header byte $off"
        else where="entry $(( (off-1024)/1024 )) byte $(( (off-1024)%1024 ))"; fi
        echo "got $gs bytes, dem logpage $es bytes; first difference at offset $off ($where), $(cmp -l "$1" "$2" 2>/dev/null | wc -l) bytes differ"
    else
        echo "got $gs bytes, dem logpage $es bytes: $first"
    fi
    echo "--- got (header):"; xxd -l 32 "$1"
    echo "--- expected (header):"; xxd -l 32 "$2"
    if [ -n "$off" ]; then
        echo "--- got / expected around offset $off:"
        xxd -s $((off/16*16)) -l 48 "$1"; xxd -s $((off/16*16)) -l 48 "$2"
    fi
}
# discover_json NAME WANT [HIDE] -- nvme-discover-args... : nvme discover -o json, then
# PASS when it succeeded, lists every subnqn of WANT and none of HIDE.  JSON kept in /tmp/NAME.json
discover_json() {
    local name=$1 want=$2 hide="" rc p
    shift 2
    [ "$1" != "--" ] && { hide=$1; shift; }
    shift
    run nvme discover "$@" -o json; rc=$?
    cp /tmp/out "/tmp/$name.json"
    [ $rc = 0 ] || { fail "$name" "nvme discover $(why $rc)"; return 1; }
    json_subnqns "/tmp/$name.json" > "/tmp/$name.subnqns"
    p=$(list_problems "/tmp/$name.subnqns" "$want" "$hide")
    [ -z "$p" ] && { pass "$name"; return 0; }
    fail "$name" "$p(page has $(wc -l < "/tmp/$name.subnqns") records)"
    return 1
}
# discover_exact NAME WANT -- nvme-discover-args... : nvme discover -o json, then PASS
# when its records (json_records lines, subtype|subnqn|traddr|trsvcid) are exactly the lines
# of WANT, in any order (a record listed twice counts twice).  JSON kept in /tmp/NAME.json
discover_exact() {
    local name=$1 want=$2 rc miss extra
    shift 3
    run nvme discover "$@" -o json; rc=$?
    cp /tmp/out "/tmp/$name.json"
    [ $rc = 0 ] || { fail "$name" "nvme discover $(why $rc)"; return 1; }
    json_records "/tmp/$name.json" | sort > "/tmp/$name.records"
    sort "$want" > "/tmp/$name.want"
    echo "records (subtype|subnqn|traddr|trsvcid):"; cat "/tmp/$name.records"
    cmp -s "/tmp/$name.records" "/tmp/$name.want" && { pass "$name"; return 0; }
    miss=$(grep -vxF -f "/tmp/$name.records" "/tmp/$name.want" | tr '\n' ' ')
    extra=$(grep -vxF -f "/tmp/$name.want" "/tmp/$name.records" | tr '\n' ' ')
    fail "$name" "$(wc -l < "/tmp/$name.records") records, want $(wc -l < "/tmp/$name.want"); missing: ${miss:-none}; unexpected: ${extra:-none}"
    return 1
}
# discover_raw NAME EXPECTED -- nvme-discover-args... : nvme discover --raw, PASS when
# the page written is byte-identical to EXPECTED (made on the host by `dem logpage --raw`)
discover_raw() {
    local name=$1 exp=$2 rc p
    shift 3
    rm -f "/tmp/$name.bin"
    run nvme discover "$@" --raw="/tmp/$name.bin"; rc=$?
    [ $rc = 0 ] || { fail "$name" "nvme discover $(why $rc)"; return 1; }
    p=$(raw_problems "/tmp/$name.bin" "$exp")
    [ -z "$p" ] && { pass "$name"; return 0; }
    echo "$p"
    fail "$name" "$(echo "$p" | head -n 1)"
    return 1
}

# ---------------------------------------------------------------- host steps
# host_step TAG [SECS] : ask the host (run-guest.sh -H TAG=CMD) to run its command for
# TAG, and wait until it answers "GO TAG" on the console (bounded).
host_step() {
    local tag=$1 t=${2:-60} line
    echo "@@HOST $tag@@"
    while read -t "$t" line; do
        case "$line" in *"GO $tag"*) echo "host step $tag done"; return 0 ;; esac
    done
    echo "host step $tag: timed out"
    return 1
}

# fabrics OPTIONS : create a controller through /dev/nvme-fabrics with the kernel's own option
# string (the DH-HMAC-CHAP secrets are not echoed); prints its name (nvmeN), or fails with the
# kernel's error on stderr
fabrics() {
    local out
    echo "+ /dev/nvme-fabrics <- $1" | sed 's/dhchap_\(ctrl_\)*secret=[^,]*/dhchap_\1secret=…/g' >&2
    exec 3<>/dev/nvme-fabrics || return 1
    if ! echo "$1" >&3 2>/tmp/err; then exec 3>&-; cat /tmp/err >&2; return 1; fi
    read -r out <&3; exec 3>&-
    echo "  -> $out" >&2
    echo "nvme${out#instance=}" | cut -d, -f1
}

# ---------------------------------------------------------------- kernel target (nvmet)
nullb_memory() { # nullb_memory N : N memory-backed null_blk devices (data reads back)
    modprobe null_blk nr_devices="$1" gb=1 bs=512 memory_backed=1
}
nvmet_subsys() { # nvmet_subsys NQN : subsystem that allows any host
    mkdir -p "$CFG/subsystems/$1" && echo 1 > "$CFG/subsystems/$1/attr_allow_any_host"
}
nvmet_ns() { # nvmet_ns NQN NSID DEV
    mkdir -p "$CFG/subsystems/$1/namespaces/$2" &&
    echo -n "$3" > "$CFG/subsystems/$1/namespaces/$2/device_path" &&
    echo 1 > "$CFG/subsystems/$1/namespaces/$2/enable"
}
nvmet_port() { # nvmet_port ID TRTYPE TRADDR TRSVCID [ADRFAM]
    local p=$CFG/ports/$1
    mkdir -p "$p" &&
    echo "$2" > "$p/addr_trtype" && echo "${5:-ipv4}" > "$p/addr_adrfam" &&
    echo "$3" > "$p/addr_traddr" && echo "$4" > "$p/addr_trsvcid"
}
nvmet_link() { # nvmet_link PORTID NQN
    ln -s "$CFG/subsystems/$2" "$CFG/ports/$1/subsystems/$2"
}

# ---------------------------------------------------------------- kernel host state
# dc_ctrl [HOSTNQN] : name (nvmeN) of a controller connected to dem at DC_ADDR:DC_PORT
# (with HOSTNQN: one that host NQN connected)
dc_ctrl() {
    local c
    for c in /sys/class/nvme/nvme*; do
        [ -f "$c/address" ] || continue
        [ -z "${1:-}" ] || [ "$(cat "$c/hostnqn" 2>/dev/null)" = "$1" ] || continue
        case "$(cat "$c/address")" in
            *"traddr=$DC_ADDR,trsvcid=$DC_PORT"*) basename "$c"; return 0 ;;
        esac
    done
    return 1
}
# ns_dev NQN : block device (/dev/nvmeXnY) of the first namespace of subsystem NQN
ns_dev() {
    local s d c
    for s in /sys/class/nvme-subsystem/nvme-subsys*; do
        [ "$(cat "$s/subsysnqn" 2>/dev/null)" = "$1" ] || continue
        for d in "$s"/nvme*n*; do
            [ -e "$d" ] && [ -b "/dev/$(basename "$d")" ] && { echo "/dev/$(basename "$d")"; return 0; }
        done
    done
    for c in /sys/class/nvme/nvme*; do   # without native multipath
        [ "$(cat "$c/subsysnqn" 2>/dev/null)" = "$1" ] || continue
        for d in "$c"/nvme*n*; do
            [ -b "/dev/$(basename "$d")" ] && { echo "/dev/$(basename "$d")"; return 0; }
        done
    done
    return 1
}
nvme_state() { # print the kernel's NVMe controllers (name, state, transport address, subsystem NQN)
    local c
    for c in /sys/class/nvme/nvme*; do
        [ -e "$c" ] || continue
        echo "$(basename "$c") $(cat "$c/state" 2>/dev/null) $(cat "$c/transport" 2>/dev/null) [$(cat "$c/address" 2>/dev/null)] $(cat "$c/subsysnqn" 2>/dev/null)"
    done
}
# aen_watch FILE : append every NVMe AEN uevent the kernel raises to FILE
# (NVME_AEN=0x70f002 is "discovery log page changed"; DEVNAME names the controller)
aen_watch() {
    ( busybox uevent sh -c 'env | grep -q NVME_AEN && { echo ---; env | grep -E "^(NVME_|DEVNAME)"; } >> '"$1" ) &
}
# aen_count FILE CODE [CTRL] : how many events NVME_AEN=CODE FILE holds (with CTRL: only
# those of controller CTRL, e.g. nvme1)
aen_count() {
    if [ -z "${3:-}" ]; then grep -c "NVME_AEN=$2" "$1" 2>/dev/null || true; return; fi
    awk -v code="NVME_AEN=$2" -v dev="DEVNAME=$3" '
        function done() { if (a && d) n++; a = 0; d = 0 }
        $0 == "---" { done(); next }
        $0 == code { a = 1 } $0 == dev || $0 == "DEVNAME=/dev/" substr(dev, 9) { d = 1 }
        END { done(); print n + 0 }' "$1" 2>/dev/null || echo 0
}
# aen_wait FILE CODE N SECS [CTRL] : wait until FILE holds N events NVME_AEN=CODE (of CTRL)
aen_wait() {
    local i=0 n
    while [ $i -lt $(($4 * 10)) ]; do
        n=$(aen_count "$1" "$2" "${5:-}")
        [ "${n:-0}" -ge "$3" ] && return 0
        sleep 0.1; i=$((i+1))
    done
    return 1
}
dmesg_nvme() { # the kernel's NVMe messages (for the scenario log)
    echo "--- dmesg (nvme) ---"
    dmesg | grep -iE 'nvme|nvmet' | tail -n "${1:-40}"
}

# ---------------------------------------------------------------- notes, controller watch
# note NAME DETAIL : a measurement for the host's results ("INFO NAME (DETAIL)": it neither
# passes nor fails; host lib.sh guest_notes copies it)
note() {
    local d
    d=$(printf '%s' "${2:-}" | tr '\n\r@' '  _' | cut -c1-400)
    echo "@@NOTE $1 $d@@"
}
uptime_now() { cut -d' ' -f1 /proc/uptime; }
# ctl_watch FILE : in the background, until /tmp/ctl.stop exists, watch the kernel's NVMe
# controllers whose subsystem NQN is known (every 50 ms, shell builtins only): every change goes
# to FILE as
#   "UPTIME state NAME NQN STATE"  (a controller appeared or changed state)
#   "UPTIME gone NAME NQN"         (it disappeared)
# and to the console as @@CTL NAME|NQN|STATE@@ / @@CTL gone NAME|NQN@@ (host steps can wait
# for those with console_wait). CTL_WATCH_PID := its pid.
ctl_watch() {
    rm -f /tmp/ctl.stop
    (
        prev="" prevp=""
        while [ ! -f /tmp/ctl.stop ]; do
            cur="" curp=""
            for c in /sys/class/nvme/nvme*; do
                [ -r "$c/subsysnqn" ] || continue
                read -r n < "$c/subsysnqn" 2>/dev/null || continue
                # while a controller connects, its subsysnqn reads "(efault)": not known yet
                case "$n" in nqn.*) ;; *) continue ;; esac
                read -r s _ < "$c/state" 2>/dev/null || s=gone   # "deleting (no IO)": deleting
                cur="$cur ${c##*/}|$n|$s" curp="$curp ${c##*/}|$n"
            done
            if [ "$cur" != "$prev" ]; then
                read -r up _ < /proc/uptime
                for x in $cur; do
                    case " $prev " in *" $x "*) ;; *)
                        echo "$up state $(echo "$x" | tr '|' ' ')" >> "$1"; echo "@@CTL $x@@" ;;
                    esac
                done
                for x in $prevp; do
                    case " $curp " in *" $x "*) ;; *)
                        echo "$up gone $(echo "$x" | tr '|' ' ')" >> "$1"; echo "@@CTL gone $x@@" ;;
                    esac
                done
                prev=$cur prevp=$curp
            fi
            sleep 0.05
        done
    ) &
    # shellcheck disable=SC2034  # for the scenarios
    CTL_WATCH_PID=$!
}
# ctl_of NQN [STATE] : the controllers (names) of subsystem NQN (in STATE), one per line
ctl_of() {
    local c
    for c in /sys/class/nvme/nvme*; do
        [ "$(cat "$c/subsysnqn" 2>/dev/null)" = "$1" ] || continue
        [ -z "${2:-}" ] || [ "$(cat "$c/state" 2>/dev/null)" = "$2" ] || continue
        basename "$c"
    done
}
# ctl_wait NQN N SECS : wait until subsystem NQN has exactly N live controllers (N = 0: none at
# all, whatever their state)
ctl_wait() {
    local i=0
    while [ $i -lt $(($3 * 10)) ]; do
        if [ "$2" = 0 ]; then [ -z "$(ctl_of "$1")" ] && return 0
        else [ "$(ctl_of "$1" live | wc -l)" = "$2" ] && return 0; fi
        sleep 0.1; i=$((i+1))
    done
    return 1
}
# file_wait FILE PATTERN SECS : wait until FILE holds a line with PATTERN (grep basic regex)
file_wait() {
    local i=0
    while [ $i -lt $(($3 * 10)) ]; do
        grep -q -- "$2" "$1" 2>/dev/null && return 0
        sleep 0.1; i=$((i+1))
    done
    return 1
}

# ---------------------------------------------------------------- a target dem configured
# (the endpoint and inband scenarios: port 1 at 10.0.2.15:4420, subsystem NQN restricted to
# HOSTNQN with /dev/nullb0 as namespace 1)
# exported_checks NQN [TRTYPE] : configfs-port (port 1 is TRTYPE, tcp by default, at
# 10.0.2.15:4420), configfs-namespace and configfs-acl
exported_checks() {
    local p1=$CFG/ports/1 sub=$CFG/subsystems/$1 tr=${2:-tcp} got dp en any
    echo "--- configfs:"; find $CFG | sed "s|^$CFG/||" | grep -v '^$'
    got="$(cat $p1/addr_trtype $p1/addr_adrfam $p1/addr_traddr $p1/addr_trsvcid 2>/dev/null | tr '\n' ' ')"
    if [ "$got" = "$tr ipv4 10.0.2.15 4420 " ] && [ -L "$p1/subsystems/$1" ]; then pass configfs-port
    else fail configfs-port "ports/1: '$got' (want '$tr ipv4 10.0.2.15 4420'), link subsystems/$1: $(ls $p1/subsystems 2>&1 | tr '\n' ' ')"; fi
    dp=$(cat "$sub/namespaces/1/device_path" 2>/dev/null); en=$(cat "$sub/namespaces/1/enable" 2>/dev/null)
    if [ "$dp" = /dev/nullb0 ] && [ "$en" = 1 ]; then pass configfs-namespace
    else fail configfs-namespace "namespaces/1: device_path '$dp', enable '$en' (want /dev/nullb0, 1)"; fi
    any=$(cat "$sub/attr_allow_any_host" 2>/dev/null)
    if [ "$any" = 0 ] && [ -L "$sub/allowed_hosts/$HOSTNQN" ] && [ -d "$CFG/hosts/$HOSTNQN" ]; then pass configfs-acl
    else fail configfs-acl "attr_allow_any_host '$any' (want 0), allowed_hosts: $(ls $sub/allowed_hosts 2>&1 | tr '\n' ' ') (want $HOSTNQN)"; fi
}
# connect_io_checks NQN WANT -- NVME-DISCOVER-ARGS... : discover-lists-subsystem (the page is
# WANT), connect-all, connect-all-namespace and direct-io (O_DIRECT write, read back, compare
# through /tmp/pattern); DEV := the namespace's block device ("" when there is none)
connect_io_checks() {
    local nqn=$1 want=$2 i=0
    shift 3
    discover_exact discover-lists-subsystem "$want" -- "$@"
    check connect-all nvme connect-all "$@"
    while ! ns_dev "$nqn" > /dev/null && [ $i -lt 100 ]; do sleep 0.1; i=$((i+1)); done
    DEV=$(ns_dev "$nqn")
    nvme_state
    if [ -n "$DEV" ]; then pass connect-all-namespace; echo "namespace: $DEV"
    else fail connect-all-namespace "no block device for $nqn after connect-all; controllers: $(nvme_state | tr '\n' ';')"; fi
    dd if=/dev/urandom of=/tmp/pattern bs=4096 count=256 2>/dev/null
    if [ -z "$DEV" ]; then
        fail direct-io "no namespace block device"
    elif run dd if=/tmp/pattern of="$DEV" bs=4096 count=256 oflag=direct \
         && run dd if="$DEV" of=/tmp/readback bs=4096 count=256 iflag=direct; then
        if cmp -s /tmp/pattern /tmp/readback; then pass direct-io
        else fail direct-io "read back differs from written data"; fi
    else
        fail direct-io "$(why $?)"
    fi
}
