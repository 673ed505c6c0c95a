#!/usr/bin/env bash
# Builds the confidential-VM firmware of the image from Debian trixie's edk2
# sources, reproducibly:
#   firmware-tdx.fd  TDVF   (OvmfPkg/IntelTdx/IntelTdxX64.dsc)
#   firmware-snp.fd  OVMF AmdSev (OvmfPkg/AmdSev/AmdSevX64.dsc; measured direct
#                    boot on SNP: kernel hashes table, SNP_KERNEL_HASHES section)
#
# Why from source: Debian's `ovmf` package ships neither build (only the
# generic OvmfPkgX64), and a pinned source tarball plus a pinned toolchain is
# something an auditor can rebuild bit for bit, unlike a downloaded blob.
#
# Inputs pinned here by sha256 (Debian's edk2 2025.02-8+deb13u1 orig and
# debian tarballs; the patches in debian/patches/series are applied). The
# result depends on the toolchain (gcc, nasm, iasl versions: they are
# recorded in firmware-build.txt) and on the build path's LENGTH (GenFw
# reserves room for the absolute path in each module), so the build always
# runs at the fixed path below. Locale, umask and time zone do not matter.
#
# Usage: image/firmware/build.sh [OUT_DIR]   (default image/firmware/out)
# `chrysalis image build` runs it itself when image/firmware/out is not a
# complete build of this recipe (firmware-build.txt: the sha256 of this
# script and of both outputs), so every release is measured.
# Needs: gcc, make, nasm, iasl (acpica-tools), uuid-dev, python3, xz, curl.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
out=${1:-$here/out}
mkdir -p "$out"; out=$(cd "$out" && pwd)
# The record is written last: a build that stops half-way leaves none, so
# `chrysalis image build` never takes a partial cache for a complete one.
rm -f "$out/firmware-build.txt"

EDK2_VERSION=2025.02-8+deb13u1
ORIG=edk2_2025.02.orig.tar.xz
ORIG_SHA256=b63b6053d6d89c74d9291f9e96fde1584be99e6fb9c169ba9511505129d6b049
DEBIAN=edk2_${EDK2_VERSION}.debian.tar.xz
DEBIAN_SHA256=e2a7f6fc58640818416a028d6d5e9dfc255697a7cdc60c14566c236df6bd9b08
MIRROR=${CHRYSALIS_DEBIAN_MIRROR:-http://deb.debian.org/debian}
# Fixed build path (its length enters the binaries).
BUILD_ROOT=/var/tmp/chrysalis-edk2
CACHE=${XDG_CACHE_HOME:-$HOME/.cache}/chrysalis/edk2

mkdir -p "$CACHE"
fetch() { # name sha256
    local f="$CACHE/$1"
    if [ ! -f "$f" ] || ! echo "$2  $f" | sha256sum -c --quiet - 2>/dev/null; then
        curl -fsSL -o "$f.part" "$MIRROR/pool/main/e/edk2/$1"
        mv "$f.part" "$f"
    fi
    echo "$2  $f" | sha256sum -c --quiet -
}
fetch "$ORIG" "$ORIG_SHA256"
fetch "$DEBIAN" "$DEBIAN_SHA256"

# One build at a time on this machine: the fixed path is shared.
exec 9> "$BUILD_ROOT.lock"
flock 9
rm -rf "$BUILD_ROOT"; mkdir -p "$BUILD_ROOT"
cd "$BUILD_ROOT"
tar -xf "$CACHE/$ORIG"
src=$(find . -maxdepth 1 -mindepth 1 -type d | head -1)
mv "$src" edk2
cd edk2
tar -xf "$CACHE/$DEBIAN"
while read -r p _; do
    case "$p" in ''|'#'*) continue ;; esac
    patch -p1 --quiet --no-backup-if-mismatch < "debian/patches/$p"
done < debian/patches/series

export LC_ALL=C TZ=UTC
umask 022
set --  # edksetup.sh must see no positional arguments
set +u  # edksetup.sh reads unset variables
# shellcheck disable=SC1091
source ./edksetup.sh >/dev/null
make -C BaseTools -j"$(nproc)" >/dev/null
# AmdSev's prebuild wants a grub with the sevsecret module (Debian has none);
# measured direct boot does not use it: an empty grub.efi newer than the script.
touch -d '@0' OvmfPkg/AmdSev/Grub/grub.sh 2>/dev/null || true
: > OvmfPkg/AmdSev/Grub/grub.efi

build -q -a X64 -t GCC5 -b RELEASE -n "$(nproc)" -p OvmfPkg/IntelTdx/IntelTdxX64.dsc
build -q -a X64 -t GCC5 -b RELEASE -n "$(nproc)" -p OvmfPkg/AmdSev/AmdSevX64.dsc

install -m 0644 Build/IntelTdx/RELEASE_GCC5/FV/OVMF.fd "$out/firmware-tdx.fd"
install -m 0644 Build/AmdSev/RELEASE_GCC5/FV/OVMF.fd "$out/firmware-snp.fd"
{
    echo "edk2 $EDK2_VERSION (Debian trixie), built at $BUILD_ROOT/edk2"
    # The recipe: `chrysalis image build` reuses this directory only when
    # this line names the build.sh of its tree (sources pinned above).
    echo "recipe $(sha256sum "$here/build.sh" | cut -d' ' -f1)"
    echo "$ORIG_SHA256  $ORIG"
    echo "$DEBIAN_SHA256  $DEBIAN"
    echo "gcc: $(gcc --version | head -1)"
    echo "nasm: $(nasm -v)"
    echo "iasl: $(iasl -v 2>/dev/null | grep -m1 -i version | tr -s ' ')"
    (cd "$out" && sha256sum firmware-tdx.fd firmware-snp.fd)
} > "$out/firmware-build.txt"
cat "$out/firmware-build.txt"
