#!/usr/bin/env bash
# The CCID rig: capbox's card manager against a real pcscd, Debian's real
# CCID driver (libccid) and real USB hot-plug, in a QEMU VM whose USB CCID
# readers (QEMU's usb-ccid, with its emulated card) the host plugs and pulls
# over QMP. Exits with the number of failed checks (0 = all passed).
#
# Steps (cached under $CAPBOX_HW_CACHE, shared with run-vm.sh, so a warm run
# only relinks the test program, repacks the initramfs and boots):
#   1. Debian packages: QEMU, busybox, pcscd, libccid, libnss3-tools
#      (certutil, for the emulated card's NSS db), kmod, cpio.
#   2. The Debian kernel image (apt-get download, not installed; the same
#      cache dir as run-vm.sh): vmlinux and its USB modules (usb-common,
#      usbcore, xhci-hcd, xhci-pci: modular in Debian's kernel; usb-storage,
#      sd_mod and what they need, for the disk of the USB reset checks).
#   3. udev's systemd-udevd (apt-get download udev, not installed: the host
#      is a container and needs no udevd of its own). pcscd's libudev
#      monitor listens to the events udevd re-broadcasts, not the kernel's,
#      so without udevd in the guest pcscd never hears a reader come.
#   4. An NSS db with three self-signed certificates for QEMU's
#      ccid-card-emulated (backend=certificates).
#   5. The in-VM test program (hw-tests/ccid/guest.rs, example
#      `ccid-guest`, dynamic with the default `pcsc` feature), and capbox
#      itself (for `capbox usb-reset`).
#   6. An initramfs: busybox, the modules + depmod, udevd, pcscd, libccid,
#      the test program, each with the shared libraries ldd names, and
#      libpcsclite.so.1 (which the card manager loads at run time).
#   7. QEMU under TCG with a qemu-xhci controller, a usb-storage disk
#      (serial CAPBOXDISK, 1 MiB, first bytes CAPBOX-USB-RESET-DISK: the
#      USB reset checks reset it and read it back) and QMP; hw-tests/ccid/
#      host.py shows the serial console and does what the guest asks
#      ("HOST: plug r1", "card r1", "unplug r1") with device_add/device_del.
#      The guest's /init writes the failure count to isa-debug-exit.
#
# Environment: CAPBOX_HW_CACHE (default /var/cache/capbox-hw),
# CAPBOX_HW_TIMEOUT (seconds for the VM, default 240),
# CAPBOX_CCID_NO_CARD=1 (skip the emulated card steps),
# CAPBOX_CCID_PULL_WITH_CARD=1 (pull reader 1 with its card in: shows the
# pcscd 1.9.9 hang described in hw-tests/README.md; expect failures),
# CAPBOX_CCID_R1_SERIAL (the serial the host gives reader 1; anything but
# CAPBOXR1 makes the guest's checks fail: shows they can).
set -euo pipefail
T0=$(date +%s.%N)
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/.." && pwd)
# shellcheck source=hw-tests/lib.sh
source "$here/lib.sh"
cache=$(rig_cache_dir "$repo")
vm_timeout=${CAPBOX_HW_TIMEOUT:-240}

stamp() { printf 'run-ccid-vm: [%6.1fs] %s\n' "$(echo "$(date +%s.%N) - $T0" | bc)" "$*"; }
die() { echo "run-ccid-vm: FAILED: $*" >&2; exit 2; }
command -v bc >/dev/null || stamp() { echo "run-ccid-vm: $*"; }

# ---- 1. packages ----
pkgs=(qemu-system-x86 busybox-static pcscd libccid libnss3-tools kmod cpio bc python3)
rig_install "${pkgs[@]}"
stamp() { printf 'run-ccid-vm: [%6.1fs] %s\n' "$(echo "$(date +%s.%N) - $T0" | bc)" "$*"; }
qemu-system-x86_64 -device help 2>/dev/null | grep -q '"ccid-card-emulated"' \
    || die "this QEMU has no usb-ccid/ccid-card-emulated"

