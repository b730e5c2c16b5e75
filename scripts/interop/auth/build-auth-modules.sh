#!/bin/bash
# build-auth-modules.sh - rebuild the Linux 6.1 NVMe host + target drivers WITH in-band
# authentication (DH-HMAC-CHAP) as external modules for Debian's own kernel, which is
# built without CONFIG_NVME_AUTH / CONFIG_NVME_TARGET_AUTH / CONFIG_CRYPTO_DH_RFC7919_GROUPS.
# Everything comes from Debian packages: linux-source-6.1 and linux-headers-$KVER, both at
# exactly the version of linux-image-$KVER (checked).
#
# Usage: build-auth-modules.sh OUTDIR [KVER]
#   KVER defaults to $LAB_KVER, else $DEM_LAB_CACHE/kver (the lab guest kernel), else uname -r.
# Output (cached in OUTDIR; a re-run with unchanged inputs only prints the paths):
#   OUTDIR/ko/*.ko           the modules, vermagic identical to the stock kernel
#   OUTDIR/load-order.txt    insmod order (dependencies first)
#   OUTDIR/build.log         compiler output     OUTDIR/stamp   inputs fingerprint
# Prints the .ko paths, one a line, in load order, on stdout (logs go to stderr).
#
# What is built (Debian config + these changes):
#   nvme-common.ko  drivers/nvme/common (CONFIG_NVME_COMMON=m: nvme_auth_* helpers)
#   nvme-core.ko    CONFIG_NVME_AUTH=y (host/auth.c compiled in)
#   nvme-fabrics.ko nvme-tcp.ko nvme-rdma.ko nvme.ko (PCI)  - same struct layout as core
#   nvmet.ko        CONFIG_NVME_TARGET_AUTH=y (auth.c, fabrics-cmd-auth.c)
#   nvmet-tcp.ko nvmet-rdma.ko
#   dh_rfc7919.ko   crypto/dh.c with CONFIG_CRYPTO_DH_RFC7919_GROUPS=y: registers the
#                   templates ffdhe2048..ffdhe8192 (the "ffdhe2048(dh)" kpp names NVMe auth
#                   asks for).  The stock kernel has dh BUILT IN (CONFIG_CRYPTO_DH=y) but
#                   without these groups, so this module registers its own copy of the dh
#                   kpp under driver name "dh-generic-rfc7919" (the built-in "dh-generic"
#                   name is taken) and carries a private, unexported copy of dh_helper.c
#                   (the templates need __crypto_dh_decode_key, which the kernel does not
#                   export).  hmac + sha256 are built in; sha512_generic.ko (stock module)
#                   is needed for hmac(sha384)/hmac(sha512).
# Not built: nvme-fc, nvmet-fc, nvme-apple (not needed; do not load the stock nvme-fc/nvmet-fc
# next to these: struct layouts change with auth on, so their symbol CRCs should not match).
set -euo pipefail

OUT=${1:?usage: build-auth-modules.sh OUTDIR [KVER]}
KVER=${2:-${LAB_KVER:-$(cat "${DEM_LAB_CACHE:-/tmp/dem-lab-cache}/kver" 2>/dev/null || uname -r)}}
mkdir -p "$OUT"; OUT=$(cd "$OUT" && pwd)
log() { echo "[auth-build] $*" >&2; }
T0=$(date +%s)

