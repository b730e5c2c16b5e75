#!/bin/bash
# run.sh - dem's real-kernel interop tier.
#
# Boots Debian's Linux 6.1 (nvme-tcp host, nvmet target, null_blk) under qemu (TCG) a
# few times and drives the kernel's NVMe/TCP host (nvme-cli 2.3) against dem running on
# this machine (127.0.0.1:8009, the guest's 10.0.2.2:8009); tshark decodes the traffic.
#
# Usage: scripts/interop/run.sh [SCENARIO...]     (default: every scenario)
#   scenarios: bare discovery large-page connect-aen management registration endpoint inband autoconnect auth
#              endpoint-auth rdma replicas, and spdk when SPDK_DIR names a built SPDK tree
#              (scripts/interop/scenarios/NAME.sh)
# Env:
#   DEM_BIN          dem binary to test; default: build it with
#                    swift build --static-swift-stdlib --scratch-path .build-static --product dem
#   DEMCLI_BIN       dem-cli binary (it runs on this machine, for the scenarios marked
#                    "# needs: dem-cli"); default: build it with swift build --product dem-cli
#   DEMEM_BIN        dem-em binary (it runs in the guest, for the scenarios marked
#                    "# needs: dem-em"); default: build it with
#                    swift build --static-swift-stdlib --scratch-path .build-static --product dem-em
#   DEMAC_BIN        dem-ac binary (it runs in the guest, for the scenarios marked
#                    "# needs: ... dem-ac"); default: build it with
#                    swift build --static-swift-stdlib --scratch-path .build-static --product dem-ac
#   DEMDM_BIN        dem-dm binary (likewise, "# needs: ... dem-dm"; --product dem-dm)
#   DEM_RDMA_BIN, DEMEM_RDMA_BIN, DEMCLI_RDMA_BIN
#                    dem, dem-em and dem-cli built with the RDMA trait, for the scenarios marked
#                    "# needs: rdma" (they run in the guest); default: build them with
#                    swift build --static-swift-stdlib --traits RDMA --scratch-path .build-static-rdma
#   DEM_LAB_CACHE    guest kernel/initramfs cache (default /tmp/dem-lab-cache)
#   DEM_LAB_LOGS     logs (default /tmp/dem-lab-logs); this run: $DEM_LAB_LOGS/interop-TIMESTAMP
#   DEM_LOG_LEVEL    dem --log-level (default debug)
#   DEM_EM_LOG_LEVEL dem-em --log-level in the guest (endpoint scenario; default info)
#   DEM_AC_LOG_LEVEL dem-ac --log-level in the guest (autoconnect scenario; default debug)
#   DEM_INTEROP_SCENARIO_TIMEOUT  hard limit per scenario in seconds (default 320)
#   DEM_INTEROP_GUEST_OPTS        extra run-guest.sh options for every boot (e.g. -p)
#   SPDK_DIR         a built SPDK tree (build/bin/nvmf_tgt, scripts/rpc.py): adds the spdk
#                    scenario (dem-em --backend spdk on this machine, the guest as its host)
# Output: one line per check, "PASS name" or "FAIL name (detail)" (diagnostics for failed
# scenarios are indented below them), "INFO name (detail)" for a measurement (it neither passes
# nor fails), then "interop: N passed, M failed".
# Exit status 0 iff no check failed.
set -uo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
# shellcheck source=host/common.sh
. "$HERE/host/common.sh"
export DEM_LAB_CACHE=${DEM_LAB_CACHE:-/tmp/dem-lab-cache}
export DEM_LAB_LOGS=${DEM_LAB_LOGS:-/tmp/dem-lab-logs}
# spdk: with SPDK_DIR naming a built SPDK tree (build/bin/nvmf_tgt, scripts/rpc.py)
ALL_SCENARIOS="bare discovery large-page connect-aen management registration endpoint inband autoconnect auth endpoint-auth rdma replicas${SPDK_DIR:+ spdk}"
SCENARIOS=${*:-$ALL_SCENARIOS}
# DEM_INTEROP_SKIP: scenarios left out of this run (scripts/test runs them beside it)
for s in ${DEM_INTEROP_SKIP:-}; do SCENARIOS=$(echo " $SCENARIOS " | sed "s/ $s / /; s/^ *//; s/ *$//"); done
RUN=$DEM_LAB_LOGS/interop-$(date +%Y%m%d-%H%M%S)
mkdir -p "$RUN" "$DEM_LAB_CACHE"
T0=$EPOCHREALTIME
PASSED=0 FAILED=0
CHILD=""
on_signal() {
    [ -n "$CHILD" ] && kill -TERM "$CHILD" 2>/dev/null
    wait
    fail interrupted "run.sh got a signal; partial results above"
    finish
}
trap on_signal INT TERM

