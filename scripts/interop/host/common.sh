# common.sh - small helpers shared by the interop host scripts (bash; sourced).
# shellcheck shell=bash

# ensure_packages PKG... : apt-get install the Debian packages that are missing
# (apt-get update first only when a plain install fails).
ensure_packages() {
    local p missing=""
    for p in "$@"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
    done
    [ -z "$missing" ] && return 0
    echo "[interop] installing missing packages:$missing"
    export DEBIAN_FRONTEND=noninteractive
    # shellcheck disable=SC2086
    apt-get install -y --no-install-recommends $missing \
        || { apt-get update && apt-get install -y --no-install-recommends $missing; }
}

# now: seconds since the epoch with microseconds;  elapsed T0: seconds since T0 (1 decimal)
now() { echo "$EPOCHREALTIME"; }
elapsed() { awk -v a="$1" -v b="$EPOCHREALTIME" 'BEGIN{printf "%.1f", b-a}'; }

# new_uuid: a random UUID (lower case)
new_uuid() { cat /proc/sys/kernel/random/uuid; }
