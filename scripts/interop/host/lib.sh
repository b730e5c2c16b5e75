# lib.sh - host side of the dem interop scenarios (bash; sourced by scenarios/*.sh).
# shellcheck shell=bash
#
# A scenario script:  . host/lib.sh; scenario_begin NAME; write_entries ...; dem_logpage ...;
#   capture_start; dem_start && { run_guest GUEST.sh SECS ...; dem_stop;
#   guest_results "expected guest check names"; }; capture_stop; tshark_checks; scenario_end
# Results go to $OUT/results.txt, one line per check: "PASS name" or "FAIL name (detail)".
# Env: DEM_BIN (required), DEM_LAB_CACHE, DEM_LAB_LOGS, DEM_INTEROP_OUT (this scenario's
#      log dir), DEM_LOG_LEVEL (default debug), DEM_PORT (default 8009), DEMCLI_BIN (dem-cli,
#      for the scenarios that configure dem through its REST API).
set -uo pipefail
IROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)      # scripts/interop
# shellcheck source=common.sh
. "$IROOT/host/common.sh"
CACHE=${DEM_LAB_CACHE:-/tmp/dem-lab-cache}
LOGS=${DEM_LAB_LOGS:-/tmp/dem-lab-logs}
DC_PORT=${DEM_PORT:-8009}
DEM_PID="" CAP_PID="" GUEST_PID=""

# ---------------------------------------------------------------- results
record() { # record PASS|FAIL NAME [detail]
    local line="$1 $2"
    [ "$1" = FAIL ] && line="$line (${3:-failed})"
    echo "$line" >> "$RESULTS"
    echo "[$SCEN] $line"
}

# ---------------------------------------------------------------- lifecycle
scenario_begin() { # scenario_begin NAME
    SCEN=$1
    OUT=${DEM_INTEROP_OUT:-$LOGS/$SCEN-$(date +%Y%m%d-%H%M%S)}
    mkdir -p "$OUT"; OUT=$(cd "$OUT" && pwd)
    RESULTS=$OUT/results.txt; : > "$RESULTS"
    SHARE=$OUT/share; rm -rf "$SHARE"; mkdir -p "$SHARE/expect"
    DATA=$(mktemp -d "${TMPDIR:-/tmp}/dem-interop-data.XXXXXX")
    ENTRIES=$OUT/entries.json
    trap scenario_cleanup EXIT
    trap 'echo "[$SCEN] interrupted"; exit 143' TERM
    trap 'echo "[$SCEN] interrupted"; exit 130' INT
    [ -n "${DEM_BIN:-}" ] && [ -x "$DEM_BIN" ] || { echo "[$SCEN] DEM_BIN is not an executable: '${DEM_BIN:-}'" >&2; exit 2; }
    [ -s "$CACHE/guest-hostnqn" ] && [ -s "$CACHE/guest-hostid" ] \
        || { echo "[$SCEN] no guest identity in $CACHE: run build-guest.sh" >&2; exit 2; }
    # shellcheck disable=SC2034  # used by the scenario scripts
    GUEST_HOSTNQN=$(cat "$CACHE/guest-hostnqn")
    # shellcheck disable=SC2034
    GUEST_HOSTID=$(cat "$CACHE/guest-hostid")
    DC_NQN="nqn.2024-01.io.example:dem-interop-dc-$SCEN"
    # parameters for the guest (sourced by the guest's lib.sh)
    { echo "DC_PORT=$DC_PORT"; echo "DC_NQN=$DC_NQN"; } > "$SHARE/params.sh"
    echo "[$SCEN] logs in $OUT"
}
scenario_cleanup() {
    [ -n "$GUEST_PID" ] && kill "$GUEST_PID" 2>/dev/null && wait "$GUEST_PID" 2>/dev/null
    GUEST_PID=""
    [ -n "$DEM_PID" ] && { kill -KILL -- -"$DEM_PID" 2>/dev/null; wait "$DEM_PID" 2>/dev/null; }
    DEM_PID=""
    [ -n "$CAP_PID" ] && { kill -INT -- -"$CAP_PID" 2>/dev/null; sleep 0.5; kill -KILL -- -"$CAP_PID" 2>/dev/null; wait "$CAP_PID" 2>/dev/null; }
    CAP_PID=""
    if [ -n "${DATA:-}" ] && [ -d "$DATA" ]; then
        rm -rf "$OUT/data-dir"; cp -a "$DATA" "$OUT/data-dir" 2>/dev/null   # dem's state, for the logs
        rm -rf "$DATA"
    fi
}
param() { echo "$1=$2" >> "$SHARE/params.sh"; }   # param NAME VALUE : a guest variable

