# Shared steps of the hw-tests rigs (run-vm.sh, run-ccid-vm.sh,
# run-bochs.sh), sourced by each. The caller defines `stamp` and `die` and
# sets `cache` (the shared cache directory, with its .lock).

# Every rig runs under the C locale whatever the caller's is: Debian 12's
# Bochs 2.7 aborts ("*** buffer overflow detected ***") reading any bochsrc
# under C.UTF-8, the default locale of many fresh Debian images, and the
# other tools' messages are parsed in English.
export LC_ALL=C LANG=C LANGUAGE=

# Install the Debian packages of "$@" that are missing (idempotent).
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