kver=$(rig_kernel_version)
stamp "kernel $kver"

rig_lock

# ---- 2. kernel image + modules (same layout as run-vm.sh) ----
rig_fetch_kernel "$kver"
rig_vmlinux

# ---- 3. udevd ----
rig_fetch_udev

# ---- 4. the emulated card's NSS db ----
nssdb=$cache/ccid-nssdb
if [ ! -f "$nssdb/done" ]; then
    stamp "making the NSS db for ccid-card-emulated"
    rm -rf "$nssdb" && mkdir -p "$nssdb"
    certutil -d "sql:$nssdb" -N --empty-password || die "certutil -N failed"
    head -c 64 /dev/urandom >"$nssdb/noise"
    for c in cert1 cert2 cert3; do
        certutil -d "sql:$nssdb" -S -x -t "CT,CT,CT" -s "CN=capbox $c" -n "$c" \
            -z "$nssdb/noise" -v 240 >/dev/null 2>&1 || die "certutil -S $c failed"
    done
    rm -f "$nssdb/noise"
    touch "$nssdb/done"
fi

flock -u 9
run=$(mktemp -d "$cache/ccid-run.XXXXXX")
trap 'rm -rf "$run"' EXIT

# ---- 5. the test program ----
stamp "building the in-VM test program"
(cd "$repo" && cargo build -q --example ccid-guest --bin capbox) || die "cargo build --example ccid-guest --bin capbox failed"
target_dir=$(cd "$repo" && cargo metadata -q --format-version 1 --no-deps \
    | sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')
testbin=$target_dir/debug/examples/ccid-guest
[ -x "$testbin" ] || die "$testbin missing"
capboxbin=$target_dir/debug/capbox
[ -x "$capboxbin" ] || die "$capboxbin missing"

# ---- 6. initramfs ----
stamp "packing the initramfs"
ird=$run/initramfs
mkdir -p "$ird"/{bin,sbin,dev,proc,sys,tmp,run,etc/udev/rules.d,lib/systemd,lib64}
cp /bin/busybox "$ird/bin/busybox"
for a in sh mount modprobe insmod lsmod dd cat echo ls sleep poweroff uname dmesg printf head tail grep mkdir; do
    ln -sf busybox "$ird/bin/$a"
done
for a in modprobe insmod depmod poweroff; do ln -sf ../bin/busybox "$ird/sbin/$a"; done
# A binary and the shared libraries ldd names, at the same paths.
with_libs() {
    local b=$1 dest=$2
    mkdir -p "$ird$(dirname "$dest")"
    cp -L "$b" "$ird$dest"
    for l in $(ldd "$b" | grep -o '/[^ ]*' | sort -u); do
        [ -e "$ird$l" ] && continue
        mkdir -p "$ird$(dirname "$l")"
        cp -L "$l" "$ird$l"
    done
}
with_libs "$testbin" /bin/ccid-guest
strip "$ird/bin/ccid-guest"
# capbox itself, for the `capbox usb-reset` check.
with_libs "$capboxbin" /bin/capbox
strip "$ird/bin/capbox"
# The card manager loads libpcsclite.so.1 at run time (dlopen), so ldd does
# not name it: put it where the guest's dynamic loader looks (the multiarch
# dir, no ld.so.cache needed).
pcsclib=$(ldconfig -p | sed -n 's/^\s*libpcsclite\.so\.1 (.*) => //p' | head -1)
[ -n "$pcsclib" ] || die "libpcsclite.so.1 not found (Debian package libpcsclite1)"
with_libs "$pcsclib" "$pcsclib"
with_libs /usr/sbin/pcscd /usr/sbin/pcscd
ln -sf ../usr/sbin/pcscd "$ird/sbin/pcscd"
bundle=/usr/lib/pcsc/drivers/ifd-ccid.bundle
with_libs $bundle/Contents/Linux/libccid.so $bundle/Contents/Linux/libccid.so
cp -L $bundle/Contents/Info.plist "$ird$bundle/Contents/Info.plist"
# systemd-udevd is udevadm under another name (it looks at argv[0]).
with_libs "$udevadm" /bin/udevadm
ln -sf /bin/udevadm "$ird/lib/systemd/systemd-udevd"
# The USB host controller: xhci-pci and what modinfo says it needs.
want=(xhci-pci usb-storage sd_mod crct10dif_generic)
seen=" "
while [ ${#want[@]} -gt 0 ]; do
    m=${want[0]}; want=("${want[@]:1}")
    case "$seen" in *" $m "*) continue ;; esac
    seen="$seen$m "
    f=$(find "$moddir" -name "$m.ko*" | head -1)
    [ -n "$f" ] || { f=$(find "$moddir" -name "${m//_/-}.ko*" | head -1); }
    [ -n "$f" ] || die "module $m not found in $moddir"
    rel=${f#"$moddir"/}
    mkdir -p "$ird/lib/modules/$kver/$(dirname "$rel")"
    cp "$f" "$ird/lib/modules/$kver/$rel"
    for d in $(/sbin/modinfo -F depends "$f" | tr ',' ' '); do want+=("$d"); done
done
cp "$moddir"/modules.order "$moddir"/modules.builtin* "$ird/lib/modules/$kver/" 2>/dev/null || true
/sbin/depmod -b "$ird" "$kver" || die "depmod failed"
cp "$here/ccid/init" "$ird/init"
chmod +x "$ird/init"
(cd "$ird" && find . | cpio -o -H newc --quiet) >"$run/initramfs.cpio"
rm -rf "$ird"
stamp "initramfs $(du -h "$run/initramfs.cpio" | cut -f1), modules:$seen"

# ---- 7. boot and drive ----
# The disk of the USB reset checks: its first sector says what it is.
disk=$run/usb-disk.img
truncate -s 1M "$disk"
printf 'CAPBOX-USB-RESET-DISK\n' | dd of="$disk" conv=notrunc status=none
guest_env=""
[ "${CAPBOX_CCID_NO_CARD:-}" = 1 ] && guest_env="$guest_env CCID_NO_CARD=1"
[ "${CAPBOX_CCID_PULL_WITH_CARD:-}" = 1 ] && guest_env="$guest_env CCID_PULL_WITH_CARD=1"
stamp "booting QEMU (tcg)"
log=$cache/ccid-vm.log
set +e
python3 "$here/ccid/host.py" "$vm_timeout" "$run/qmp.sock" "$nssdb" -- \
    qemu-system-x86_64 -accel tcg,thread=multi -smp 2 -m 512 \
    -nographic -no-reboot -nodefaults -serial stdio \
    -device isa-debug-exit,iobase=0xf4,iosize=0x04 \
    -device qemu-xhci,id=xhci \
    -drive "if=none,id=usbdisk,format=raw,file=$disk" \
    -device usb-storage,bus=xhci.0,drive=usbdisk,serial=CAPBOXDISK \
    -qmp "unix:$run/qmp.sock,server=on,wait=off" \
    -kernel "$kernel" -initrd "$run/initramfs.cpio" \
    -append "console=ttyS0 quiet panic=-1$guest_env" </dev/null | tee "$run/vm.log"
rc=${PIPESTATUS[0]}
set -e
cp "$run/vm.log" "$log" 2>/dev/null || true
stamp "QEMU exited with $rc"
if [ "$rc" = 100 ]; then
    # host.py's own failure (HOST_FAILED there).
    echo "run-ccid-vm: FAILED: a QMP request failed (log: $log)"
    result=2
else
    rig_qemu_result run-ccid-vm "$rc" "$log" "$vm_timeout" && result=0 || result=$?
fi
echo "run-ccid-vm: total $(echo "$(date +%s.%N) - $T0" | bc 2>/dev/null || echo '?') s"
exit $result
