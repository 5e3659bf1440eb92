#!/bin/sh
# Point GRUB's BIOS boot code at its core image placed at 32 KiB, where
# images/genimage.cfg puts it (in the gap between the GPT and the first
# partition; sector 1 holds the GPT header, so GRUB's default — core image
# at sector 1 — cannot be used on a GPT disk). What grub-bios-setup does on
# a device, done on the files before genimage assembles the disk:
#   boot.img  u64 at 0x5c: the sector of the core image's first sector (64)
#   grub.img  the blocklist at the end of its first sector (diskboot.img):
#             u64 at 500: the sector where the rest starts (65); the length
#             at 508 is grub-mkimage's already
# Usage: grub-bios-patch.sh DIR (holding boot.img and grub.img, as
# Buildroot's BINARIES_DIR does with BR2_TARGET_GRUB2_I386_PC). Idempotent;
# refuses files that hold anything but GRUB's defaults or these values.
set -eu
dir=${1:?usage: grub-bios-patch.sh DIR}
core_sector=64 # 32 KiB / 512

le64() { # the 8 bytes of $1, little-endian
    v=$1 i=0
    while [ $i -lt 8 ]; do
        # shellcheck disable=SC2059
        printf "\\$(printf %03o $((v & 255)))"
        v=$((v >> 8)) i=$((i + 1))
    done
}
u64_at() { od -An -tu8 -j "$2" -N8 "$1" | tr -d ' '; }

patch() { # FILE OFFSET GRUB_DEFAULT VALUE
    cur=$(u64_at "$1" "$2")
    case $cur in
        "$4") ;;
        "$3") le64 "$4" | dd of="$1" bs=1 seek="$2" conv=notrunc status=none ;;
        *) echo "grub-bios-patch: $1 holds $cur at offset $2 (want GRUB's default $3 or $4): not GRUB 2's i386-pc image?" >&2; exit 1 ;;
    esac
}

[ -f "$dir/boot.img" ] && [ -f "$dir/grub.img" ] || { echo "grub-bios-patch: $dir/boot.img or $dir/grub.img missing" >&2; exit 1; }
[ "$(wc -c <"$dir/boot.img")" = 512 ] || { echo "grub-bios-patch: $dir/boot.img is not 512 bytes" >&2; exit 1; }
core=$(wc -c <"$dir/grub.img")
# The core image must end before the first partition (1 MiB).
[ "$core" -le $((1024 * 1024 - core_sector * 512)) ] || { echo "grub-bios-patch: $dir/grub.img is $core bytes: it does not fit between 32 KiB and 1 MiB" >&2; exit 1; }
patch "$dir/boot.img" $((0x5c)) 1 $core_sector
patch "$dir/grub.img" 500 2 $((core_sector + 1))
echo "grub-bios-patch: boot.img -> sector $core_sector, grub.img ($core bytes) continues at sector $((core_sector + 1))"
