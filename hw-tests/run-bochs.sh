#!/usr/bin/env bash
# The AVX-512 rig: runs capbox's AVX-512 CSA batch engine on an emulated
# AVX-512 CPU (Bochs; this machine's CPU and QEMU TCG have no AVX-512) and
# exits non-zero unless every check of the in-guest self-test passed.
#
# Steps (cached under $CAPBOX_HW_CACHE, shared with run-vm.sh; a warm run
# relinks nothing that did not change, repacks the ISO and boots):
#   1. Debian packages: bochs, bochsbios, vgabios (Bochs' VGA ROM),
#      isolinux + syslinux-common + xorriso (an El Torito ISO: Bochs cannot
#      boot a kernel directly), busybox-static, cpio, libdvbcsa-dev + gcc
#      (the vectors), the musl target of rustup.
#   2. The Debian kernel image (apt-get download, as run-vm.sh; same
#      cache directory).
#   3. The static guest program examples/csa_selftest.rs
#      (x86_64-unknown-linux-musl, release: the emulator runs ≈ 35 MIPS).
#   4. Vectors written on the host by Debian's libdvbcsa
#      (tests/c/csa_vectors.c), or $CAPBOX_CSA_VECTORS if given.
#   5. initramfs (busybox, /init, the program, the vectors) + ISO.
#   6. Bochs, CPU model $CAPBOX_BOCHS_CPU (default corei7_icelake_u:
#      AVX-512 F/BW/VL/VBMI; see hw-tests/bochs/README.md), no display (rfb with no wait; Debian's build
#      has no nogui), serial console to a file. The guest prints
#      `init: csa-selftest exit N` and powers off.
#
# Environment: CAPBOX_HW_CACHE (default /var/cache/capbox-hw),
# CAPBOX_BOCHS_TIMEOUT (seconds for Bochs, default 480),
# CAPBOX_BOCHS_CPU, CAPBOX_CSA_VECTORS, CAPBOX_CSA_SEED (vector seed).
set -euo pipefail
T0=$(date +%s.%N)
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/.." && pwd)
# shellcheck source=hw-tests/lib.sh
source "$here/lib.sh"
cache=$(rig_cache_dir "$repo")
bx_timeout=${CAPBOX_BOCHS_TIMEOUT:-480}
cpu_model=${CAPBOX_BOCHS_CPU:-corei7_icelake_u}
seed=${CAPBOX_CSA_SEED:-0x5eed2026}

stamp() { printf 'run-bochs: [%5ss] %s\n' "$(($(date +%s) - ${T0%.*}))" "$*"; }
die() { echo "run-bochs: FAILED: $*" >&2; exit 2; }

# ---- 1. packages ----
pkgs=(bochs bochsbios vgabios isolinux syslinux-common xorriso busybox-static
      cpio libdvbcsa-dev gcc)
rig_install "${pkgs[@]}"
musl=x86_64-unknown-linux-musl
if ! rustup target list --installed 2>/dev/null | grep -qx "$musl"; then
    stamp "rustup target add $musl"
    rustup target add "$musl" >/dev/null || die "rustup target add $musl failed"
fi

# ---- 2. kernel image (the version linux-image-amd64 points at) ----
kver=$(rig_kernel_version)
rig_lock
rig_fetch_kernel "$kver"
flock -u 9
stamp "kernel $kver"

run=$(mktemp -d "$cache/bochs-run.XXXXXX")
bx_pid=
cleanup() {
    [ -n "$bx_pid" ] && kill "$bx_pid" 2>/dev/null
    rm -rf "$run"
}
trap cleanup EXIT

# ---- 3. the static guest program ----
# Release without LTO or debug info: the emulator is slow, the build
# should not be. A separate target triple, so the host builds are untouched.
stamp "building the guest program (musl, release)"
(cd "$repo" && CARGO_PROFILE_RELEASE_LTO=false CARGO_PROFILE_RELEASE_DEBUG=0 \
    cargo build -q --release --target "$musl" --no-default-features --example csa_selftest) \
    || die "cargo build of examples/csa_selftest.rs failed"
