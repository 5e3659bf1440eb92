#!/usr/bin/env bash
# Boot the test image (images/build-test-image.sh's disk.img) with its
# serial console on this terminal, as a technician's USB-serial cable
# would show it: GRUB's menu, the kernel, the init scripts, then
# "capbox login:" (root, no password). Good for tmux at 80x24:
#     tmux new-session -d -s box -x 80 -y 24 images/run-test-image.sh
#     tmux send-keys -t box root Enter; tmux capture-pane -p -t box
# The console is QEMU's `-serial mon:stdio`: Ctrl-A X quits QEMU, Ctrl-A C
# switches to QEMU's monitor and back. capbox's HTTP port is forwarded to
# 127.0.0.1:${CAPBOX_IMAGE_PORT:-8080}. The disk is used with -snapshot
# (nothing written reaches disk.img), unless CAPBOX_IMAGE_PERSIST=1.
#
# vidtv (a virtual DVB-T tuner) on the console: echo dvb_vidtv_bridge
# >/data/capbox/modules; /etc/init.d/S05modules start.
#
# Environment: CAPBOX_IMAGE (default $CAPBOX_HW_CACHE/appliance/disk.img),
# CAPBOX_IMAGE_PORT (8080), CAPBOX_IMAGE_PERSIST.
set -euo pipefail
cache=${CAPBOX_HW_CACHE:-/var/cache/capbox-hw}
[ -w "$cache" ] || cache=$(cd "$(dirname "$0")/.." && pwd)/target/hw
disk=${CAPBOX_IMAGE:-$cache/appliance/disk.img}
[ -f "$disk" ] || { echo "run-test-image: $disk missing: run images/build-test-image.sh first" >&2; exit 2; }
snap=(-snapshot)
[ "${CAPBOX_IMAGE_PERSIST:-}" = 1 ] && snap=()
exec qemu-system-x86_64 -accel tcg,thread=multi -smp 2 -m 512 -nographic -nodefaults "${snap[@]}" \
    -drive "file=$disk,format=raw,if=virtio" \
    -device i6300esb -watchdog-action reset \
    -netdev "user,id=n0,hostfwd=tcp:127.0.0.1:${CAPBOX_IMAGE_PORT:-8080}-:8080" -device virtio-net-pci,netdev=n0 \
    -serial mon:stdio