# ---------------------------------------------------------------- entries files
# entry SUBNQN TRADDR TRSVCID PORTID [HOSTNQN...] : one entry object (no hosts = any host)
entry() {
    local nqn=$1 addr=$2 svc=$3 pid=$4 h hosts=""
    shift 4
    for h in "$@"; do hosts="$hosts${hosts:+, }\"$h\""; done
    printf '    { "subnqn": "%s", "trtype": "tcp", "adrfam": "ipv4", "traddr": "%s", "trsvcid": "%s", "portid": %s%s }' \
        "$nqn" "$addr" "$svc" "$pid" "${hosts:+, \"hosts\": [$hosts]}"
}
# write_entries FILE ENTRY... : write {"entries": [...]} atomically (temp file + rename)
write_entries() {
    local f=$1 e first=1
    shift
    {
        echo '{ "entries": ['
        for e in "$@"; do
            [ $first = 1 ] || echo ','
            printf '%s' "$e"; first=0
        done
        echo; echo '] }'
    } > "$f.tmp.$$" && mv -f "$f.tmp.$$" "$f"
}
# expect_list NAME NQN... : the subnqns a guest check expects listed (NAME.want) or hidden (NAME.hide)
expect_list() { local f=$SHARE/expect/$1; shift; printf '%s\n' "$@" > "$f"; }

