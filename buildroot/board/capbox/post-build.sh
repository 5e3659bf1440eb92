#!/usr/bin/env bash
# Buildroot post-build step of capbox_x86_64_defconfig (before the root
# filesystem image is made; $1 = $TARGET_DIR):
#   - /etc/rauc/keyring.pem: the CA certificate bundles must be signed
#     under, from $CAPBOX_RAUC_KEYRING (README "Updates", the signing key).
#     No key is in the repository: without it the build stops, since a
#     box without a keyring can never be updated remotely.
#   - /etc/capbox-release: the image's version, what /status, /metrics and
#     `rauc status` compare ($CAPBOX_IMAGE_VERSION, else capbox's version
#     and the commit).
#   - /boot and /data: the mount points of the boot partition (RAUC's
#     grubenv, S20update) and of the data partition (S00data); the root
#     filesystem is read-only, they cannot be made at boot.
set -euo pipefail

die() { echo "post-build.sh: $*" >&2; exit 1; }

target=${1:-${TARGET_DIR:?}}
board=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$board/../../.." && pwd)

keyring=${CAPBOX_RAUC_KEYRING:-}
[ -n "$keyring" ] || die "CAPBOX_RAUC_KEYRING is not set: give the update CA's certificate (make CAPBOX_RAUC_KEYRING=/path/ca.cert.pem; README \"Updates\")"
[ -s "$keyring" ] || die "CAPBOX_RAUC_KEYRING=$keyring is missing or empty"
grep -q 'BEGIN CERTIFICATE' "$keyring" || die "CAPBOX_RAUC_KEYRING=$keyring is not a PEM certificate"
grep -q 'PRIVATE KEY' "$keyring" && die "CAPBOX_RAUC_KEYRING=$keyring holds a private key: give the CA's certificate only"
install -D -m 0644 "$keyring" "$target/etc/rauc/keyring.pem"

version=${CAPBOX_IMAGE_VERSION:-}
if [ -z "$version" ]; then
    version=$(sed -n 's/^version *= *"\(.*\)"/\1/p' "$repo/Cargo.toml" | head -1)
    version=$version+g$(git -C "$repo" rev-parse --short HEAD 2>/dev/null || echo unknown)
fi
printf 'NAME=capbox\nVERSION=%s\n' "$version" >"$target/etc/capbox-release"

mkdir -p "$target/boot" "$target/data"
