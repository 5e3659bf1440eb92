#!/usr/bin/env bash
# The kernel rig: runs capbox's DVB code against the kernel's own virtual DVB
# driver (vidtv) in a QEMU VM, on the real ioctl path, and exits with the
# number of failed checks (0 = all passed).
#
# Steps (each cached under $CAPBOX_HW_CACHE, so a warm run only rebuilds the
# test binary, repacks the initramfs and boots):
#   1. Debian packages: kernel source (for vidtv), headers, QEMU, busybox,
#      dvb-tools (dvbv5-zap/-scan as a peer to compare with), dtv-scan-tables.
#   2. The matching Debian kernel image (apt-get download, not installed):
#      vmlinuz → uncompressed vmlinux (boots in ≈ 4 s instead of ≈ 9 s under
#      TCG, FIELD-NOTES), and its mc/dvb-core modules.
#   3. vidtv built out of tree against the headers, with capbox's fault
#      injectors patched in (vm/vidtv-faults.patch: module parameters
#      writable at run time that make the mux go silent while locked, or
#      the demod report no signal).
#   4. The static in-VM test program (hw-tests/vm/main.rs, the `hw-tests`
#      example of the capbox crate).
#   5. An initramfs: busybox, modules + depmod, the test program, dvbv5 tools
#      with their shared libraries, a dvbv5 channel file and scan file.
#   6. QEMU under TCG (KVM hung on this rig); the guest's /init writes the
#      failure count to isa-debug-exit, which makes QEMU exit with 2n+1.
#
# Environment: CAPBOX_HW_CACHE (default /var/cache/capbox-hw),
# CAPBOX_HW_TIMEOUT (seconds for the VM, default 120).
set -euo pipefail
T0=$(date +%s.%N)
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/.." && pwd)
# shellcheck source=hw-tests/lib.sh
source "$here/lib.sh"
# Not root (a developer's machine): the cache goes to the repo's target dir.
cache=$(rig_cache_dir "$repo")
vm_timeout=${CAPBOX_HW_TIMEOUT:-300}

stamp() { printf 'run-vm: [%6.1fs] %s\n' "$(echo "$(date +%s.%N) - $T0" | bc)" "$*"; }
die() { echo "run-vm: FAILED: $*" >&2; exit 2; }
command -v bc >/dev/null || { apt-get install -y -qq bc >/dev/null 2>&1 || true; }
command -v bc >/dev/null || stamp() { echo "run-vm: $*"; }

# ---- 1. packages ----
pkgs=(linux-source-6.1 linux-headers-amd64 qemu-system-x86 busybox-static
      dvb-tools dtv-scan-tables kmod xz-utils cpio bc gcc make patch)
rig_install "${pkgs[@]}"
command -v bc >/dev/null && stamp() { printf 'run-vm: [%6.1fs] %s\n' "$(echo "$(date +%s.%N) - $T0" | bc)" "$*"; }

# The kernel ABI the headers metapackage points at (e.g. 6.1.0-56-amd64):
# the image must be the same build so vermagic and Module.symvers match.
kver=$(rig_kernel_version)
headers=/usr/src/linux-headers-$kver
[ -d "$headers" ] || die "$headers missing"
stamp "kernel $kver"

# Several runs may share the cache (engineers' worktrees, CI): the cached
# kernel and vidtv steps run under a lock; each run packs and boots from
# its own directory.
rig_lock

# ---- 2. kernel image + modules ----
rig_fetch_kernel "$kver"

# ---- 3. vidtv out of tree ----
src_tar=/usr/src/linux-source-6.1.tar.xz
# The patch's hash names the build, so a changed patch rebuilds.
vpatch=$here/vm/vidtv-faults.patch
vdir=$cache/vidtv-$kver-$(sha256sum "$vpatch" | cut -c1-12)
if [ ! -f "$vdir/done" ]; then
    stamp "building vidtv"
    rm -rf "$vdir" && mkdir -p "$vdir"
    tar -C "$vdir" -xf "$src_tar" --strip-components=1 \
        linux-source-6.1/drivers/media/test-drivers/vidtv linux-source-6.1/scripts/extract-vmlinux
    patch -s -d "$vdir/drivers/media/test-drivers/vidtv" -p1 <"$vpatch" || die "vidtv-faults.patch does not apply"
    make -s -C "$headers" M="$vdir/drivers/media/test-drivers/vidtv" CONFIG_DVB_VIDTV=m modules \
        >"$vdir/build.log" 2>&1 || { tail -20 "$vdir/build.log"; die "vidtv build failed"; }
    touch "$vdir/done"
fi
rig_vmlinux

flock -u 9
run=$(mktemp -d "$cache/run.XXXXXX")
trap 'rm -rf "$run"' EXIT

