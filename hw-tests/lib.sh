# Shared steps of the hw-tests rigs (run-vm.sh, run-ccid-vm.sh,
# run-bochs.sh), sourced by each. The caller defines `stamp` and `die` and
# sets `cache` (the shared cache directory, with its .lock).

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