info() { echo "[interop] $*"; }
pass() { echo "PASS $1"; PASSED=$((PASSED+1)); }
fail() { echo "FAIL $1 (${2:-failed})"; FAILED=$((FAILED+1)); }
finish() {
    info "logs: $RUN  total $(elapsed "$T0")s"
    echo "interop: $PASSED passed, $FAILED failed"
    [ "$FAILED" = 0 ]
    exit $?
}
# step NAME LOG CMD... : run a setup command in the background (interruptible), log to LOG
step() {
    local log=$1 rc
    shift
    "$@" > "$log" 2>&1 &
    CHILD=$!; wait "$CHILD"; rc=$?; CHILD=""
    return $rc
}
indent() { sed 's/^/    | /'; }

# a relative DEM_BIN is relative to the caller's directory
if [ -n "${DEM_BIN:-}" ] && [ -e "$DEM_BIN" ]; then
    DEM_BIN=$(cd "$(dirname "$DEM_BIN")" && pwd)/$(basename "$DEM_BIN")
fi
if [ -n "${DEMCLI_BIN:-}" ] && [ -e "$DEMCLI_BIN" ]; then
    DEMCLI_BIN=$(cd "$(dirname "$DEMCLI_BIN")" && pwd)/$(basename "$DEMCLI_BIN")
fi
if [ -n "${DEMEM_BIN:-}" ] && [ -e "$DEMEM_BIN" ]; then
    DEMEM_BIN=$(cd "$(dirname "$DEMEM_BIN")" && pwd)/$(basename "$DEMEM_BIN")
fi
if [ -n "${DEMAC_BIN:-}" ] && [ -e "$DEMAC_BIN" ]; then
    DEMAC_BIN=$(cd "$(dirname "$DEMAC_BIN")" && pwd)/$(basename "$DEMAC_BIN")
fi
if [ -n "${DEMDM_BIN:-}" ] && [ -e "$DEMDM_BIN" ]; then
    DEMDM_BIN=$(cd "$(dirname "$DEMDM_BIN")" && pwd)/$(basename "$DEMDM_BIN")
fi
cd "$ROOT" || exit 2
for s in $SCENARIOS; do
    [ -f "$HERE/scenarios/$s.sh" ] || { echo "run.sh: unknown scenario '$s' (known: $ALL_SCENARIOS)" >&2; exit 2; }
done
info "logs in $RUN"
[ -n "${SPDK_DIR:-}" ] || info "scenario spdk not run: SPDK_DIR is not set (a built SPDK tree: build/bin/nvmf_tgt, scripts/rpc.py)"

# only one interop run at a time on this machine (they share port 8009), but for scenarios that
# take ports of their own (OWN_PORTS): a run of only those goes beside another one
OWN_PORTS="replicas"
own_ports=1
for s in $SCENARIOS; do case " $OWN_PORTS " in *" $s "*) ;; *) own_ports=0 ;; esac; done
exec 9> "$DEM_LAB_CACHE/.interop.lock"
if ! flock -n 9; then
    if [ $own_ports = 1 ]; then
        info "another interop run holds $DEM_LAB_CACHE/.interop.lock; $SCENARIOS take ports of their own: going beside it"
    else
        info "another interop run holds $DEM_LAB_CACHE/.interop.lock; waiting (up to 20 min)"
        flock -w 1200 9 || { fail setup-lock "another interop run is still going"; finish; }
    fi
fi

# --- packages
t=$EPOCHREALTIME
if ! step "$RUN/packages.log" ensure_packages qemu-system-x86 linux-image-amd64 nvme-cli \
        busybox-static rdma-core ibverbs-utils rdmacm-utils librdmacm-dev libibverbs-dev iproute2 kmod cpio tshark bc \
        xxd util-linux curl; then
    fail setup-packages "apt-get failed: $(tail -n 1 "$RUN/packages.log")"
    finish
fi
info "packages ok ($(elapsed "$t")s)"

# --- guest kernel + initramfs (one run at a time builds the cache, whichever lock it holds)
t=$EPOCHREALTIME
exec 8> "$DEM_LAB_CACHE/.build.lock"
flock -w 1200 8 || { fail build-guest "another interop run is still building $DEM_LAB_CACHE"; finish; }
if ! step "$RUN/build-guest.log" "$HERE/build-guest.sh"; then
    fail build-guest "$(tail -n 1 "$RUN/build-guest.log")"
    tail -n 20 "$RUN/build-guest.log" | indent
    finish
fi
flock -u 8
info "$(tail -n 1 "$RUN/build-guest.log" | sed 's/^\[build-guest\] //') ($(elapsed "$t")s)"

# --- dem
t=$EPOCHREALTIME
if [ -n "${DEM_BIN:-}" ]; then
    [ -f "$DEM_BIN" ] && [ -x "$DEM_BIN" ] || { fail build-dem "DEM_BIN=$DEM_BIN is not an executable"; finish; }
    info "dem: $DEM_BIN (DEM_BIN)"