# ---------------------------------------------------------------- dem
dem_common_args() { echo "--address 127.0.0.1 --port $DC_PORT --dc-nqn $DC_NQN --data-dir $DATA"; }
# dem_logpage NAME HOSTNQN : expected raw page for HOSTNQN -> $SHARE/expect/NAME.bin
# (and dem's JSON rendering -> $OUT/logpage-NAME.json); a failure fails dem-logpage-SCEN
DEM_LOGPAGE_ERR=""
dem_logpage() {
    local name=$1 host=$2 rc
    # shellcheck disable=SC2046
    timeout 60 "$DEM_BIN" logpage --host-nqn "$host" --entries "$ENTRIES" $(dem_common_args) \
        --raw "$SHARE/expect/$name.bin" > "$OUT/logpage-$name.out" 2> "$OUT/logpage-$name.log" < /dev/null
    rc=$?
    if [ $rc != 0 ] || [ ! -s "$SHARE/expect/$name.bin" ]; then
        DEM_LOGPAGE_ERR="${DEM_LOGPAGE_ERR}${DEM_LOGPAGE_ERR:+; }$name: rc=$rc $(tail -n 1 "$OUT/logpage-$name.log" 2>/dev/null)"
        rm -f "$SHARE/expect/$name.bin"
        return 1
    fi
    # shellcheck disable=SC2046
    timeout 60 "$DEM_BIN" logpage --host-nqn "$host" --entries "$ENTRIES" $(dem_common_args) \
        --json > "$OUT/logpage-$name.json" 2>> "$OUT/logpage-$name.log" < /dev/null
    return 0
}
dem_logpage_result() {
    if [ -z "$DEM_LOGPAGE_ERR" ]; then record PASS "dem-logpage-$SCEN"
    else record FAIL "dem-logpage-$SCEN" "$DEM_LOGPAGE_ERR"; fi
}
# alive PID : the process exists and is not a zombie (ps fails when it is gone; a stat read
# that comes back empty while the process is being torn down counts as gone, not as alive)
alive() {
    local state
    [ -n "$1" ] || return 1
    state=$(ps -o stat= -p "$1" 2>/dev/null) || return 1
    [ -n "$state" ] && [ "${state#Z}" = "$state" ]
}
listening() { ss -Hltn "sport = :$DC_PORT" 2>/dev/null | grep -q .; }
# dem_start [extra dem args] : dem serve on 127.0.0.1:DC_PORT in its own process group;
# records dem-start-SCEN; returns non-zero when dem is not listening within 30 s
dem_start() {
    local _
    if listening; then
        record FAIL "dem-start-$SCEN" "port $DC_PORT is already in use: $(ss -Hltnp "sport = :$DC_PORT" | head -n 1)"
        return 1
    fi
    if [ "${DEM_BARE:-0}" = 1 ]; then
        # dem exactly as a newcomer starts it: no arguments at all
        echo "[$SCEN] dem (no arguments)"
        setsid "$DEM_BIN" > "$OUT/dem.stdout" 2> "$OUT/dem.log" < /dev/null &
    else
        # DEM_NO_ENTRIES=1: no entries file, the fabric model (REST API, dem-cli) only
        local ent=(--entries "$ENTRIES")
        [ "${DEM_NO_ENTRIES:-0}" = 1 ] && ent=()
        echo "[$SCEN] dem serve ${ent[*]} $(dem_common_args) $*"
        # shellcheck disable=SC2046
        setsid "$DEM_BIN" serve "${ent[@]}" $(dem_common_args) \
            --log-level "${DEM_LOG_LEVEL:-debug}" "$@" > "$OUT/dem.stdout" 2> "$OUT/dem.log" < /dev/null &
    fi
    DEM_PID=$!
    DEM_T0=$EPOCHREALTIME
    DEM_API_SCHEME=https
    case " $* " in *" --insecure-http "*) DEM_API_SCHEME=http ;; esac
    export DEM_API_SCHEME
    for _ in $(seq 1 300); do
        listening && { record PASS "dem-start-$SCEN"; echo "[$SCEN] dem (pid $DEM_PID) listening after $(elapsed "$DEM_T0")s"; return 0; }
        alive "$DEM_PID" || break
        sleep 0.1
    done
    if alive "$DEM_PID"; then
        record FAIL "dem-start-$SCEN" "not listening on 127.0.0.1:$DC_PORT after 30 s"
    else
        wait "$DEM_PID"; local rc=$?
        record FAIL "dem-start-$SCEN" "exited with status $rc before listening: $(tail -n 1 "$OUT/dem.log")"
        DEM_PID=""
    fi
    return 1
}
# api_url : the base URL of this scenario's dem REST API on API_PORT: https (dem's default),
# http when dem_start was given --insecure-http (DEM_API_SCHEME, exported for host steps)
api_url() { echo "${DEM_API_SCHEME:-https}://127.0.0.1:$API_PORT"; }
# api_curl_tls : the curl options that trust dem's fabric CA (in dem's data directory)
api_curl_tls() { echo "--cacert $DATA/fabric-ca.pem"; }
# join_token NAME : a one-time join token from dem-cli (600 s) in $SHARE/join.token and the
# fabric CA's fingerprint, as dem logged it and as the token's note repeats it, in
# $SHARE/ca.hash, for a guest's dem-em to enrol with; records join-token
join_token() {
    local hash
    hash=$(grep -a -m1 'REST API listening' "$OUT/dem.log" | grep -o 'tls-ca-fingerprint=sha256:[0-9a-f]*' | sed 's/.*=//')
    if DEM_DATA_DIR=$DATA timeout 30 "$DEMCLI_BIN" -p "$API_PORT" add join-token "$1" 600 > "$SHARE/join.token" 2> "$OUT/join-token.err" \
        && grep -q '^dem_' "$SHARE/join.token" && [ -n "$hash" ] && grep -qF -- "--ca-hash $hash" "$OUT/join-token.err"; then
        record PASS join-token
        echo "$hash" > "$SHARE/ca.hash"
    else
        record FAIL join-token "dem-cli add join-token $1 600: $(head -c 300 "$OUT/join-token.err"); fingerprint '$hash'"
    fi
}
# the scenarios' host steps run dem_cli and dem_api in shells of their own
export -f api_url api_curl_tls
# dem_api_wait : wait (up to 30 s) until dem logs that its REST API listens; sets API_PORT
# to the port it bound (so `--api-port 0` works); returns non-zero when it does not
API_PORT=""
dem_api_wait() {
    local _ p
    for _ in $(seq 1 300); do
        p=$(grep -a -m1 'REST API listening' "$OUT/dem.log" 2>/dev/null | grep -o 'url=https\?://[^ ]*' | sed 's/.*://')
        [ -n "$p" ] && { API_PORT=$p; return 0; }
        alive "$DEM_PID" || return 1
        sleep 0.1
    done
    return 1
}
# dem_cli ARGS... : dem-cli (DEMCLI_BIN) against this scenario's dem (API_PORT; the admin
# token and the fabric CA from dem's data directory); the command and its output go to $OUT/dem-cli.log
dem_cli() {
    echo "\$ dem-cli $*" >> "$OUT/dem-cli.log"
    DEM_DATA_DIR=$DATA timeout 30 "$DEMCLI_BIN" -s "$(api_url | sed 's/:[0-9]*$//')" -p "$API_PORT" "$@" >> "$OUT/dem-cli.log" 2>&1 < /dev/null
    local rc=$?
    [ $rc = 0 ] || echo "  -> exit status $rc" >> "$OUT/dem-cli.log"
    return $rc
}
# step_result NAME TAG : the host step TAG (dem-cli commands run while the guest waited) succeeded
step_result() {
    local rc
    rc=$(sed -n "s/^hoststep $2 rc=\([0-9]*\).*/\1/p" "$OUT/guest/timings" 2>/dev/null | head -n 1)
    if [ "$rc" = 0 ]; then record PASS "$1"
    elif [ -z "$rc" ]; then record FAIL "$1" "the guest never asked for host step '$2'"
    else record FAIL "$1" "rc=$rc: $(tail -n 2 "$OUT/guest/host-$2.log" 2>/dev/null | tr '\n' ' ')"; fi
}

