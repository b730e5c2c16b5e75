#!/bin/bash
# run-guest.sh - boot the interop guest (see build-guest.sh) under qemu (TCG) with a
# guest scenario script; the guest runs it and powers itself off.  Hard timeout.
#
# Usage: scripts/interop/run-guest.sh [options] GUEST_SCENARIO.sh
#   -o DIR      log directory (default $DEM_LAB_LOGS/run-TIMESTAMP-NAME)
#   -t SECS     hard wall-clock limit for qemu (default 180)
#   -S DIR      share host folder DIR read-only at /host in the guest (9p); the guest
#               sources /host/params.sh if present.  Binaries built with
#               `swift build --static-swift-stdlib` run from there.
#   -F SRC=DEST copy host file SRC into the guest at DEST (absolute; repeatable)
#   -H TAG=CMD  host command (bash -c) run when the guest calls `host_step TAG`; the
#               guest waits until it finished (bounded by 60 s; repeatable)
#   -f RULE     qemu user-net hostfwd rule, e.g. tcp:127.0.0.1:14420-:4420 (repeatable)
#   -p          capture the guest NIC traffic (qemu filter-dump) to DIR/guest-net.pcap
#   -r          restrict=on: the guest cannot open connections to the host
#   -m MB       guest RAM (default 1024)      -s N   vCPUs (default 2)
#   -a ARGS     extra kernel command line
# Env: DEM_LAB_CACHE (kernel + initramfs, default /tmp/dem-lab-cache),
#      DEM_LAB_LOGS (default /tmp/dem-lab-logs), QEMU_EXTRA (extra qemu arguments)
# Files in the log directory: console.log (guest serial console), qemu.stderr,
#   host-TAG.log (host steps), timings.
# Exit status: 0 when the scenario exited 0 and printed no FAIL result.
set -uo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
CACHE=${DEM_LAB_CACHE:-/tmp/dem-lab-cache}
TIMEOUT=180 MEM=1024 SMP=2 RESTRICT=0 APPEND="" OUTDIR="" PCAP=0 FWDS="" SHARE=""
FILES=()
declare -A HOSTCMD=()
while getopts "f:H:F:S:t:m:s:rpa:o:h" o; do
    case $o in
        f) FWDS="$FWDS,hostfwd=$OPTARG" ;;
        H) HOSTCMD[${OPTARG%%=*}]=${OPTARG#*=} ;;
        F) FILES+=("$OPTARG") ;;
        S) SHARE=$(cd "$OPTARG" && pwd) || exit 2 ;;
        t) TIMEOUT=$OPTARG ;;
        m) MEM=$OPTARG ;;
        s) SMP=$OPTARG ;;
        r) RESTRICT=1 ;;
        p) PCAP=1 ;;
        a) APPEND=$OPTARG ;;
        o) OUTDIR=$OPTARG ;;
        *) sed -n '2,22p' "$0"; exit 2 ;;
    esac
done
shift $((OPTIND-1))
SCEN=${1:-}
[ -n "$SCEN" ] && [ -f "$SCEN" ] || { echo "run-guest: no such scenario: '$SCEN'" >&2; exit 2; }
[ -s "$CACHE/initramfs.img" ] && [ -s "$CACHE/vmlinuz" ] || { echo "run-guest: run build-guest.sh first ($CACHE)" >&2; exit 2; }

name=$(basename "$SCEN" .sh)
OUT=${OUTDIR:-${DEM_LAB_LOGS:-/tmp/dem-lab-logs}/run-$(date +%Y%m%d-%H%M%S)-$name}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
export DEM_LAB_OUT=$OUT   # host steps can write next to the logs
CONSOLE=$OUT/console.log
: > "$CONSOLE"; : > "$OUT/timings"

