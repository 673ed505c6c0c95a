#!/usr/bin/env bash
# Fetches the .debs listed in image/gpu/debs.lock into OUT_DIR (kept there
# as a cache) and checks each against its SHA-256; exits non-zero, leaving
# no unchecked file behind, when one is missing or differs.
# Usage: image/gpu/fetch-debs.sh OUT_DIR [MIRROR_URL]
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
out=${1:?usage: fetch-debs.sh OUT_DIR [MIRROR_URL]}
mirror=${2:-http://deb.debian.org/debian}
mkdir -p "$out"
grep -Ev '^[[:space:]]*(#|$)' "$here/debs.lock" | while read -r sum path; do
    file=$out/$(basename "$path")
    if [ -f "$file" ] && echo "$sum  $file" | sha256sum -c --quiet --status; then
        continue
    fi
    curl -fsS --retry 3 -m 600 -o "$file.part" "$mirror/$path" || { rm -f "$file.part"; echo "fetch-debs: cannot fetch $mirror/$path" >&2; exit 1; }
    if ! echo "$sum  $file.part" | sha256sum -c --quiet --status; then
        rm -f "$file.part"
        echo "fetch-debs: $path: SHA-256 differs from image/gpu/debs.lock" >&2
        exit 1
    fi
    mv "$file.part" "$file"
    echo "fetch-debs: $(basename "$path") ok"
done
