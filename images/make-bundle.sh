#!/usr/bin/env bash
# A RAUC bundle of one root filesystem slot, signed:
#   images/make-bundle.sh ROOTFS.ext4 VERSION CERT KEY OUT.raucb [KEYRING]
# ROOTFS.ext4: images/build-test-image.sh's rootfs.ext4 (or Buildroot's);
# CERT/KEY: the signing certificate and its key (PEM), issued by the CA
# whose certificate the boxes carry as /etc/rauc/keyring.pem; KEYRING
# (optional): that CA certificate, to check the bundle right after it is
# signed. The compatible is the one of rootfs-overlay/etc/rauc/system.conf,
# or CAPBOX_BUNDLE_COMPATIBLE's (the update rig's bundle for another box).
# Prints the bundle's size.
set -euo pipefail
[ $# -ge 5 ] || { echo "usage: $0 ROOTFS.ext4 VERSION CERT KEY OUT.raucb [KEYRING]" >&2; exit 2; }
rootfs=$1 version=$2 cert=$3 key=$4 out=$5 keyring=${6:-}
here=$(cd "$(dirname "$0")" && pwd)
compatible=${CAPBOX_BUNDLE_COMPATIBLE:-$(sed -n 's/^compatible=//p' "$here/../buildroot/board/capbox/rootfs-overlay/etc/rauc/system.conf")}
[ -n "$compatible" ] || { echo "make-bundle: no compatible in system.conf" >&2; exit 2; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir "$work/in"
cp "$rootfs" "$work/in/rootfs.ext4"
cat >"$work/in/manifest.raucm" <<MF
[update]
compatible=$compatible
version=$version
description=capbox root filesystem $version

[bundle]
format=plain

[image.rootfs]
filename=rootfs.ext4
MF
rm -f "$out"
args=(bundle --cert="$cert" --key="$key")
[ -n "$keyring" ] && args+=(--keyring="$keyring")
rauc "${args[@]}" "$work/in" "$out" >"$work/log" 2>&1 || { cat "$work/log" >&2; exit 1; }
echo "make-bundle: $out: version $version, $(stat -c %s "$out") bytes"