# dem_cli_cmd ARGS... : the same dem_cli call as a shell command (for run-guest.sh -H TAG=CMD;
# its output goes to the host step's log)
dem_cli_cmd() {
    printf 'echo %q && DEM_DATA_DIR=%q timeout 30 %q -s %q -p %q' "+ dem-cli $*" "$DATA" "$DEMCLI_BIN" "$(api_url | sed 's/:[0-9]*$//')" "$API_PORT"
    printf ' %q' "$@"
    printf ' < /dev/null'
}

# dem_api METHOD PATH [JSON] : dem's REST API (API_PORT) with the admin token of dem's data
# directory; the body goes to stdout; calls other than GET, and failed ones, are logged in
# $OUT/dem-api.log. Returns non-zero unless dem answers 2xx.
dem_api() {
    local m=$1 p=$2 code body rc
    local args=(-s -o "$OUT/dem-api.body.$$" -w '%{http_code}' --max-time 10 -X "$m"
        -H "Authorization: Bearer $(cat "$DATA/admin.token" 2>/dev/null)")
    [ -n "${3:-}" ] && args+=(-H 'Content-Type: application/json' --data "$3")
    # shellcheck disable=SC2046
    code=$(curl "${args[@]}" $(api_curl_tls) "$(api_url)$p" < /dev/null)
    body=$(cat "$OUT/dem-api.body.$$" 2>/dev/null); rm -f "$OUT/dem-api.body.$$"
    case $code in 2??) rc=0 ;; *) rc=1 ;; esac
    if [ "$m" != GET ] || [ $rc != 0 ]; then
        { echo "\$ $m $p ${3:-}"; echo "  -> ${code:-no answer} $body"; } >> "$OUT/dem-api.log"
    fi
    printf '%s\n' "$body"
    return $rc
}
# json_field NAME : the value of the first "NAME":value in compact JSON on stdin (strings
# without their quotes)
json_field() { grep -o "\"$1\":\(\"[^\"]*\"\|[-0-9.a-z]*\)" | head -n 1 | sed 's/^[^:]*://; s/^"//; s/"$//'; }
# wait_target ALIAS SECS STATE [MIN_SERVING] : wait until dem's GET /target/ALIAS/status
# says State STATE and Serving >= MIN_SERVING (default 0); TARGET_STATUS := the last answer.
# Returns non-zero when it does not within SECS.
wait_target() {
    local t0=$EPOCHREALTIME st n
    while :; do
        TARGET_STATUS=$(dem_api GET "/target/$1/status" 2>/dev/null)
        st=$(printf '%s' "$TARGET_STATUS" | json_field State)
        n=$(printf '%s' "$TARGET_STATUS" | json_field Serving)
        [ "$st" = "$3" ] && [ "${n:-0}" -ge "${4:-0}" ] && return 0
        awk -v a="$t0" -v b="$EPOCHREALTIME" -v s="$2" 'BEGIN { exit !(b - a >= s) }' && return 1
        sleep 0.2
    done
}
# free_port : a TCP port nothing listens on at this machine (20000-39999), for a REST API or
# a qemu port forward
free_port() {
    local p _
    for _ in $(seq 1 100); do
        p=$((20000 + RANDOM % 20000))
        ss -Hltn "sport = :$p" 2>/dev/null | grep -q . || { echo "$p"; return 0; }
    done
    return 1
}
# share_file SRC NAME : SRC as $SHARE/NAME (the guest's /host/NAME): a hard link when SRC is
# on the same file system, else a copy
share_file() { ln -f "$1" "$SHARE/$2" 2>/dev/null || cp "$1" "$SHARE/$2"; }
# step_checks_result NAMES : every check a host step (run-guest.sh -H) should have recorded
# and did not fails (the guest never asked for the step, or the step was killed)
step_checks_result() {
    local n
    for n in $1; do
        grep -q "^[A-Z]* $n\( \|$\)" "$RESULTS" \
            || record FAIL "$n" "no result: its host step did not run or did not finish (see $OUT/guest/host-*.log)"
    done
}

