#!/bin/bash
# lab-auth-overlay.sh MODDIR OVERLAY [KVER]
# Turns the modules built by build-auth-modules.sh (MODDIR = its OUTDIR) into an overlay
# for the lab guest: the rebuilt .ko replace the stock ones at their usual paths in
# /usr/lib/modules/KVER (new: nvme-common, dh_rfc7919; plus the stock sha512_generic, drbg,
# jitterentropy_rng and ctr, which the guest initramfs lacks), and modules.dep/alias/symbols
# are regenerated with the host's depmod over the guest's own module set, so `modprobe nvme-tcp` / `modprobe nvmet-tcp` in the
# guest load the auth-enabled drivers and "ffdhe2048(dh)" autoloads dh_rfc7919.
# Prints the run-guest.sh arguments ("-F SRC=DEST", one a line) on stdout.
set -euo pipefail
MOD=${1:?usage: lab-auth-overlay.sh MODDIR OVERLAY [KVER]}
OV=${2:?usage: lab-auth-overlay.sh MODDIR OVERLAY [KVER]}
CACHE=${DEM_LAB_CACHE:-/tmp/dem-lab-cache}
KVER=${3:-$(cat "$CACHE/kver")}
MOD=$(cd "$MOD" && pwd)
rm -rf "$OV"; mkdir -p "$OV"; OV=$(cd "$OV" && pwd)
R=usr/lib/modules/$KVER
S=$(mktemp -d); trap 'rm -rf "$S"' EXIT
# the guest's module set (from the initramfs manifest) taken from the host's tree
grep -E "^$R/kernel/.*\.ko$" "$CACHE/manifest.txt" | while read -r f; do
    mkdir -p "$S/lib/modules/$KVER/$(dirname "${f#$R/}")"
    cp "/lib/modules/$KVER/${f#$R/}" "$S/lib/modules/$KVER/${f#$R/}"
done
declare -A DEST=(
  [dh_rfc7919]=kernel/crypto/dh_rfc7919.ko
  [nvme-common]=kernel/drivers/nvme/common/nvme-common.ko
  [nvme-core]=kernel/drivers/nvme/host/nvme-core.ko
  [nvme-fabrics]=kernel/drivers/nvme/host/nvme-fabrics.ko
  [nvme-tcp]=kernel/drivers/nvme/host/nvme-tcp.ko
  [nvme-rdma]=kernel/drivers/nvme/host/nvme-rdma.ko
  [nvme]=kernel/drivers/nvme/host/nvme.ko
  [nvmet]=kernel/drivers/nvme/target/nvmet.ko
  [nvmet-tcp]=kernel/drivers/nvme/target/nvmet-tcp.ko
  [nvmet-rdma]=kernel/drivers/nvme/target/nvmet-rdma.ko
)
for m in "${!DEST[@]}"; do
    d=${DEST[$m]}
    mkdir -p "$S/lib/modules/$KVER/$(dirname "$d")" "$OV/$R/$(dirname "$d")"
    cp "$MOD/ko/$m.ko" "$S/lib/modules/$KVER/$d"; cp "$MOD/ko/$m.ko" "$OV/$R/$d"
done
# stock modules the guest lacks: hmac(sha384/512) needs sha512_generic; the FFDHE private key
# generation needs the default RNG "stdrng" (drbg, which may use jitterentropy_rng; its
# CTR-DRBG self-tests need the ctr template, else they WARN)
for d in kernel/crypto/sha512_generic.ko kernel/crypto/drbg.ko kernel/crypto/jitterentropy_rng.ko kernel/crypto/ctr.ko; do
    mkdir -p "$S/lib/modules/$KVER/$(dirname "$d")" "$OV/$R/$(dirname "$d")"
    cp "/lib/modules/$KVER/$d" "$S/lib/modules/$KVER/$d"; cp "/lib/modules/$KVER/$d" "$OV/$R/$d"
done
for f in modules.order modules.builtin modules.builtin.modinfo; do
    [ -f "/lib/modules/$KVER/$f" ] && cp "/lib/modules/$KVER/$f" "$S/lib/modules/$KVER/"
done
depmod -b "$S" "$KVER"
for f in modules.dep modules.dep.bin modules.alias modules.alias.bin modules.symbols modules.symbols.bin; do
    cp "$S/lib/modules/$KVER/$f" "$OV/$R/$f"
done
(cd "$OV" && find . -type f | sed 's|^\./||' | sort) | while read -r f; do
    echo "-F"; echo "$OV/$f=/$f"
done