target_dir=$(cd "$repo" && cargo metadata -q --format-version 1 --no-deps \
    | sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')
guestbin=$target_dir/$musl/release/examples/csa_selftest
file -L "$guestbin" 2>/dev/null | grep -q 'static' || ldd "$guestbin" 2>&1 | grep -qE 'statically linked|not a dynamic' \
    || die "$guestbin is not statically linked"

# ---- 4. vectors ----
vectors=${CAPBOX_CSA_VECTORS:-}
if [ -z "$vectors" ]; then
    stamp "writing vectors with libdvbcsa (seed $seed)"
    cc -O2 -Wall -Werror -o "$run/csa_vectors" "$repo/tests/c/csa_vectors.c" -ldvbcsa \
        || die "compiling tests/c/csa_vectors.c failed"
    vectors=$run/vectors.bin
    "$run/csa_vectors" "$seed" "$vectors" || die "csa_vectors failed"
fi
[ -s "$vectors" ] || die "no vector file $vectors"

# ---- 5. initramfs + ISO ----
ird=$run/initramfs
mkdir -p "$ird"/{bin,dev,proc,sys} "$run/iso/isolinux"
cp /bin/busybox "$ird/bin/busybox"
ln -s busybox "$ird/bin/sh"
strip -o "$ird/bin/csa_selftest" "$guestbin"
cp "$vectors" "$ird/vectors.bin"
cp "$here/bochs/init" "$ird/init"
chmod +x "$ird/init"
# Uncompressed: unpacking gzip in the emulator costs more than reading
# the extra bytes from the CD.
(cd "$ird" && find . | cpio -o -H newc --quiet) >"$run/iso/isolinux/initrd"
cp "$vmlinuz" "$run/iso/isolinux/vmlinuz"
cp /usr/lib/ISOLINUX/isolinux.bin /usr/lib/syslinux/modules/bios/ldlinux.c32 "$run/iso/isolinux/"
cp "$here/bochs/isolinux.cfg" "$run/iso/isolinux/isolinux.cfg"
xorriso -as mkisofs -quiet -o "$run/boot.iso" -b isolinux/isolinux.bin -c isolinux/boot.cat \
    -no-emul-boot -boot-load-size 4 -boot-info-table "$run/iso" 2>"$run/xorriso.log" \
    || { cat "$run/xorriso.log"; die "xorriso failed"; }
stamp "ISO $(du -h "$run/boot.iso" | cut -f1)"

# ---- 6. boot ----
sed -e "s|@CPU@|$cpu_model|" -e "s|@ISO@|$run/boot.iso|" -e "s|@SERIAL@|$run/serial.log|" \
    -e "s|@LOG@|$run/bochs.log|" "$here/bochs/bochsrc" >"$run/bochsrc"
# Debian's Bochs is built with its debugger, which stops at the first
# instruction: the -rc file says continue.
echo c >"$run/dbg"
stamp "booting Bochs ($cpu_model), timeout ${bx_timeout}s"
: >"$run/serial.log"
set +e
timeout "$bx_timeout" bochs -q -f "$run/bochsrc" -rc "$run/dbg" </dev/null >"$run/bochs.out" 2>&1 &
bx_pid=$!
tail -n +1 -f "$run/serial.log" --pid "$bx_pid" &
wait "$bx_pid"
rc=$?
bx_pid=
set -e
sleep 0.2
cp "$run/serial.log" "$cache/bochs-serial.log" 2>/dev/null || true
cp "$run/bochs.log" "$cache/bochs.log" 2>/dev/null || true
stamp "Bochs exited with $rc"
exit_line=$(grep -a '^init: csa-selftest exit ' "$run/serial.log" | tail -1 | tr -d '\r' || true)
if [ "$rc" = 124 ]; then
    echo "run-bochs: FAILED: Bochs timed out after ${bx_timeout}s (log: $cache/bochs-serial.log)"
    result=2
elif [ -z "$exit_line" ]; then
    echo "run-bochs: FAILED: the guest ended without reporting a result (Bochs rc $rc; log: $cache/bochs-serial.log)"
    tail -20 "$run/bochs.out"
    result=2
else
    n=${exit_line##* }
    echo "run-bochs: self-test exit status $n"
    result=$((n == 0 ? 0 : 1))
fi
echo "run-bochs: total $(($(date +%s) - ${T0%.*})) s"
exit $result
