#!/usr/bin/env bash
# Buildroot post-image step of capbox_x86_64_defconfig: lays out the boot
# partition tree and runs genimage with the repository's
# images/genimage.cfg (the one image layout: boot, rootfs-a, rootfs-b,
# data), the same file the CI test image is built from.
#
# Buildroot runs it from its top directory with $1 = $BINARIES_DIR and
# BR2_EXTERNAL_CAPBOX_PATH, BINARIES_DIR, BUILD_DIR, HOST_DIR exported.
# What images/genimage.cfg finds in $BINARIES_DIR (its inputpath):
#   bzImage                      the kernel (console=ttyS0,115200 is on
#                                the command line of grub.cfg)
#   rootfs.ext4                  one root slot (written to rootfs-a and -b)
#   efi-part/                    the boot partition tree:
#     EFI/BOOT/bootx64.efi       GRUB for UEFI (x86_64-efi)
#     EFI/BOOT/grub.cfg          board/capbox/grub.cfg
#     boot/grub/grub.cfg         the same, where GRUB for BIOS looks
#                                ((hd0,gpt1)/boot/grub)
#     bzImage                    the kernel again, for GRUB on the ESP
#   grub.img, and boot.img from host/lib/grub/i386-pc: GRUB for BIOS
#                                (core image and MBR code)
set -euo pipefail

die() { echo "post-image.sh: $*" >&2; exit 1; }

binaries=${1:-${BINARIES_DIR:?}}
board=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$board/../../.." && pwd)
layout=$repo/images/genimage.cfg
grubcfg=$board/grub.cfg

[ -f "$layout" ] || die "$layout is missing (the image layout, images/ at the top of the capbox repository)"
[ -f "$grubcfg" ] || die "$grubcfg is missing (the GRUB menu of the appliance)"
[ -f "$binaries/bzImage" ] || die "$binaries/bzImage is missing (BR2_LINUX_KERNEL)"
[ -f "$binaries/rootfs.ext4" ] || die "$binaries/rootfs.ext4 is missing (BR2_TARGET_ROOTFS_EXT2_4)"

efi=$binaries/efi-part
install -D -m 0644 "$grubcfg" "$efi/EFI/BOOT/grub.cfg"
install -D -m 0644 "$grubcfg" "$efi/boot/grub/grub.cfg"
install -D -m 0644 "$binaries/bzImage" "$efi/bzImage"
if [ -f "${HOST_DIR:-}/lib/grub/i386-pc/boot.img" ]; then
    install -m 0644 "$HOST_DIR/lib/grub/i386-pc/boot.img" "$binaries/boot.img"
fi

support/scripts/genimage.sh -c "$layout"