# ---- packages: image, headers and source at the same Debian version ----
imgpkg=linux-image-$KVER
IMGVER=$(dpkg-query -W -f='${Version}' "$imgpkg" 2>/dev/null || true)
[ -n "$IMGVER" ] || IMGVER=$(apt-cache show "$imgpkg" 2>/dev/null | awk '/^Version:/{print $2; exit}')
[ -n "$IMGVER" ] || { log "cannot find the version of $imgpkg"; exit 1; }
MM=$(echo "$KVER" | cut -d. -f1,2)              # 6.1
srcpkg=linux-source-$MM hdrpkg=linux-headers-$KVER
want="$srcpkg=$IMGVER $hdrpkg=$IMGVER"
need=""
for p in $want; do
    n=${p%%=*} v=${p#*=}
    have=$(dpkg-query -W -f='${Status} ${Version}' "$n" 2>/dev/null || true)
    [ "$have" = "install ok installed $v" ] || need="$need $p"
done
if [ -n "$need" ]; then
    log "installing:$need (waits for the dpkg lock)"
    apt-get -o DPkg::Lock::Timeout=900 install -y --no-install-recommends $need >&2 \
      || { apt-get -o DPkg::Lock::Timeout=900 update >&2 && \
           apt-get -o DPkg::Lock::Timeout=900 install -y --no-install-recommends $need >&2; }
fi
for n in $srcpkg $hdrpkg; do
    v=$(dpkg-query -W -f='${Version}' "$n")
    [ "$v" = "$IMGVER" ] || { log "version mismatch: $n $v != $imgpkg $IMGVER"; exit 1; }
done
TARBALL=/usr/src/$srcpkg.tar.xz
KDIR=/usr/src/linux-headers-$KVER
[ -f "$TARBALL" ] && [ -f "$KDIR/Module.symvers" ] || { log "missing $TARBALL or $KDIR"; exit 1; }

MODS="nvme-common dh_rfc7919 nvme-core nvme-fabrics nvme-tcp nvme-rdma nvme nvmet nvmet-tcp nvmet-rdma"
# insmod order: deps first (stock deps: configfs, t10-pi; rdma ones need ib_core + rdma_cm)
ORDER="dh_rfc7919 nvme-common nvme-core nvme-fabrics nvme-tcp nvme-rdma nvme nvmet nvmet-tcp nvmet-rdma"

STAMP=$( { echo "kver=$KVER image=$IMGVER"; sha256sum "$0" | cut -d' ' -f1; } | sha256sum | cut -d' ' -f1)
print_paths() { for m in $ORDER; do echo "$OUT/ko/$m.ko"; done; }
if [ -f "$OUT/stamp" ] && [ "$(cat "$OUT/stamp")" = "$STAMP" ] && \
   [ "$(for m in $ORDER; do [ -s "$OUT/ko/$m.ko" ] && echo ok; done | wc -l)" = "$(echo $ORDER | wc -w)" ]; then
    log "up to date: $OUT (kernel $KVER, Debian $IMGVER)"
    print_paths; exit 0
fi
rm -f "$OUT/stamp"

# ---- sources (only the files needed) ----
SRC=$OUT/src
if [ ! -f "$SRC/.done-$IMGVER" ]; then
    log "extracting drivers/nvme + crypto/dh*.c from $TARBALL"
    rm -rf "$SRC"; mkdir -p "$SRC"
    nice -n 19 tar -xJf "$TARBALL" -C "$SRC" --strip-components=1 \
        --wildcards "$srcpkg/drivers/nvme/*" "$srcpkg/crypto/dh.c" "$srcpkg/crypto/dh_helper.c" "$srcpkg/Makefile"
    touch "$SRC/.done-$IMGVER"
fi
sub=$(awk '/^SUBLEVEL/{print $3}' "$SRC/Makefile")
log "kernel $KVER  Debian $IMGVER  source 6.1.$sub"

# ---- external-module tree ----
B=$OUT/build
rm -rf "$B"; mkdir -p "$B/crypto"
cp -r "$SRC/drivers/nvme/common" "$SRC/drivers/nvme/host" "$SRC/drivers/nvme/target" "$B/"
rm -f "$B"/*/Kconfig
cat > "$B/Kbuild" <<'EOF'
# config switches the stock kernel lacks (the subdir Makefiles select objects with the
# make variables passed on the command line; the C code sees these defines)
subdir-ccflags-y += -DCONFIG_NVME_AUTH=1 -DCONFIG_NVME_TARGET_AUTH=1 -DCONFIG_NVME_COMMON_MODULE=1
obj-m += common/ host/ target/ crypto/
EOF
# crypto/dh.c with the RFC 7919 groups; own kpp driver name next to the built-in dh-generic
sed 's/\.cra_driver_name = "dh-generic",/.cra_driver_name = "dh-generic-rfc7919",/' \
    "$SRC/crypto/dh.c" > "$B/crypto/dh.c"
grep -q '"dh-generic-rfc7919"' "$B/crypto/dh.c" || { log "dh.c: driver name not found"; exit 1; }
sed -i 's/^MODULE_ALIAS_CRYPTO("dh");/MODULE_ALIAS_CRYPTO("ffdhe2048"); MODULE_ALIAS_CRYPTO("ffdhe3072");\nMODULE_ALIAS_CRYPTO("ffdhe4096"); MODULE_ALIAS_CRYPTO("ffdhe6144"); MODULE_ALIAS_CRYPTO("ffdhe8192");/' "$B/crypto/dh.c"
grep -q 'MODULE_ALIAS_CRYPTO("ffdhe8192")' "$B/crypto/dh.c" || { log "dh.c: alias line not found"; exit 1; }
# private copy of the helpers: the kernel already exports them, so do not export again
sed '/^EXPORT_SYMBOL_GPL(/d' "$SRC/crypto/dh_helper.c" > "$B/crypto/dh_helper.c"
cat > "$B/crypto/Kbuild" <<'EOF'
ccflags-y += -DCONFIG_CRYPTO_DH_RFC7919_GROUPS=1
obj-m += dh_rfc7919.o
dh_rfc7919-y := dh.o dh_helper.o
EOF

log "compiling (nice 19, -j2) against $KDIR"
T1=$(date +%s)
if ! nice -n 19 make -C "$KDIR" M="$B" -j2 \
        CONFIG_NVME_COMMON=m CONFIG_NVME_AUTH=y CONFIG_NVME_TARGET_AUTH=y \
        CONFIG_NVME_FC= CONFIG_NVME_TARGET_FC= CONFIG_NVME_APPLE= CONFIG_NVME_TARGET_LOOP= \
        CONFIG_NVME_TARGET_FCLOOP= modules > "$OUT/build.log" 2>&1; then
    tail -n 40 "$OUT/build.log" >&2; log "build FAILED (full log $OUT/build.log)"; exit 1
fi
T2=$(date +%s)

# ---- collect + verify ----
mkdir -p "$OUT/ko"; rm -f "$OUT"/ko/*.ko
stock_vm=$(modinfo -F vermagic "/lib/modules/$KVER/kernel/drivers/nvme/host/nvme-core.ko" 2>/dev/null \
           || true)
for m in $MODS; do
    ko=$(find "$B" -name "$m.ko" | head -n1)
    [ -n "$ko" ] || { log "missing $m.ko"; exit 1; }
    strip --strip-debug -o "$OUT/ko/$m.ko" "$ko"
    vm=$(modinfo -F vermagic "$OUT/ko/$m.ko")
    if [ -n "$stock_vm" ] && [ "$vm" != "$stock_vm" ]; then
        log "vermagic mismatch for $m: '$vm' != '$stock_vm'"; exit 1
    fi
done
printf '%s\n' $ORDER > "$OUT/load-order.txt"
echo "$STAMP" > "$OUT/stamp"
log "built in $((T2-T1))s compile, $(( $(date +%s) - T0 ))s total; vermagic '$(modinfo -F vermagic "$OUT/ko/nvme-core.ko")'"
print_paths
