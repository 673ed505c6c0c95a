#!/usr/bin/env bash
# Install the mkosi version this project pins (Debian trixie's 25.3 .deb, arch all), verified by
# sha256, extracted into a prefix (default: $HOME/.cache/chrysalis/mkosi-25.3). mkosi 25 runs on
# bookworm's python3 (>= 3.9); the tools it needs to build the image (systemd-repart, ukify,
# mkfs.erofs, veritysetup, ...) come from its own trixie tools tree (ToolsTree=default in mkosi.conf).
# Prints the path of the mkosi launcher on stdout.
set -euo pipefail
MKOSI_VERSION=25.3-7
MKOSI_SHA256=ef56c81324fd47d65490e944ec4697bb3f6fb21326d0d071bfc2fb5ba5383252
MIRROR=${CHRYSALIS_DEBIAN_MIRROR:-http://deb.debian.org/debian}
PREFIX=${1:-${XDG_CACHE_HOME:-$HOME/.cache}/chrysalis/mkosi-${MKOSI_VERSION}}
launcher="$PREFIX/bin/mkosi"
if [ -x "$launcher" ]; then echo "$launcher"; exit 0; fi
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
deb="$tmp/mkosi.deb"
curl -fsSL -o "$deb" "$MIRROR/pool/main/m/mkosi/mkosi_${MKOSI_VERSION}_all.deb"
echo "$MKOSI_SHA256  $deb" | sha256sum -c --quiet - >&2
mkdir -p "$PREFIX/root" "$PREFIX/bin"
dpkg-deb -x "$deb" "$PREFIX/root"
cat > "$launcher" <<LAUNCH
#!/bin/sh
PYTHONPATH="$PREFIX/root/usr/lib/python3/dist-packages\${PYTHONPATH:+:\$PYTHONPATH}" exec python3 -B -m mkosi "\$@"
LAUNCH
chmod +x "$launcher"
echo "$launcher"
