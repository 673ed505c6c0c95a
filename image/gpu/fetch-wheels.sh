#!/usr/bin/env bash
# Downloads the gpu profile's hash-locked wheels
# (image/gpu/extra/usr/lib/chrysalis/gpu/requirements.txt) for the image's
# Python (CPython 3.13, manylinux x86-64) into OUT_DIR on the build host;
# pip checks every file against its SHA-256. The image build then installs
# them with --no-index from that directory (mounted as a build source), so
# the image build itself needs no network and no package index.
# Usage: image/gpu/fetch-wheels.sh OUT_DIR
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
out=${1:?usage: fetch-wheels.sh OUT_DIR}
mkdir -p "$out"
# pip does not widen an explicit --platform: list every manylinux level the
# image's glibc (2.41) accepts.
platforms=()
for n in $(seq 41 -1 5); do platforms+=(--platform "manylinux_2_${n}_x86_64"); done
platforms+=(--platform manylinux2014_x86_64 --platform manylinux2010_x86_64 \
    --platform manylinux1_x86_64 --platform linux_x86_64 --platform any)
python3 -m pip download --quiet --disable-pip-version-check \
    --require-hashes --no-deps --only-binary :all: \
    --implementation cp --python-version 3.13 --abi cp313 --abi abi3 --abi none \
    "${platforms[@]}" \
    -d "$out" -r "$here/extra/usr/lib/chrysalis/gpu/requirements.txt"
echo "fetch-wheels: $(find "$out" -name '*.whl' | wc -l) wheels, $(du -sh "$out" | cut -f1) in $out"