# dem_hang_report PID : what a dem that does not exit is doing (thread states, kernel wait
# channels, open sockets, and a backtrace of every thread when gdb is there)
dem_hang_report() {
    local p=$1 t states
    states=$(for t in /proc/"$p"/task/*; do awk '{print $3}' "$t/stat" 2>/dev/null; done | sort | uniq -c | tr -s ' \n' ' ')
    echo "threads: $(ls /proc/"$p"/task | wc -l) (states:$states)"
    for t in /proc/"$p"/task/*; do
        echo "  tid $(basename "$t") $(cat "$t/comm" 2>/dev/null) state=$(awk '{print $3}' "$t/stat" 2>/dev/null) wchan=$(cat "$t/wchan" 2>/dev/null)"
    done
    echo "sockets:"; ss -tanp 2>/dev/null | grep "pid=$p," | sed 's/^/  /'
    if command -v gdb > /dev/null; then
        echo "gdb backtraces:"
        timeout 60 gdb -p "$p" -batch -ex 'thread apply all bt 30' 2>&1 | grep -E '^(Thread|#)' | head -n 400
    fi
}
# dem_stop : SIGTERM, expect a clean exit (status 0) within 10 s; records dem-stop-SCEN
dem_stop() {
    local _ rc
    [ -n "$DEM_PID" ] || return 0
    if ! alive "$DEM_PID"; then
        wait "$DEM_PID"; rc=$?
        record FAIL "dem-stop-$SCEN" "dem had already exited (status $rc) before the end of the scenario"
    else
        kill -TERM "$DEM_PID"
        local t0=$EPOCHREALTIME
        # 10 s of real time, however long each check takes
        while alive "$DEM_PID" && awk -v a="$t0" -v b="$EPOCHREALTIME" 'BEGIN { exit !(b - a < 10) }'; do
            sleep 0.1
        done
        if alive "$DEM_PID"; then
            dem_hang_report "$DEM_PID" > "$OUT/dem-hang.txt" 2>&1
            kill -KILL -- -"$DEM_PID" 2>/dev/null; wait "$DEM_PID" 2>/dev/null
            record FAIL "dem-stop-$SCEN" "still running $(elapsed "$t0") s after SIGTERM (killed; threads and backtraces in dem-hang.txt: $(grep -m1 '^threads:' "$OUT/dem-hang.txt"))"
        else
            wait "$DEM_PID"; rc=$?
            if [ $rc = 0 ]; then record PASS "dem-stop-$SCEN"
            else record FAIL "dem-stop-$SCEN" "exit status $rc after SIGTERM"; fi
        fi
    fi
    kill -KILL -- -"$DEM_PID" 2>/dev/null   # anything left in its process group
    DEM_PID=""
}

# ---------------------------------------------------------------- guest
# run_guest GUEST_SCRIPT TIMEOUT [run-guest.sh options] : boot with $SHARE at /host
# auth_overlay CHECK : the NVMe drivers rebuilt with in-band authentication (DH-HMAC-CHAP;
# auth/build-auth-modules.sh, cached in DEM_LAB_CACHE) as run-guest.sh -F arguments in the
# array OVERLAY; records CHECK PASS, or FAIL with the build's error (OVERLAY left empty)
auth_overlay() {
    OVERLAY=()
    local mods=$DEM_LAB_CACHE/auth-modules
    if bash "$IROOT/auth/build-auth-modules.sh" "$mods" > "$OUT/auth-build.out" 2> "$OUT/auth-build.log" \
        && mapfile -t OVERLAY < <(bash "$IROOT/auth/lab-auth-overlay.sh" "$mods" "$OUT/auth-overlay" 2> "$OUT/auth-overlay.log") \
        && [ ${#OVERLAY[@]} -gt 0 ]; then
        record PASS "$1"
    else
        record FAIL "$1" "$(tail -n 2 "$OUT/auth-build.log" "$OUT/auth-overlay.log" 2>/dev/null | tr '\n' ' ')"
        OVERLAY=()
    fi
}
run_guest() {
    local g=$1 t=$2 rc attempt
    shift 2
    echo "$DEM_PID" > "$OUT/dem.pid"
    for attempt in 1 2; do
        # shellcheck disable=SC2086
        "$IROOT/run-guest.sh" -o "$OUT/guest" -t "$t" -S "$SHARE" ${DEM_INTEROP_GUEST_OPTS:-} "$@" "$g" \
            > "$OUT/run-guest.log" 2>&1 &
        GUEST_PID=$!
        wait "$GUEST_PID"; rc=$?
        GUEST_PID=""
        # A guest that never reached its init (under TCG on a loaded machine the kernel can fail
        # its own timer check) ran nothing of the scenario: boot it once more.
        if [ "$attempt" = 1 ] && ! grep -aq '@@BOOTED' "$OUT/guest/console.log" 2>/dev/null; then
            echo "[$SCEN] the guest did not boot ($(grep -a -m1 -o 'Kernel panic[^\r]*' "$OUT/guest/console.log" 2>/dev/null | cut -c1-120)); booting again"
            rm -rf "$OUT/guest.failed-boot"; mv "$OUT/guest" "$OUT/guest.failed-boot" 2>/dev/null
            continue
        fi
        break
    done
    sed -n 's/^\[run-guest\] \(qemu rc\|HARD\|GUEST KERNEL\|host step\)/  \1/p' "$OUT/run-guest.log" | sed "s/^/[$SCEN]/"
    return $rc
}
# guest_results EXPECTED_NAMES : copy the guest's @@RESULT lines into the results; every
# expected name without a result fails (the guest crashed, hung or was skipped)
guest_results() {
    local con=$OUT/guest/console.log n st d why line
    if [ -f "$con" ]; then
        grep -a -o '@@RESULT [^@]*@@' "$con" | sed 's/^@@RESULT //; s/@@$//' | while IFS= read -r line; do
            n=${line%% *}; line=${line#"$n"}; line=${line# }
            st=${line%% *}; d=${line#"$st"}; d=${d# }
            record "$st" "$n" "$d"
        done
    fi
    why="no result"
    if grep -q '^crash' "$OUT/guest/timings" 2>/dev/null; then
        why="no result: guest kernel crashed: $(sed -n 's/^crash //p' "$OUT/guest/timings" | head -n 1)"
    elif grep -q '^timeout' "$OUT/guest/timings" 2>/dev/null; then why="no result: guest hit its hard timeout"
    elif ! grep -aq '@@BOOTED' "$con" 2>/dev/null; then why="no result: guest did not boot"
    elif ! grep -aq '@@SCENARIO_EXIT' "$con" 2>/dev/null; then why="no result: guest scenario did not finish"
    fi
    for n in $1; do
        grep -q "^[A-Z]* $n\( \|$\)" "$RESULTS" || record FAIL "$n" "$why"
    done
}
# skip_guest EXPECTED_NAMES REASON : fail every guest check (dem did not start)
skip_guest() { local n; for n in $1; do record FAIL "$n" "$2"; done; }

# ---------------------------------------------------------------- tshark
# capture_on PORT FILE : tshark on lo, tcp port PORT -> FILE, its messages in FILE.log (waits
# until it captures); CAPTURED := its pid
CAPTURED=""
capture_on() {
    local _
    setsid tshark -i lo -f "tcp port $1" -w "$2" > "$2.log" 2>&1 < /dev/null &
    CAPTURED=$!
    for _ in $(seq 1 200); do
        grep -q "Capturing on" "$2.log" 2>/dev/null && return 0
        alive "$CAPTURED" || break
        sleep 0.1
    done
    echo "[$SCEN] tshark capture of port $1 did not start: $(tail -n 2 "$2.log")"
    return 1
}
# capture_off PID : stop the capture capture_on started (it writes what it has)
capture_off() {
    local _
    [ -n "$1" ] || return 0
    sleep 0.5
    kill -INT -- -"$1" 2>/dev/null
    for _ in $(seq 1 100); do alive "$1" || break; sleep 0.1; done
    kill -KILL -- -"$1" 2>/dev/null
    wait "$1" 2>/dev/null
}
# capture_start : the discovery port, tcp port DC_PORT -> $OUT/lo.pcapng
capture_start() {
    capture_on "$DC_PORT" "$OUT/lo.pcapng"
    local rc=$?
    CAP_PID=$CAPTURED
    return $rc
}
capture_stop() {
    capture_off "$CAP_PID"
    CAP_PID=""
}
# tshark_checks [digests] : decode the capture as NVMe/TCP (digests verified).
#   tshark-SCEN-decode  : ICReq/ICResp PDUs and discovery log page data were decoded
#   tshark-SCEN-clean   : no malformed packet, no expert info of severity error, no bad digest
#   tshark-SCEN-digests : (with "digests") an ICReq asking for header+data digests was
#                         answered with both enabled and digests were seen and verified
TSHARK_DEC=""
tshark_checks() {
    local f=$OUT/lo.pcapng icreq icresp logs bad rc n1 n2 n3 hd dd
    TSHARK_DEC="-d tcp.port==$DC_PORT,nvme-tcp -o nvme-tcp.check_hdgst:TRUE -o nvme-tcp.check_ddgst:TRUE"
    if [ ! -s "$f" ]; then
        record FAIL "tshark-$SCEN-decode" "no capture file"
        record FAIL "tshark-$SCEN-clean" "no capture file"
        [ "${1:-}" = digests ] && record FAIL "tshark-$SCEN-digests" "no capture file"
        return
    fi
    ts() { tshark -r "$f" $TSHARK_DEC "$@" 2>> "$OUT/tshark-read.err"; }
    : > "$OUT/tshark-read.err"
    ts -Y nvme-tcp > "$OUT/tshark-decode.txt"
    ts -Y nvme-tcp -V > "$OUT/tshark-verbose.txt"
    icreq=$(grep -c "Initialize Connection Request" "$OUT/tshark-decode.txt")
    icresp=$(grep -c "Initialize Connection Response" "$OUT/tshark-decode.txt")
    logs=$(ts -Y 'nvme.cmd.get_logpage.identify.numrec' -T fields -e frame.number | wc -l)
    if [ "$icreq" -ge 1 ] && [ "$icresp" -ge 1 ] && [ "$logs" -ge 1 ]; then
        record PASS "tshark-$SCEN-decode"
    else
        record FAIL "tshark-$SCEN-decode" "decoded $icreq ICReq, $icresp ICResp, $logs discovery log page headers in $(wc -l < "$OUT/tshark-decode.txt") NVMe/TCP frames"
    fi
    ts -Y '_ws.malformed || _ws.expert.severity >= "error" || nvme-tcp.hdgst.status == 0 || nvme-tcp.ddgst.status == 0' \
        > "$OUT/tshark-errors.txt"
    rc=$?
    bad=$(grep -c . "$OUT/tshark-errors.txt")
    if [ $rc != 0 ]; then
        record FAIL "tshark-$SCEN-clean" "tshark failed (status $rc): $(grep -v 'Running as user' "$OUT/tshark-read.err" | tail -n 1)"
    elif [ "$bad" = 0 ]; then
        record PASS "tshark-$SCEN-clean"
    else
        ts -Y '_ws.malformed || _ws.expert.severity >= "error" || nvme-tcp.hdgst.status == 0 || nvme-tcp.ddgst.status == 0' \
            -T fields -e frame.number -e _ws.col.Info -e _ws.expert.message > "$OUT/tshark-errors-detail.txt"
        record FAIL "tshark-$SCEN-clean" "$bad frames malformed, with expert errors or bad digests, first: $(head -n 1 "$OUT/tshark-errors-detail.txt" | tr '\t' ' ' | tr -s ' ' | cut -c1-200)"
    fi
    if [ "${1:-}" = digests ]; then
        n1=$(ts -Y 'nvme-tcp.icreq.digest == 3' -T fields -e frame.number | wc -l)
        n2=$(ts -Y 'nvme-tcp.icresp.digest == 3' -T fields -e frame.number | wc -l)
        hd=$(ts -Y 'nvme-tcp.hdgst.status == 1' -T fields -e frame.number | wc -l)
        dd=$(ts -Y 'nvme-tcp.ddgst.status == 1' -T fields -e frame.number | wc -l)
        n3=$(ts -Y 'nvme-tcp.hdgst.status == 0 || nvme-tcp.ddgst.status == 0' -T fields -e frame.number | wc -l)
        if [ "$n1" -ge 1 ] && [ "$n2" -ge "$n1" ] && [ "$hd" -ge 1 ] && [ "$dd" -ge 1 ] && [ "$n3" = 0 ]; then
            record PASS "tshark-$SCEN-digests"
        else
            record FAIL "tshark-$SCEN-digests" "$n1 ICReq asked for header+data digests, $n2 ICResp enabled both; PDUs with a verified header digest: $hd, data digest: $dd, bad: $n3"
        fi
    fi
}

# ---------------------------------------------------------------- end
# scenario_end : diagnostics for failures (dem log tail, guest console/dmesg tail)
scenario_end() {
    if grep -q '^FAIL' "$RESULTS"; then
        {
            echo "==== dem log tail ($OUT/dem.log)"
            tail -n "${DEM_LOG_TAIL:-40}" "$OUT/dem.log" 2>/dev/null
            if [ -f "$OUT/guest/console.log" ]; then
                echo "==== guest output of the failed checks ($OUT/guest/console.log)"
                tr -d '\r' < "$OUT/guest/console.log" | awk '
                    /^\[ *[0-9]+\.[0-9]+\] / { next }                       # kernel lines: below
                    /@@RESULT [^ ]* FAIL/ { split($0, a, " "); print "-- " a[2] ":";
                                            for (i = (k > 12 ? k - 12 : 0); i < k; i++) print "   " buf[i];
                                            k = 0; next }
                    /@@RESULT / { k = 0; next }
                    /@@/ { next }
                    { buf[k++] = $0 }'
                echo "==== guest kernel messages (nvme)"
                tr -d '\r' < "$OUT/guest/console.log" | grep -a -E '^\[ *[0-9.]+\] .*nvme' | grep -v 'ommand line' | tail -n 30
            fi
        } > "$OUT/diagnostics.txt"
    fi
}

# ---------------------------------------------------------------- notes, console, restarts
# note NAME DETAIL : an "INFO NAME (DETAIL)" line in the results (a measurement: it neither
# passes nor fails; run.sh prints it)
note() {
    echo "INFO $1 (${2:-})" >> "$RESULTS"
    echo "[$SCEN] INFO $1 (${2:-})"
}
# guest_notes : copy the guest's @@NOTE NAME detail@@ lines (guest lib.sh: note) into the results
guest_notes() {
    local con=$OUT/guest/console.log line n
    [ -f "$con" ] || return 0
    grep -a -o '@@NOTE [^@]*@@' "$con" | sed 's/^@@NOTE //; s/@@$//' | while IFS= read -r line; do
        n=${line%% *}; line=${line#"$n"}
        note "$n" "${line# }"
    done
}
# console_size : the guest console's size in bytes now (an offset for console_wait)
console_size() { stat -c %s "$OUT/guest/console.log" 2>/dev/null || echo 0; }
# console_wait PATTERN SECS [OFFSET] : wait (polling every 20 ms) until the guest console holds
# a line matching PATTERN (grep basic regex) after byte OFFSET; CONSOLE_AT := $EPOCHREALTIME when
# it was seen. For host steps that time what the guest prints while they run.
CONSOLE_AT=""
console_wait() {
    local t0=$EPOCHREALTIME
    CONSOLE_AT=""
    while :; do
        if tail -c +$(( ${3:-0} + 1 )) "$OUT/guest/console.log" 2>/dev/null | grep -aq -- "$1"; then
            # shellcheck disable=SC2034  # used by the scenarios' host steps
            CONSOLE_AT=$EPOCHREALTIME; return 0
        fi
        awk -v a="$t0" -v b="$EPOCHREALTIME" -v s="$2" 'BEGIN { exit !(b - a >= s) }' && return 1
        sleep 0.02
    done
}
# ms_between T0 T1 : milliseconds from T0 to T1 ($EPOCHREALTIME values)
ms_between() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%d", (b - a) * 1000 + 0.5 }'; }

# dem_kill : SIGKILL dem's process group (a crash: no clean shutdown) and reap it; its log and
# output are kept as dem.N.log and dem.N.stdout (N = 1, 2, ...), so that a dem_start after it
# writes fresh ones. Returns non-zero when dem was not running.
dem_kill() {
    local n=1
    [ -n "$DEM_PID" ] || return 1
    kill -KILL -- -"$DEM_PID" 2>/dev/null; wait "$DEM_PID" 2>/dev/null
    echo "[$SCEN] dem (pid $DEM_PID) killed with SIGKILL"
    DEM_PID=""
    while [ -e "$OUT/dem.$n.log" ]; do n=$((n+1)); done
    mv -f "$OUT/dem.log" "$OUT/dem.$n.log" 2>/dev/null
    mv -f "$OUT/dem.stdout" "$OUT/dem.$n.stdout" 2>/dev/null
    return 0
}

# Host steps in the scenario's own shell. A host step (run-guest.sh -H) runs in a shell of its
# own; what must happen in the scenario's shell (restarting dem, which must stay its child for
# dem_stop) goes through run_guest_serving: it runs run_guest in the background and, whenever a
# host step made with main_step_cmd TAG asks, calls `main_step TAG` (a function the scenario
# defines) here; the host step ends with main_step's status.
# run_guest_serving GUEST_SCRIPT TIMEOUT [run-guest.sh options] : like run_guest
run_guest_serving() {
    local rg req tag
    rm -f "$OUT"/main-step.*
    run_guest "$@" &
    rg=$!
    while alive "$rg"; do
        for req in "$OUT"/main-step.*.req; do
            [ -e "$req" ] || continue
            tag=${req#"$OUT"/main-step.}; tag=${tag%.req}
            rm -f "$req"
            echo "[$SCEN] main step '$tag'"
            main_step "$tag"
            echo $? > "$OUT/main-step.$tag.done"
        done
        sleep 0.1
    done
    wait "$rg"
}
# main_step_cmd TAG [SECS] : the host step command (for run-guest.sh -H TAG=...) that asks
# run_guest_serving for `main_step TAG` and waits for it (up to SECS, default 55)
main_step_cmd() {
    # shellcheck disable=SC2016  # expanded by the host step's shell
    printf 'touch %q && for i in $(seq 1 %d); do [ -e %q ] && exit "$(cat %q)"; sleep 0.1; done; echo "main step %s: no answer"; exit 1' \
        "$OUT/main-step.$1.req" "$(( ${2:-55} * 10 ))" "$OUT/main-step.$1.done" "$OUT/main-step.$1.done" "$1"
}
