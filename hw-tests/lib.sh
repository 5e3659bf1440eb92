# Shared steps of the hw-tests rigs (run-vm.sh, run-ccid-vm.sh,
# run-bochs.sh), sourced by each. The caller defines `stamp` and `die` and
# sets `cache` (the shared cache directory, with its .lock).

# Every rig runs under the C locale whatever the caller's is: Debian 12's
# Bochs 2.7 aborts ("*** buffer overflow detected ***") reading any bochsrc
# under C.UTF-8, the default locale of many fresh Debian images, and the
# other tools' messages are parsed in English.
export LC_ALL=C LANG=C LANGUAGE=

# Install the Debian packages of "$@" that are missing (idempotent).
# The rigs' shared cache: $CAPBOX_HW_CACHE (default /var/cache/capbox-hw),
# else REPO/target/hw when that cannot be made or written. Prints it.
rig_cache_dir() {
    local c=${CAPBOX_HW_CACHE:-/var/cache/capbox-hw}
    if ! { mkdir -p "$c" 2>/dev/null && [ -w "$c" ]; }; then c=$1/target/hw; fi
    mkdir -p "$c"
    echo "$c"
}

rig_install() {
    local missing=() p
    for p in "$@"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    stamp "installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq || die "apt-get update failed (need root and network)"
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null \
        || die "apt-get install ${missing[*]} failed"
}

# The Debian kernel ABI to boot (e.g. 6.1.0-56-amd64): the one
# linux-headers-amd64 points at when installed (run-vm.sh builds vidtv
# against it, so the image must be that build), else the one the
# linux-image-amd64 metapackage would install.
rig_kernel_version() {
    local kver
    kver=$(dpkg-query -W -f='${Depends}' linux-headers-amd64 2>/dev/null \
        | grep -o 'linux-headers-[0-9][^ ,]*-amd64' | head -1 | sed 's/^linux-headers-//' || true)
    [ -n "$kver" ] || kver=$(apt-cache depends linux-image-amd64 2>/dev/null \
        | grep -o 'linux-image-[0-9][^ ,]*-amd64' | head -1 | sed 's/^linux-image-//' || true)
    [ -n "$kver" ] || die "cannot tell the kernel version (linux-headers-amd64 / linux-image-amd64)"
    echo "$kver"
}