else
    command -v swift > /dev/null || { fail build-dem "swift not found in PATH (or set DEM_BIN)"; finish; }
    if ! step "$RUN/build-dem.log" swift build --static-swift-stdlib --scratch-path .build-static --product dem; then
        fail build-dem "swift build failed: $(grep -m1 -E 'error:' "$RUN/build-dem.log" || tail -n 1 "$RUN/build-dem.log")"
        grep -E 'error:' "$RUN/build-dem.log" | head -n 20 | indent
        finish
    fi
    DEM_BIN=$(swift build --static-swift-stdlib --scratch-path .build-static --product dem --show-bin-path 2>/dev/null)/dem
    [ -x "$DEM_BIN" ] || { fail build-dem "no binary at $DEM_BIN"; finish; }
    info "dem: $DEM_BIN (built in $(elapsed "$t")s)"
fi
export DEM_BIN

# --- dem-cli (on this machine, for the scenarios that configure dem through its REST API)
NEED_CLI=""
for s in $SCENARIOS; do
    grep -q '^# needs: dem-cli' "$HERE/scenarios/$s.sh" && NEED_CLI="$NEED_CLI $s"
done
if [ -n "$NEED_CLI" ]; then
    t=$EPOCHREALTIME
    if [ -n "${DEMCLI_BIN:-}" ]; then
        if [ ! -f "$DEMCLI_BIN" ] || [ ! -x "$DEMCLI_BIN" ]; then
            fail build-dem-cli "DEMCLI_BIN=$DEMCLI_BIN is not an executable"; finish
        fi
        info "dem-cli: $DEMCLI_BIN (DEMCLI_BIN)"
    else
        command -v swift > /dev/null || { fail build-dem-cli "swift not found in PATH (or set DEMCLI_BIN)"; finish; }
        if ! step "$RUN/build-dem-cli.log" swift build --product dem-cli; then
            fail build-dem-cli "swift build failed: $(grep -m1 -E 'error:' "$RUN/build-dem-cli.log" || tail -n 1 "$RUN/build-dem-cli.log")"
            grep -E 'error:' "$RUN/build-dem-cli.log" | head -n 20 | indent
            finish
        fi
        built=$(swift build --product dem-cli --show-bin-path 2>/dev/null)/dem-cli
        [ -x "$built" ] || { fail build-dem-cli "no binary at $built"; finish; }
        # a copy: other builds in the shared .build may replace the binary during the run
        DEMCLI_BIN=$DEM_LAB_CACHE/dem-cli
        if ! cp "$built" "$DEMCLI_BIN.tmp" || ! mv -f "$DEMCLI_BIN.tmp" "$DEMCLI_BIN"; then
            fail build-dem-cli "cannot copy $built to $DEMCLI_BIN"; finish
        fi
        info "dem-cli: $DEMCLI_BIN (built in $(elapsed "$t")s as $built, for$NEED_CLI)"
    fi
    export DEMCLI_BIN
fi

# --- dem-em (static, like dem: it runs in the guest, from the 9p share)
NEED_EM=""
for s in $SCENARIOS; do
    grep -q '^# needs:.*dem-em' "$HERE/scenarios/$s.sh" && NEED_EM="$NEED_EM $s"
done
if [ -n "$NEED_EM" ]; then
    t=$EPOCHREALTIME
    if [ -n "${DEMEM_BIN:-}" ]; then
        if [ ! -f "$DEMEM_BIN" ] || [ ! -x "$DEMEM_BIN" ]; then
            fail build-dem-em "DEMEM_BIN=$DEMEM_BIN is not an executable"; finish
        fi
        info "dem-em: $DEMEM_BIN (DEMEM_BIN)"
    else
        command -v swift > /dev/null || { fail build-dem-em "swift not found in PATH (or set DEMEM_BIN)"; finish; }
        if ! step "$RUN/build-dem-em.log" swift build --static-swift-stdlib --scratch-path .build-static --product dem-em; then
            fail build-dem-em "swift build failed: $(grep -m1 -E 'error:' "$RUN/build-dem-em.log" || tail -n 1 "$RUN/build-dem-em.log")"
            grep -E 'error:' "$RUN/build-dem-em.log" | head -n 20 | indent
            finish
        fi
        built=$(swift build --static-swift-stdlib --scratch-path .build-static --product dem-em --show-bin-path 2>/dev/null)/dem-em
        [ -x "$built" ] || { fail build-dem-em "no binary at $built"; finish; }
        # a copy (a later build may replace the binary during the run); the scenarios
        # hard-link it into their 9p share
        DEMEM_BIN=$DEM_LAB_CACHE/dem-em
        if ! cp "$built" "$DEMEM_BIN.tmp" || ! mv -f "$DEMEM_BIN.tmp" "$DEMEM_BIN"; then
            fail build-dem-em "cannot copy $built to $DEMEM_BIN"; finish
        fi
        info "dem-em: $DEMEM_BIN (built in $(elapsed "$t")s as $built, for$NEED_EM)"
    fi
    export DEMEM_BIN
