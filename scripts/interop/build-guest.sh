#!/bin/bash
# build-guest.sh - build the interop guest: Debian's own Linux kernel plus a busybox
# initramfs carrying the kernel NVMe-oF host and target stacks (nvme-tcp, nvme-rdma,
# nvmet, nvmet-tcp, nvmet-rdma, rdma_rxe), null_blk, 9p, nvme-cli and the rdma-core
# tools.  Everything comes from Debian packages; missing ones are installed with
# apt-get.
#
# Usage: scripts/interop/build-guest.sh [--force]
# Env:   DEM_LAB_CACHE  output directory (default /tmp/dem-lab-cache)
# Output (in DEM_LAB_CACHE):
#   vmlinuz, initramfs.img   kernel and gzip'ed newc cpio (/init, busybox, nvme-cli, modules)
#   guest-hostnqn, guest-hostid
#                            the guest's fixed /etc/nvme/hostnqn and hostid (made once)
#   manifest.txt, kver, stamp
# Re-running with unchanged inputs (kernel, package versions, this script, guest/init)
# does nothing.  The per-run helpers (guest/lib.sh) and scenarios are not baked in:
# run-guest.sh appends them to every boot, so editing them never forces a rebuild.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
FORCE=0
[ "${1:-}" = "--force" ] && FORCE=1
CACHE=${DEM_LAB_CACHE:-/tmp/dem-lab-cache}
mkdir -p "$CACHE"
log() { echo "[build-guest] $*"; }

# shellcheck source=host/common.sh
. "$HERE/host/common.sh"
ensure_packages qemu-system-x86 linux-image-amd64 nvme-cli busybox-static rdma-core \
    ibverbs-utils rdmacm-utils iproute2 kmod cpio

# newest kernel that has both an image and a module tree
KVER=""
for d in $(ls -1 /lib/modules 2>/dev/null | sort -V); do
    [ -f "/boot/vmlinuz-$d" ] && [ -f "/lib/modules/$d/modules.dep" ] && KVER=$d
done
[ -n "$KVER" ] || { echo "build-guest: no kernel with modules in /boot + /lib/modules" >&2; exit 1; }

# guest kernel modules (dependencies resolved below)
MODULES="configfs virtio_pci virtio_net null_blk
 nvme-core nvme-fabrics nvme-tcp nvme-rdma
 nvmet nvmet-tcp nvmet-rdma
 ib_core ib_cm iw_cm rdma_cm rdma_ucm ib_uverbs rdma_rxe
 crc32c_generic crc32c-intel libcrc32c crc32_generic crc32-pclmul
 9p 9pnet 9pnet_virtio"

# user-space binaries (with their shared libraries) and extra libraries, so that
# binaries built with `swift build --static-swift-stdlib` can run from a 9p share
LIBDIR=/usr/lib/x86_64-linux-gnu
BINS="/usr/sbin/nvme /usr/bin/rdma /usr/bin/ibv_devices /usr/bin/ibv_devinfo
 /usr/bin/ibv_rc_pingpong /usr/bin/rping /usr/bin/ucmatose"
EXTRA_LIBS="$LIBDIR/libibverbs/librxe-rdmav34.so $LIBDIR/libgcc_s.so.1 $LIBDIR/libm.so.6
 $LIBDIR/libstdc++.so.6 $LIBDIR/libz.so.1 $LIBDIR/libsqlite3.so.0 $LIBDIR/librdmacm.so.1
 $LIBDIR/libibverbs.so.1"

STAMP=$( {
    echo "kver=$KVER"
    dpkg-query -W -f='${Package}=${Version}\n' "linux-image-$KVER" nvme-cli libnvme1 busybox-static \
        rdma-core ibverbs-providers ibverbs-utils rdmacm-utils iproute2 2>/dev/null || true
    sha256sum "$HERE/build-guest.sh" "$HERE/guest/init" | cut -d' ' -f1
    echo "$MODULES $BINS $EXTRA_LIBS"
} | sha256sum | cut -d' ' -f1)

# the guest's NVMe host identity: made once, kept across rebuilds
if [ ! -s "$CACHE/guest-hostnqn" ] || [ ! -s "$CACHE/guest-hostid" ]; then
    u=$(cat /proc/sys/kernel/random/uuid)
    echo "nqn.2014-08.org.nvmexpress:uuid:$u" > "$CACHE/guest-hostnqn"
    echo "$u" > "$CACHE/guest-hostid"
    rm -f "$CACHE/stamp"
fi

if [ $FORCE = 0 ] && [ -f "$CACHE/stamp" ] && [ "$(cat "$CACHE/stamp")" = "$STAMP" ] \
   && [ -s "$CACHE/initramfs.img" ] && [ -s "$CACHE/vmlinuz" ]; then
    log "up to date: $CACHE (kernel $KVER)"
    exit 0
