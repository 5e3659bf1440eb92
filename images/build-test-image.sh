#!/usr/bin/env bash
# The appliance's test image, built from parts this machine has (no
# Buildroot toolchain needed): the same disk layout (images/genimage.cfg),
# GRUB config, root filesystem overlay and init scripts as the Buildroot
# image, with
#   - capbox: a static musl release build (x86_64-unknown-linux-musl,
#     --no-default-features: a static binary cannot dlopen libpcsclite);
#   - Debian's kernel and its modules (the cache of the hw-tests rigs),
#     with an initramfs for virtio_blk + ext4 (modules in Debian's kernel);
#   - Debian's busybox-static (init, getty, syslogd, udhcpc…), udev's
#     systemd-udevd (the ccid rig's cache) with capbox's rules from udev/;
#   - GRUB i386-pc from Debian's grub-pc-bin (grub-mkimage; no root, no
#     loop device): BIOS boot, because under TCG SeaBIOS reaches GRUB in
#     well under a second while OVMF takes several, and the disk stays one
#     genimage run;
#   - the vidtv modules the kernel rig (hw-tests/run-vm.sh) builds, when
#     its cache has them (or this machine can build them);
#   - RAUC (Debian's rauc 1.8, with its shared libraries), dbus-daemon
#     (RAUC's client talks to `rauc service` over the system bus),
#     grub-editenv (RAUC's GRUB backend) and unsquashfs (`rauc info`), the loop/squashfs/vfat modules
#     RAUC and /boot need, and udev's 60-persistent-storage.rules
#     (/dev/disk/by-partlabel, the slot devices of /etc/rauc/system.conf);
#   - the keyring RAUC checks bundles against: $CAPBOX_RAUC_KEYRING (a PEM
#     CA certificate), else a development CA made once in the cache
#     ($cache/rauc-dev-ca, never in the repository; its key signs
#     development bundles: images/make-bundle.sh).
# Output: $CAPBOX_IMAGE_OUT (default $cache/appliance): disk.img,
# rootfs.ext4 (one slot: what an update bundle carries) and image.env
# (sizes, versions, minutes: what the boot test reports).
#
# Environment: CAPBOX_HW_CACHE (as the hw-tests rigs), CAPBOX_IMAGE_OUT,
# CAPBOX_IMAGE_VIDTV (auto|0: leave vidtv out), CAPBOX_IMAGE_VERSION (the
# image's version in /etc/capbox-release; default capbox's version +
# the git commit), CAPBOX_RAUC_KEYRING, CAPBOX_IMAGE_CAPBOX (put this
# file in as /usr/bin/capbox instead of the musl build: the update rig's
# deliberately broken image).
set -euo pipefail
T0=$(date +%s.%N)
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/.." && pwd)
# shellcheck source=hw-tests/lib.sh
source "$repo/hw-tests/lib.sh"
cache=$(rig_cache_dir "$repo")
out=${CAPBOX_IMAGE_OUT:-$cache/appliance}
overlay=$repo/buildroot/board/capbox/rootfs-overlay

stamp() { echo "build-test-image: $*"; }
die() { echo "build-test-image: FAILED: $*" >&2; exit 2; }

# ---- 1. packages ----
# linux-source-6.1 and the headers: vidtv is built here when no other rig
# built it first (a fresh machine may run this rig before the kernel rig,
# and the appliance test requires the DVB path).
rig_install genimage grub-pc-bin grub-common mtools dosfstools e2fsprogs busybox-static kmod cpio xz-utils gzip bc \
    rauc squashfs-tools dbus-daemon openssl linux-source-6.1 linux-headers-amd64 gcc make patch
stamp() { printf 'build-test-image: [%6.1fs] %s\n' "$(echo "$(date +%s.%N) - $T0" | bc)" "$*"; }
kver=$(rig_kernel_version)
stamp "kernel $kver"