fi

# --- dem-ac and dem-dm (static, like dem-em: they run in the guest, from the 9p share), and
# the RDMA builds of dem, dem-em and dem-cli (the scenarios marked "# needs: rdma")
# static_guest_tool PRODUCT VAR [TAG TRAIT] : for the scenarios marked "# needs: ... TAG" (the
# product by default), build PRODUCT statically (with the package trait TRAIT, if any) or take
# the binary VAR names, and export VAR as a copy in $DEM_LAB_CACHE
static_guest_tool() {
    local product=$1 var=$2 tag=${3:-$1} trait=${4:-} need="" s t built bin
    local flags=(--static-swift-stdlib --scratch-path .build-static)
    [ -n "$trait" ] && flags=(--static-swift-stdlib --traits "$trait" --scratch-path ".build-static-${trait,,}")
    for s in $SCENARIOS; do
        grep -q "^# needs:.*$tag" "$HERE/scenarios/$s.sh" && need="$need $s"
    done
    [ -n "$need" ] || return 0
    t=$EPOCHREALTIME
    bin=${!var:-}
    if [ -n "$bin" ]; then
        if [ ! -f "$bin" ] || [ ! -x "$bin" ]; then
            fail "build-$product$trait" "$var=$bin is not an executable"; finish
        fi
        info "$product: $bin ($var)"
    else
        command -v swift > /dev/null || { fail "build-$product$trait" "swift not found in PATH (or set $var)"; finish; }
        if ! step "$RUN/build-$product$trait.log" swift build "${flags[@]}" --product "$product"; then
            fail "build-$product$trait" "swift build ${flags[*]} failed: $(grep -m1 -E 'error:' "$RUN/build-$product$trait.log" || tail -n 1 "$RUN/build-$product$trait.log")"
            grep -E 'error:' "$RUN/build-$product$trait.log" | head -n 20 | indent
            finish
        fi
        built=$(swift build "${flags[@]}" --product "$product" --show-bin-path 2>/dev/null)/$product
        [ -x "$built" ] || { fail "build-$product$trait" "no binary at $built"; finish; }
        # a copy (a later build may replace the binary during the run); the scenarios
        # hard-link it into their 9p share
        bin=$DEM_LAB_CACHE/$product${trait:+-$trait}
        if ! cp "$built" "$bin.tmp" || ! mv -f "$bin.tmp" "$bin"; then
            fail "build-$product$trait" "cannot copy $built to $bin"; finish
        fi
        info "$product: $bin (built in $(elapsed "$t")s as $built, for$need)"
    fi
    printf -v "$var" '%s' "$bin"
    export "${var?}"
}
static_guest_tool dem-ac DEMAC_BIN
static_guest_tool dem-dm DEMDM_BIN
static_guest_tool dem DEM_RDMA_BIN rdma RDMA
static_guest_tool dem-em DEMEM_RDMA_BIN rdma RDMA
static_guest_tool dem-cli DEMCLI_RDMA_BIN rdma RDMA

# --- scenarios
for s in $SCENARIOS; do
    t=$EPOCHREALTIME
    out=$RUN/$s
    DEM_INTEROP_OUT=$out step "$RUN/$s.log" \
        timeout -k 10 "${DEM_INTEROP_SCENARIO_TIMEOUT:-320}" "$HERE/scenarios/$s.sh"
    rc=$?
    boot=$(awk '/^boot/{print $2}' "$out/guest/timings" 2>/dev/null)
    gtotal=$(awk '/^total/{print $2}' "$out/guest/timings" 2>/dev/null)
    info "scenario $s: $(elapsed "$t")s (guest boot ${boot:-?}s, guest total ${gtotal:-?}s)"
    if [ ! -s "$out/results.txt" ]; then
        fail "scenario-$s" "no results (exit status $rc): $(tail -n 1 "$RUN/$s.log")"
        tail -n 20 "$RUN/$s.log" | indent
        continue
    fi
    [ "$rc" = 124 ] || [ "$rc" = 137 ] && fail "scenario-$s-timeout" "killed after ${DEM_INTEROP_SCENARIO_TIMEOUT:-320}s"
    while read -r st name rest; do
        case $st in
            PASS) pass "$name" ;;
            FAIL) rest=${rest#(}; fail "$name" "${rest%)}" ;;
            INFO) echo "INFO $name $rest" ;;
        esac
    done < "$out/results.txt"
    [ -s "$out/diagnostics.txt" ] && indent < "$out/diagnostics.txt"
done
finish