fi

T0=$EPOCHREALTIME
STAGE=$(mktemp -d "$CACHE/stage.XXXXXX")
trap 'rm -rf "$STAGE"' EXIT
cd "$STAGE"

# --- skeleton (usr-merged like the host) ---
mkdir -p usr/bin usr/sbin usr/lib/x86_64-linux-gnu usr/lib64 etc/nvme etc/libibverbs.d \
         proc sys dev run tmp root var/run mnt
ln -s usr/bin bin; ln -s usr/sbin sbin; ln -s usr/lib lib; ln -s usr/lib64 lib64

# --- busybox and its applet links ---
cp /usr/bin/busybox usr/bin/busybox
for a in $(/usr/bin/busybox --list-full); do
    n=$(basename "$a")
    case "$a" in
        sbin/*|usr/sbin/*) dst=usr/sbin/$n ;;
        *)                 dst=usr/bin/$n ;;
    esac
    [ -e "$dst" ] || ln -s /usr/bin/busybox "$dst"
done

# --- binaries and their shared libraries ---
copy_with_libs() {
    local f=$1 lib real rdst ldst
    mkdir -p ".$(dirname "$f")"
    cp -L "$f" ".$f"
    ldd "$f" 2>/dev/null | awk '/=>/ {print $3} /^\t\/.*ld-linux/ {print $1}' | while read -r lib; do
        [ -n "$lib" ] && [ -f "$lib" ] || continue
        real=$(readlink -f "$lib")
        rdst="usr${real#/usr}"; ldst="usr${lib#/usr}"
        [ -e "$rdst" ] || { mkdir -p "$(dirname "$rdst")"; cp "$real" "$rdst"; }
        if [ "$ldst" != "$rdst" ] && [ ! -e "$ldst" ] && [ ! -L "$ldst" ]; then
            mkdir -p "$(dirname "$ldst")"
            if [ "$(dirname "$ldst")" = "$(dirname "$rdst")" ]; then
                ln -s "$(basename "$rdst")" "$ldst"
            else
                ln -s "/$rdst" "$ldst"
            fi
        fi
    done
}
for b in $BINS $EXTRA_LIBS; do
    if [ -e "$b" ]; then copy_with_libs "$b"; else log "warning: $b not found, skipped"; fi
done
[ -f /etc/libibverbs.d/rxe.driver ] && cp /etc/libibverbs.d/rxe.driver etc/libibverbs.d/
echo "$LIBDIR" > etc/ld.so.conf

# --- kernel modules with their dependencies (resolved by the host's kmod) ---
MODDIR=lib/modules/$KVER
mkdir -p "usr/$MODDIR"
for m in $MODULES; do
    modprobe -S "$KVER" --show-depends "$m" 2>/dev/null | awk '$1=="insmod"{print $2}'
done | sort -u | while read -r ko; do
    rel=${ko#/lib/modules/$KVER/}
    mkdir -p "usr/$MODDIR/$(dirname "$rel")"
    cp "$ko" "usr/$MODDIR/$rel"
done
for f in modules.order modules.builtin modules.builtin.modinfo; do
    [ -f "/lib/modules/$KVER/$f" ] && cp "/lib/modules/$KVER/$f" "usr/$MODDIR/"
done
depmod -b "$STAGE" "$KVER"

# --- identity and minimal /etc ---
cp "$CACHE/guest-hostnqn" etc/nvme/hostnqn
cp "$CACHE/guest-hostid" etc/nvme/hostid
echo "root:x:0:0:root:/root:/bin/sh" > etc/passwd
echo "root:x:0:" > etc/group
echo "127.0.0.1 localhost" > etc/hosts
echo "KVER=$KVER" > etc/dem-interop-release

cp "$HERE/guest/init" init
chmod 755 init

# --- pack ---
find . -mindepth 1 | sed 's|^\./||' | LC_ALL=C sort > "$CACHE/manifest.txt.new"
LC_ALL=C sort "$CACHE/manifest.txt.new" | cpio -o -H newc --quiet -R 0:0 | gzip -6 > "$CACHE/initramfs.img.new"
mv "$CACHE/initramfs.img.new" "$CACHE/initramfs.img"
mv "$CACHE/manifest.txt.new" "$CACHE/manifest.txt"
cp "/boot/vmlinuz-$KVER" "$CACHE/vmlinuz"
echo "$KVER" > "$CACHE/kver"
echo "$STAMP" > "$CACHE/stamp"
log "$(printf 'kernel %s  initramfs %s bytes (%s files)  %.1fs' "$KVER" \
    "$(stat -c %s "$CACHE/initramfs.img")" "$(wc -l < "$CACHE/manifest.txt")" \
    "$(awk -v a="$T0" -v b="$EPOCHREALTIME" 'BEGIN{print b-a}')")"