# ---- 2. cached parts: kernel, udev, vidtv (shared with the other rigs) ----
rig_lock
rig_fetch_kernel "$kver"
rig_fetch_udev
# vidtv, as the kernel rig builds it (same patch, same cache directory).
vidtv=
if [ "${CAPBOX_IMAGE_VIDTV:-auto}" != 0 ]; then
    vpatch=$repo/hw-tests/vm/vidtv-faults.patch
    vdir=$cache/vidtv-$kver-$(sha256sum "$vpatch" | cut -c1-12)
    headers=/usr/src/linux-headers-$kver
    if [ ! -f "$vdir/done" ] && [ -f /usr/src/linux-source-6.1.tar.xz ] && [ -d "$headers" ]; then
        stamp "building vidtv (as hw-tests/run-vm.sh)"
        rm -rf "$vdir" && mkdir -p "$vdir"
        tar -C "$vdir" -xf /usr/src/linux-source-6.1.tar.xz --strip-components=1 \
            linux-source-6.1/drivers/media/test-drivers/vidtv linux-source-6.1/scripts/extract-vmlinux
        patch -s -d "$vdir/drivers/media/test-drivers/vidtv" -p1 <"$vpatch" || die "vidtv-faults.patch does not apply"
        make -s -C "$headers" M="$vdir/drivers/media/test-drivers/vidtv" CONFIG_DVB_VIDTV=m modules \
            >"$vdir/build.log" 2>&1 || { tail -20 "$vdir/build.log"; die "vidtv build failed"; }
        touch "$vdir/done"
    fi
    if [ -f "$vdir/done" ]; then
        vidtv=$vdir/drivers/media/test-drivers/vidtv
    else
        stamp "NO vidtv in the image: $vdir missing and linux-source-6.1 / $headers not installed (run hw-tests/run-vm.sh once)"
    fi
fi
flock -u 9

# ---- 3. capbox, static musl release build (timed on its own) ----
M0=$(date +%s.%N)
rustup target list --installed 2>/dev/null | grep -qx x86_64-unknown-linux-musl \
    || rustup target add x86_64-unknown-linux-musl >/dev/null || die "rustup target add x86_64-unknown-linux-musl failed"
stamp "building capbox (release, x86_64-unknown-linux-musl, static)"
(cd "$repo" && cargo build -q --release --target x86_64-unknown-linux-musl --no-default-features --bin capbox) \
    || die "the musl release build of capbox failed"