# the scenario, the helper library and -F files go in as a second initramfs archive
SDIR=$(mktemp -d)
mkdir -p "$SDIR/usr/lib/dem-interop"
cp "$SCEN" "$SDIR/scenario.sh"
cp "$HERE/guest/lib.sh" "$SDIR/usr/lib/dem-interop/lib.sh"
for f in ${FILES[@]+"${FILES[@]}"}; do
    src=${f%%=*} dst=${f#*=}
    [ -e "$src" ] || { echo "run-guest: no such file for -F: $src" >&2; rm -rf "$SDIR"; exit 2; }
    mkdir -p "$SDIR$(dirname "$dst")"
    cp -L "$src" "$SDIR$dst"
done
(cd "$SDIR" && find . -mindepth 1 | sed 's|^\./||' | cpio -o -H newc --quiet -R 0:0 | gzip -1) > "$OUT/scenario.cpio.gz"
rm -rf "$SDIR"
cat "$CACHE/initramfs.img" "$OUT/scenario.cpio.gz" > "$OUT/initrd.img"

NET="user,id=n0,ipv6=off"
[ $RESTRICT = 1 ] && NET="$NET,restrict=on"
NET="$NET$FWDS"
EXTRA=()
[ $PCAP = 1 ] && EXTRA+=(-object "filter-dump,id=f0,netdev=n0,file=$OUT/guest-net.pcap")
[ -n "$SHARE" ] && EXTRA+=(-virtfs "local,path=$SHARE,mount_tag=host,security_model=none,readonly=on")

FIFO=$OUT/console.in
rm -f "$FIFO"; mkfifo "$FIFO"
exec 3<>"$FIFO"          # read-write: never blocks, keeps the fifo open

QPID="" WPID=""
cleanup() {
    [ -n "$QPID" ] && kill "$QPID" 2>/dev/null                       # the timeout wrapper
    [ -f "$OUT/qemu.pid" ] && kill "$(cat "$OUT/qemu.pid")" 2>/dev/null
    [ -n "$WPID" ] && kill "$WPID" 2>/dev/null
    [ -f "$OUT/hoststep.pid" ] && kill -- -"$(cat "$OUT/hoststep.pid")" 2>/dev/null
    rm -f "$OUT/initrd.img" "$FIFO" "$OUT/qemu.pid"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

T0=$EPOCHREALTIME
since() { awk -v a="$T0" -v b="$EPOCHREALTIME" 'BEGIN{printf "%.1f", b-a}'; }
echo "[run-guest] scenario=$name timeout=${TIMEOUT}s smp=$SMP mem=${MEM}M logs=$OUT"
# shellcheck disable=SC2086
timeout -k 5 "$TIMEOUT" qemu-system-x86_64 -nodefaults -display none -no-reboot \
    -accel tcg,thread=multi -cpu max -smp "$SMP" -m "$MEM" \
    -kernel "$CACHE/vmlinuz" -initrd "$OUT/initrd.img" \
    -append "console=ttyS0 quiet loglevel=1 panic=-1 oops=panic no_timer_check nvme_core.admin_timeout=10 $APPEND" \
    -serial stdio -pidfile "$OUT/qemu.pid" \
    -netdev "$NET" -device virtio-net-pci,netdev=n0,romfile= ${EXTRA[@]+"${EXTRA[@]}"} ${QEMU_EXTRA:-} \
    <&3 > "$CONSOLE" 2> "$OUT/qemu.stderr" &
QPID=$!

# watcher: timestamps the boot, runs host steps when the guest asks for them
(
    tail -n +1 -F --pid="$QPID" "$CONSOLE" 2>/dev/null | while IFS= read -r line; do
        line=${line%$'\r'}
        case "$line" in
            *"@@BOOTED"*) echo "boot $(since)" >> "$OUT/timings" ;;
            *"@@HOST "*"@@"*)
                tag=${line#*@@HOST }; tag=${tag%%@@*}
                cmd=${HOSTCMD[$tag]:-true}
                echo "[run-guest] host step '$tag' at $(since)s: $cmd"
                ts=$EPOCHREALTIME
                setsid timeout -k 5 60 bash -c "$cmd" > "$OUT/host-$tag.log" 2>&1 &
                hp=$!; echo "$hp" > "$OUT/hoststep.pid"
                wait "$hp"; hrc=$?; rm -f "$OUT/hoststep.pid"
                echo "hoststep $tag rc=$hrc $(awk -v a="$ts" -v b="$EPOCHREALTIME" 'BEGIN{printf "%.1f", b-a}')" >> "$OUT/timings"
                echo "[run-guest] host step '$tag' rc=$hrc"
                echo "GO $tag" >&3 ;;
        esac
    done
) &
WPID=$!

wait "$QPID"; QRC=$?
QPID=""
echo "total $(since)" >> "$OUT/timings"
sleep 0.3; kill "$WPID" 2>/dev/null; wait "$WPID" 2>/dev/null; WPID=""

boot=$(awk '/^boot/{print $2}' "$OUT/timings")
echo "[run-guest] qemu rc=$QRC boot=${boot:-?}s total=$(since)s"
crash=$(tr -d '\r' < "$CONSOLE" | grep -a -m1 -E 'BUG:|Oops:|Kernel panic|general protection fault' | sed 's/^\[ *[0-9.]*\] //')
if [ -n "$crash" ]; then
    rip=$(tr -d '\r' < "$CONSOLE" | grep -a -m1 -E 'RIP: 0010:' | sed 's/^.*RIP: 0010://')
    echo "[run-guest] GUEST KERNEL CRASH: $crash at $rip"; echo "crash $crash at $rip" >> "$OUT/timings"
fi
if [ "$QRC" = 124 ] || [ "$QRC" = 137 ]; then
    echo "[run-guest] HARD TIMEOUT after ${TIMEOUT}s"; echo "timeout $TIMEOUT" >> "$OUT/timings"
fi
[ -s "$OUT/qemu.stderr" ] && { echo "[run-guest] qemu stderr:"; cat "$OUT/qemu.stderr"; }
grep -a -o '@@RESULT [^@]*@@' "$CONSOLE" | sed 's/@@//g'
src=$(grep -a -o '@@SCENARIO_EXIT rc=[0-9]*' "$CONSOLE" | sed 's/.*rc=//')
if [ "${src:-x}" = 0 ] && ! grep -aq '@@RESULT [^ ]* FAIL' "$CONSOLE"; then
    echo "[run-guest] OK"; exit 0
fi
echo "[run-guest] FAILED (scenario rc=${src:-none})"; exit 1