# ---- 4. the static test program ----
# `cargo rustc` puts crt-static on the example's own link only, so the
# capbox library and dependencies already built by `cargo build`/`cargo
# test` in the repo's target dir are reused (a warm run relinks one binary);
# glibc links statically as static-pie. --no-default-features: without
# the card manager, which loads libpcsclite.so.1 at run time (a static
# binary cannot).
stamp "building the in-VM test program"
(cd "$repo" && cargo rustc -q --no-default-features --example hw-tests -- -C target-feature=+crt-static) \
    || die "cargo build of the hw-tests example failed"
target_dir=$(cd "$repo" && cargo metadata -q --format-version 1 --no-deps \
    | sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')
testbin=$target_dir/debug/examples/hw-tests
ldd "$testbin" 2>&1 | grep -qE 'statically linked|not a dynamic' || die "$testbin is not statically linked"

# ---- 5. initramfs ----
stamp "packing the initramfs"
ird=$run/initramfs
rm -rf "$ird" && mkdir -p "$ird"/{bin,sbin,dev,proc,sys,tmp,etc,lib64,lib/x86_64-linux-gnu,usr/share/dvb}
cp /bin/busybox "$ird/bin/busybox"
for a in sh mount insmod rmmod modprobe lsmod dd cat echo ls sleep poweroff uname dmesg printf head grep; do
    ln -sf busybox "$ird/bin/$a"
done
# The kernel's request_module runs /sbin/modprobe: vidtv's bridge loads its
# tuner and demod that way.
for a in modprobe insmod depmod poweroff; do ln -sf ../bin/busybox "$ird/sbin/$a"; done
strip -o "$ird/bin/hw-tests" "$testbin"
# Modules: what vidtv needs from the Debian kernel (mc, dvb-core and their
# dependencies, per modinfo) plus the three vidtv modules; depmod -b makes
# busybox modprobe load them in order.
mkdir -p "$ird/lib/modules/$kver/extra"
cp "$vdir"/drivers/media/test-drivers/vidtv/*.ko "$ird/lib/modules/$kver/extra/"
want=(mc dvb-core)
seen=" "
while [ ${#want[@]} -gt 0 ]; do
    m=${want[0]}; want=("${want[@]:1}")
    case "$seen" in *" $m "*) continue ;; esac
    seen="$seen$m "
    f=$(find "$moddir" -name "$m.ko*" | head -1)
    [ -n "$f" ] || { f=$(find "$moddir" -name "${m//-/_}.ko*" | head -1); }
    [ -n "$f" ] || die "module $m not found in $moddir"
    rel=${f#"$moddir"/}
    mkdir -p "$ird/lib/modules/$kver/$(dirname "$rel")"
    cp "$f" "$ird/lib/modules/$kver/$rel"
    deps=$(/sbin/modinfo -F depends "$f" | tr ',' ' ')
    for d in $deps; do want+=("$d"); done
done
cp "$moddir"/modules.order "$moddir"/modules.builtin* "$ird/lib/modules/$kver/" 2>/dev/null || true
/sbin/depmod -b "$ird" "$kver" || die "depmod failed"
# dvbv5 tools and their shared libraries (the peer to compare with).
for b in /usr/bin/dvbv5-zap /usr/bin/dvbv5-scan; do
    cp "$b" "$ird/bin/"
    for l in $(ldd "$b" | grep -o '/[^ ]*' | sort -u); do
        mkdir -p "$ird$(dirname "$l")"
        cp -L "$l" "$ird$l"
    done
done
cp -r "$here/vm/files/." "$ird/etc/"
cp "$here/vm/init" "$ird/init"
chmod +x "$ird/init"
(cd "$ird" && find . | cpio -o -H newc --quiet) >"$run/initramfs.cpio"
rm -rf "$ird"
stamp "initramfs $(du -h "$run/initramfs.cpio" | cut -f1)"

# ---- 6. boot ----
stamp "booting QEMU (tcg)"
# The last run's serial log stays in the cache for a post-mortem.
log=$cache/vm.log
set +e
timeout "$vm_timeout" qemu-system-x86_64 -accel tcg,thread=multi -smp 2 -m 512 \
    -nographic -no-reboot -nodefaults -serial stdio \
    -device isa-debug-exit,iobase=0xf4,iosize=0x04 \
    -kernel "$kernel" -initrd "$run/initramfs.cpio" \
    -append "console=ttyS0 quiet panic=-1 kver=$kver" </dev/null | tee "$run/vm.log"
rc=${PIPESTATUS[0]}
set -e
cp "$run/vm.log" "$log" 2>/dev/null || true
stamp "QEMU exited with $rc"
rig_qemu_result run-vm "$rc" "$log" "$vm_timeout" && result=0 || result=$?
T1=$(date +%s.%N)
echo "run-vm: total $(echo "$T1 - $T0" | bc 2>/dev/null || echo '?') s"
exit $result