musl_s=$(echo "$(date +%s.%N) - $M0" | bc)
target_dir=$(cd "$repo" && cargo metadata -q --format-version 1 --no-deps \
    | sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')
capbox_bin=$target_dir/x86_64-unknown-linux-musl/release/capbox
file -L "$capbox_bin" 2>/dev/null | grep -q 'static' || ldd "$capbox_bin" 2>&1 | grep -qE 'statically linked|not a dynamic' \
    || die "$capbox_bin is not statically linked"

work=$(mktemp -d "$cache/image.XXXXXX")
trap 'rm -rf "$work"' EXIT
I0=$(date +%s.%N)

# ---- 4. the root filesystem (one slot) ----
stamp "assembling the root filesystem"
R=$work/rootfs
mkdir -p "$R"/{bin,sbin,usr/bin,usr/sbin,dev,proc,sys,tmp,run,data,root,mnt,var,etc,lib/systemd,lib/udev/rules.d}
cp -a "$here/test-skeleton/." "$R/"
rm -f "$R/README"
# Buildroot's skeleton: /var is links into tmpfs (the root is read-only).
for d in cache lock log spool tmp; do ln -sfn ../tmp "$R/var/$d"; done
mkdir -p "$R/var/lib" && ln -sfn ../../tmp "$R/var/lib/misc"
ln -sfn ../run "$R/var/run"
ln -sfn ../tmp/resolv.conf "$R/etc/resolv.conf"
cp /bin/busybox "$R/bin/busybox"
for p in $(/bin/busybox --list-full); do
    [ -e "$R/$p" ] || [ -L "$R/$p" ] || ln -s /bin/busybox "$R/$p"
done
strip -o "$R/usr/bin/capbox" "$capbox_bin"
if [ -n "${CAPBOX_IMAGE_CAPBOX:-}" ]; then
    cp "$CAPBOX_IMAGE_CAPBOX" "$R/usr/bin/capbox" && chmod 0755 "$R/usr/bin/capbox"
    stamp "/usr/bin/capbox is $CAPBOX_IMAGE_CAPBOX (CAPBOX_IMAGE_CAPBOX)"
fi
# RAUC, its D-Bus and GRUB helpers, with their shared libraries (ldd).
rig_with_libs "$R" /usr/bin/rauc /usr/bin/rauc
rig_with_libs "$R" /usr/bin/dbus-daemon /usr/bin/dbus-daemon
rig_with_libs "$R" /usr/bin/grub-editenv /usr/bin/grub-editenv
# `rauc info` reads a plain bundle's manifest with unsquashfs.
rig_with_libs "$R" /usr/bin/unsquashfs /usr/bin/unsquashfs
cp "$udir/root/lib/udev/rules.d/60-persistent-storage.rules" "$R/lib/udev/rules.d/"
mkdir -p "$R/boot" "$R/etc/rauc"
keyring=${CAPBOX_RAUC_KEYRING:-}
if [ -z "$keyring" ]; then
    ca=$cache/rauc-dev-ca
    if [ ! -s "$ca/ca.cert.pem" ]; then
        stamp "making a development RAUC CA in $ca (not for boxes in the field)"
        mkdir -p "$ca"
        openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj "/CN=capbox development CA" \
            -keyout "$ca/ca.key.pem" -out "$ca/ca.cert.pem" 2>/dev/null || die "openssl: cannot make the development CA"
    fi
    keyring=$ca/ca.cert.pem
fi
[ -s "$keyring" ] || die "the RAUC keyring $keyring is missing or empty"
cp "$keyring" "$R/etc/rauc/keyring.pem"
# udevd is udevadm under another name (argv[0]); the rules: Debian's
# 80-drivers.rules (modalias -> driver, the coldplug of S10udev) and
# capbox's own from udev/.
rig_with_libs "$R" "$udevadm" /bin/udevadm
ln -sf /bin/udevadm "$R/lib/systemd/systemd-udevd"
cp "$udir/root/lib/udev/rules.d/80-drivers.rules" "$R/lib/udev/rules.d/"
cp "$repo"/udev/*.rules "$R/lib/udev/rules.d/"
# e2fsck for S00data (not an applet of Debian's busybox).
rig_with_libs "$R" /sbin/e2fsck /sbin/e2fsck
# Modules: the VM's disk, NIC and watchdog; the watchdogs of common
# boards (S15watchdog's list); DVB core; vidtv.
mods=(virtio_pci virtio_blk virtio_net ext4 crc32c_generic i6300esb softdog iTCO_wdt sp5100_tco mc dvb-core
      loop squashfs vfat nls_cp437 nls_ascii nls_utf8)
if [ -n "$vidtv" ]; then
    mkdir -p "$R/lib/modules/$kver/extra"
    cp "$vidtv"/*.ko "$R/lib/modules/$kver/extra/"
    strip --strip-debug "$R/lib/modules/$kver/extra/"*.ko
fi
rig_modules "$R" "${mods[@]}"
# The capbox parts, exactly as Buildroot copies its overlay last.
cp -a "$overlay/." "$R/"
version=${CAPBOX_IMAGE_VERSION:-$(sed -n 's/^version *= *"\(.*\)"/\1/p' "$repo/Cargo.toml" | head -1)+g$(git -C "$repo" rev-parse --short HEAD 2>/dev/null || echo unknown)}
printf 'NAME=capbox\nVERSION=%s\n' "$version" >"$R/etc/capbox-release"
cat >"$R/etc/capbox-image" <<INFO
capbox test image (images/build-test-image.sh)
built $(date -u +%Y-%m-%dT%H:%M:%SZ) from $(git -C "$repo" describe --always --dirty 2>/dev/null || echo unknown)
kernel $kver (Debian), busybox $(/bin/busybox | head -1 | cut -d' ' -f2), vidtv ${vidtv:+yes}${vidtv:-no}
INFO
chmod 0600 "$R/etc/shadow"
[ "$(id -u)" = 0 ] && chown -R 0:0 "$R"
rootfs_files_kib=$(du -sk "$R" | cut -f1)

mkdir -p "$work/input" "$work/emptyroot"
in=$work/input
# 64 MiB: the slot size; mke2fs -d fails when the tree does not fit.
mke2fs -q -t ext4 -L rootfs -d "$R" -F "$in/rootfs.ext4" 64M \
    || die "the root filesystem does not fit in 64 MiB (files: ${rootfs_files_kib} KiB)"
blocks=$(dumpe2fs -h "$in/rootfs.ext4" 2>/dev/null | sed -n 's/^Block count: *//p')
free=$(dumpe2fs -h "$in/rootfs.ext4" 2>/dev/null | sed -n 's/^Free blocks: *//p')
bsize=$(dumpe2fs -h "$in/rootfs.ext4" 2>/dev/null | sed -n 's/^Block size: *//p')
rootfs_used_kib=$(((blocks - free) * bsize / 1024))
# What takes the space, largest first (for the report).
top=$(cd "$R" && du -ak . | sort -rn | awk '$2 != "." && !seen[$2]++' | grep -E '\./(usr/bin/capbox|bin/busybox|lib/modules/[^/]*$|lib/x86_64-linux-gnu$|bin/udevadm|usr/share/capbox$|lib/modules/.*/kernel$|lib/modules/.*/extra$)' | head -8 | awk '{printf "%s %s KiB; ", $2, $1}')

# ---- 5. the initramfs (test image only: Debian's kernel) ----
stamp "packing the initramfs"
ird=$work/initramfs
mkdir -p "$ird"/{dev,proc,sys,newroot}
rig_busybox "$ird" sh mount umount sleep cat grep sed ls mkdir switch_root reboot echo tr
rig_modules "$ird" virtio_pci virtio_blk ahci sd_mod ext4 crc32c_generic
cp "$here/test-initramfs-init" "$ird/init"
chmod +x "$ird/init"
(cd "$ird" && find . | cpio -o -H newc --quiet | gzip -1) >"$in/initrd.img" || die "cpio failed"

# ---- 6. GRUB (i386-pc) and the boot partition's files ----
grubmods=(biosdisk part_gpt fat ext2 normal linux test serial terminal loadenv echo search configfile)
grub-mkimage -d /usr/lib/grub/i386-pc -O i386-pc -o "$in/grub.img" -p '(hd0,gpt1)/boot/grub' "${grubmods[@]}" \
    || die "grub-mkimage failed"
cp /usr/lib/grub/i386-pc/boot.img "$in/boot.img"
sh "$here/grub-bios-patch.sh" "$in" >/dev/null || die "grub-bios-patch.sh failed"
cp "${vmlinuz:?}" "$in/bzImage" # set by rig_fetch_kernel
cp "$repo/buildroot/board/capbox/grub.cfg" "$in/grub.cfg"
# GRUB's environment block (RAUC's ORDER / X_OK / X_TRY): both slots good,
# A first, as the factory writes them.
grub-editenv "$in/grubenv" create
grub-editenv "$in/grubenv" set ORDER="A B" A_OK=1 A_TRY=0 B_OK=1 B_TRY=0
# The layout of images/genimage.cfg plus the one line the test image adds:
# the initramfs on the boot partition.
sed 's|^\(\t*\)file boot/grub/grub.cfg .*|&\n\1file boot/initrd.img { image = "initrd.img" }|' \
    "$here/genimage.cfg" >"$work/genimage.cfg"
grep -q initrd.img "$work/genimage.cfg" || die "cannot add the initramfs to the boot partition of genimage.cfg"

# ---- 7. the disk (genimage, the layout of images/genimage.cfg) ----
stamp "genimage"
genimage --config "$work/genimage.cfg" \
    --inputpath "$in" --outputpath "$work/out" --rootpath "$work/emptyroot" \
    --tmppath "$work/gtmp" >"$work/genimage.log" 2>&1 || { tail -20 "$work/genimage.log"; die "genimage failed"; }
mkdir -p "$out"
mv "$work/out/disk.img" "$out/disk.img.tmp" && mv "$out/disk.img.tmp" "$out/disk.img"
cp "$in/rootfs.ext4" "$out/rootfs.ext4"
image_s=$(echo "$(date +%s.%N) - $I0" | bc)
total_s=$(echo "$(date +%s.%N) - $T0" | bc)
capbox_bytes=$(stat -c %s "$R/usr/bin/capbox")
cat >"$out/image.env" <<ENV
kver=$kver
version=$version
keyring=$keyring
vidtv=${vidtv:+1}
disk_bytes=$(stat -c %s "$out/disk.img")
rootfs_used_kib=$rootfs_used_kib
rootfs_files_kib=$rootfs_files_kib
capbox_bytes=$capbox_bytes
musl_build_s=$musl_s
image_assembly_s=$image_s
image_total_s=$total_s
rootfs_top="$top"
ENV
stamp "disk $out/disk.img ($(du -h --apparent-size "$out/disk.img" | cut -f1), sparse)"
printf 'build-test-image: capbox static binary (stripped): %d bytes = %.2f MiB (bar <= 4 MiB)\n' "$capbox_bytes" "$(echo "$capbox_bytes / 1048576" | bc -l)"
printf 'build-test-image: root filesystem used: %d KiB = %.1f MiB of the 64 MiB slot (files %d KiB)\n' "$rootfs_used_kib" "$(echo "$rootfs_used_kib / 1024" | bc -l)" "$rootfs_files_kib"
echo "build-test-image: largest: $top"
printf 'build-test-image: minutes: musl release build %.2f, image assembly %.2f, all %.2f\n' \
    "$(echo "$musl_s / 60" | bc -l)" "$(echo "$image_s / 60" | bc -l)" "$(echo "$total_s / 60" | bc -l)"
