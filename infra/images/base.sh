#!/usr/bin/env bash
# Make Muster's local base image with debootstrap and buildah: Debian bookworm (the suite of
# the production base, python:3.11-slim-bookworm) with Debian's Python 3.11 and nothing else.
# Used where no registry can be pulled from (the test suite, air-gapped builds); production
# builds use the public base by default.
#
#   infra/images/base.sh STORAGE_ROOT IMAGE_NAME [MIRROR [SCRIPT_HASH]]
#
# STORAGE_ROOT is buildah's --root (vfs storage); the image is committed under IMAGE_NAME,
# labelled io.muster.base-script=SCRIPT_HASH (make compares it to rebuild a stale base).
set -euo pipefail

root=${1:?usage: base.sh STORAGE_ROOT IMAGE_NAME [MIRROR [SCRIPT_HASH]]}
image=${2:?usage: base.sh STORAGE_ROOT IMAGE_NAME [MIRROR [SCRIPT_HASH]]}
mirror=${3:-http://deb.debian.org/debian}
script_hash=${4:-unknown}
suite=bookworm

[[ $(id -u) == 0 ]] || { echo "base.sh: debootstrap and buildah (vfs) need root" >&2; exit 1; }
for tool in debootstrap buildah; do
  command -v "$tool" >/dev/null || {
    echo "base.sh: $tool not found; run 'make image-tools' (apt-get install buildah debootstrap)" >&2
    exit 1
  }
done

work=$(mktemp -d "${TMPDIR:-/tmp}/muster-base.XXXXXX")
trap 'rm -rf "$work"' EXIT
rootfs=$work/rootfs

# minbase: essential packages only; python3.11-venv brings ensurepip (pip for the build
# stage) and ca-certificates lets Python verify TLS.
echo "debootstrap $suite from $mirror (a few minutes)"
debootstrap --variant=minbase --include=python3.11,python3.11-venv,python3-distutils,ca-certificates \
  "$suite" "$rootfs" "$mirror" >"$work/debootstrap.log" 2>&1 || {
  tail -n 30 "$work/debootstrap.log" >&2
  echo "base.sh: debootstrap failed (log above); check access to $mirror" >&2
  exit 1
}
# What a slim base leaves out: package caches, docs, man pages, locales.
rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/* \
  "$rootfs"/usr/share/doc/* "$rootfs"/usr/share/man/* "$rootfs"/usr/share/info/* \
  "$rootfs"/var/log/*.log
find "$rootfs"/usr/share/locale -mindepth 1 -maxdepth 1 ! -name 'locale.alias' -exec rm -rf {} +
ln -sf python3.11 "$rootfs"/usr/bin/python

tar -C "$rootfs" --numeric-owner -cf "$work/rootfs.tar" .
ctr=$(buildah --root "$root" --storage-driver vfs from scratch)
buildah --root "$root" --storage-driver vfs add "$ctr" "$work/rootfs.tar" /
buildah --root "$root" --storage-driver vfs config \
  --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
  --env LANG=C.UTF-8 --cmd /bin/bash \
  --label org.opencontainers.image.description="Debian $suite with Python 3.11 (debootstrap)" \
  --label io.muster.base-script="$script_hash" \
  "$ctr"
buildah --root "$root" --storage-driver vfs commit --rm --quiet "$ctr" "$image" >/dev/null
echo "committed $image"
