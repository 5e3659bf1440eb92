#!/usr/bin/env bash
# Buildroot post-image step of capbox_x86_64_defconfig: puts the files the
# image layout wants into $BINARIES_DIR and runs genimage with the
# repository's images/genimage.cfg (GPT: boot, rootfs-a, rootfs-b, data),
# the layout the CI test image is built from too.
#
# Buildroot runs it from its top directory with $1 = $BINARIES_DIR and
# BINARIES_DIR, BUILD_DIR, HOST_DIR, BR2_CONFIG exported. What
# images/genimage.cfg takes from $BINARIES_DIR:
#   bzImage, rootfs.ext4   from the kernel and the ext4 root filesystem
#   grub.img               GRUB's i386-pc core image (grub2 package)
#   boot.img               GRUB's i386-pc MBR code, copied here from the
#                          grub2 build (Buildroot leaves it there)
#   grub.cfg               board/capbox/grub.cfg
#   grubenv                GRUB's environment (RAUC's slot order, tries)
# grub.img and boot.img are then patched by images/grub-bios-patch.sh for
# a core image at 32 KiB (the GPT holds sector 1). For UEFI, GRUB is also
# in efi-part/EFI/BOOT/bootx64.efi with grub.cfg beside it.
set -euo pipefail

die() { echo "post-image.sh: $*" >&2; exit 1; }

binaries=${1:-${BINARIES_DIR:?}}
board=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$board/../../.." && pwd)
layout=$repo/images/genimage.cfg
patcher=$repo/images/grub-bios-patch.sh
grubcfg=$board/grub.cfg

for f in "$layout" "$patcher" "$grubcfg"; do
    [ -f "$f" ] || die "$f is missing (the image layout: images/ and board/capbox/grub.cfg of the capbox repository)"
done
for f in bzImage rootfs.ext4 grub.img; do
    [ -f "$binaries/$f" ] || die "$binaries/$f is missing (kernel, ext4 rootfs, GRUB i386-pc)"
done

install -m 0644 "$grubcfg" "$binaries/grub.cfg"
# GRUB's environment block for RAUC's boot counting (grub.cfg): both slots
# good, A first. grub-editenv: host-grub2's, else the build machine's.
editenv=${HOST_DIR:-/nonexistent}/bin/grub-editenv
[ -x "$editenv" ] || editenv=$(command -v grub-editenv) || die "grub-editenv not found (host-grub2 or the build machine's grub-common)"
rm -f "$binaries/grubenv"
"$editenv" "$binaries/grubenv" create
"$editenv" "$binaries/grubenv" set ORDER="A B" A_OK=1 A_TRY=0 B_OK=1 B_TRY=0

bootimg=
for f in "${BUILD_DIR:?}"/grub2-*/build-i386-pc/grub-core/boot.img; do
    [ -f "$f" ] && bootimg=$f
done
[ -n "$bootimg" ] || die "GRUB's boot.img not found under $BUILD_DIR/grub2-*/build-i386-pc (BR2_TARGET_GRUB2_I386_PC)"
install -m 0644 "$bootimg" "$binaries/boot.img"
sh "$patcher" "$binaries"

if [ -f "$binaries/efi-part/EFI/BOOT/bootx64.efi" ]; then
    install -m 0644 "$grubcfg" "$binaries/efi-part/EFI/BOOT/grub.cfg"
fi

support/scripts/genimage.sh -c "$layout"