# Download and unpack linux-image-$1-unsigned into $cache/kernel-$1 (not
# installed) once; sets kdir, vmlinuz and moddir. Call with the cache lock
# held.
rig_fetch_kernel() {
    kdir=$cache/kernel-$1
    if [ ! -f "$kdir/done" ]; then
        stamp "downloading linux-image-$1-unsigned"
        rm -rf "$kdir" && mkdir -p "$kdir/deb"
        (cd "$kdir/deb" && apt-get download -qq "linux-image-$1-unsigned") \
            || die "apt-get download linux-image-$1-unsigned failed"
        dpkg-deb -x "$kdir"/deb/*.deb "$kdir/root"
        rm -rf "$kdir/deb"
        touch "$kdir/done"
    fi
    vmlinuz=$kdir/root/boot/vmlinuz-$1
    moddir=$kdir/root/lib/modules/$1
    [ -f "$vmlinuz" ] || die "$vmlinuz missing"
}

# Take the rigs' shared cache lock (fd 9): held until `flock -u 9` or exit.
rig_lock() {
    exec 9>"$cache/.lock"
    flock 9
}

# The uncompressed kernel ELF beside $vmlinuz, made once (what the kernel's
# scripts/extract-vmlinux does, for Debian's xz-compressed image): it boots
# in about half the time under TCG. Sets `kernel` to it, or to $vmlinuz
# when it cannot be made. Call after rig_fetch_kernel, with the lock held.
rig_vmlinux() {
    local vmlinux=$kdir/vmlinux
    if [ ! -s "$vmlinux" ]; then
        python3 - "$vmlinuz" "$vmlinux.tmp" <<'PY' || true
import lzma, sys
data = open(sys.argv[1], "rb").read()
i = data.find(b"\xfd7zXZ\x00")
while i >= 0:
    try:
        out = lzma.LZMADecompressor().decompress(data[i:])
        if out[:4] == b"\x7fELF":
            open(sys.argv[2], "wb").write(out)
            sys.exit(0)
    except lzma.LZMAError:
        pass
    i = data.find(b"\xfd7zXZ\x00", i + 1)
sys.exit(1)
PY
        if [ -s "$vmlinux.tmp" ]; then mv "$vmlinux.tmp" "$vmlinux"; else rm -f "$vmlinux.tmp"; fi
    fi
    kernel=$vmlinux
    [ -s "$kernel" ] || kernel=$vmlinuz
}

# udev's systemd-udevd (udevadm under another name: it looks at argv[0]),
# downloaded and unpacked once into $cache/udev, not installed (the host is
# a container and needs no udevd of its own). Sets udir and udevadm. Call
# with the lock held.
rig_fetch_udev() {
    udir=$cache/udev
    if [ ! -f "$udir/done" ]; then
        stamp "downloading udev"
        rm -rf "$udir" && mkdir -p "$udir/deb"
        (cd "$udir/deb" && apt-get download -qq udev) || die "apt-get download udev failed"
        dpkg-deb -x "$udir"/deb/*.deb "$udir/root"
        rm -rf "$udir/deb"
        touch "$udir/done"
    fi
    udevadm=$udir/root/bin/udevadm
    [ -x "$udevadm" ] || die "$udevadm missing"
}

# What a QEMU run said, when its guest reports the failure count through
# isa-debug-exit (QEMU exits with (n << 1) | 1; 124 is timeout(1)'s).
# Prints it and returns 0 (all passed), 1 (checks failed) or 2 (no result):
# call as `rig_qemu_result NAME RC LOG TIMEOUT && result=0 || result=$?`.
rig_qemu_result() {
    local name=$1 rc=$2 log=$3 t=$4
    if [ "$rc" = 124 ]; then
        echo "$name: FAILED: VM timed out after ${t}s (log: $log)"
        return 2
    elif [ $((rc % 2)) = 1 ]; then
        local failures=$(((rc - 1) / 2))
        echo "$name: $failures failed check(s)"
        [ "$failures" = 0 ] || return 1
    else
        echo "$name: FAILED: the VM ended without reporting a result (QEMU rc $rc; log: $log)"
        return 2
    fi
}

# Busybox into the initramfs tree $1, with a link for each applet of "$@"
# after it in bin/ (and modprobe, insmod, depmod, poweroff in sbin/).
rig_busybox() {
    local ird=$1 a
    shift
    mkdir -p "$ird/bin" "$ird/sbin"
    cp /bin/busybox "$ird/bin/busybox"
    for a in "$@"; do ln -sf busybox "$ird/bin/$a"; done
    for a in modprobe insmod depmod poweroff; do ln -sf ../bin/busybox "$ird/sbin/$a"; done
}

# Binary $2 into the initramfs tree $1 at path $3 (default: $2's own), with
# the shared libraries ldd names at their own paths.
rig_with_libs() {
    local ird=$1 b=$2 dest=${3:-$2} l
    mkdir -p "$ird$(dirname "$dest")"
    cp -L "$b" "$ird$dest"
    for l in $(ldd "$b" 2>/dev/null | grep -o '/[^ ]*' | sort -u); do
        [ -e "$ird$l" ] && continue
        mkdir -p "$ird$(dirname "$l")"
        cp -L "$l" "$ird$l"
    done
}

# The kernel modules "${@:2}" and every module they depend on (modinfo)
# from $moddir into the initramfs tree $1, then depmod there. Needs kver
# and moddir (rig_fetch_kernel); sets rig_modules_seen (the list).
rig_modules() {
    local ird=$1 m f rel d
    shift
    local want=("$@")
    rig_modules_seen=" "
    while [ ${#want[@]} -gt 0 ]; do
        m=${want[0]}; want=("${want[@]:1}")
        case "$rig_modules_seen" in *" $m "*) continue ;; esac
        rig_modules_seen="$rig_modules_seen$m "
        f=$(find "$moddir" -name "$m.ko*" | head -1)
        [ -n "$f" ] || f=$(find "$moddir" -name "${m//-/_}.ko*" | head -1)
        [ -n "$f" ] || f=$(find "$moddir" -name "${m//_/-}.ko*" | head -1)
        [ -n "$f" ] || die "module $m is not in $moddir"
        rel=${f#"$moddir"/}
        mkdir -p "$ird/lib/modules/$kver/$(dirname "$rel")"
        cp "$f" "$ird/lib/modules/$kver/$rel"
        for d in $(/sbin/modinfo -F depends "$f" | tr ',' ' '); do want+=("$d"); done
    done
    cp "$moddir"/modules.order "$moddir"/modules.builtin* "$ird/lib/modules/$kver/" 2>/dev/null || true
    /sbin/depmod -b "$ird" "$kver" || die "depmod failed"
}

# Build example $1 of the capbox crate (debug; "${@:2}" are extra cargo
# flags before the `--` of rustc flags, e.g. --no-default-features) and set
# rig_example_bin to it. RIG_STATIC=1 links it static (crt-static on the
# example's own link only, so the library built for the other tests is
# reused) and checks that it is.
rig_example() {
    local name=$1 target_dir
    shift
    if [ "${RIG_STATIC:-}" = 1 ]; then
        (cd "$repo" && cargo rustc -q "$@" --example "$name" -- -C target-feature=+crt-static) \
            || die "cargo build of the $name example failed"
    else
        (cd "$repo" && cargo build -q "$@" --example "$name") || die "cargo build --example $name failed"
    fi
    target_dir=$(cd "$repo" && cargo metadata -q --format-version 1 --no-deps \
        | sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')
    rig_example_bin=$target_dir/debug/examples/$name
    [ -x "$rig_example_bin" ] || die "$rig_example_bin missing"
    if [ "${RIG_STATIC:-}" = 1 ]; then
        ldd "$rig_example_bin" 2>&1 | grep -qE 'statically linked|not a dynamic' \
            || die "$rig_example_bin is not statically linked"
    fi
}

# The initramfs tree $1 packed as newc cpio into $2 (the tree is removed).
rig_pack() {
    (cd "$1" && find . | cpio -o -H newc --quiet) >"$2" || die "cpio failed"
    rm -rf "$1"
}
