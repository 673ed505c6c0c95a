#!/usr/bin/env bash
# dm-verity root hash of a 1 GiB image: chrysalis-measurements
# (examples/verity) vs `veritysetup format --no-superblock` vs `sha256sum` of
# the same file, one run each, the file in the page cache for all three.
# Prints wall time, CPU time and peak RSS (GNU time) of each, checks that the
# root hashes and the written hash trees are equal, and prints the ratios.
#
# The image is created once, from /dev/urandom (no holes), at
# target/verity-bench/img-1g. Needs veritysetup and /usr/bin/time
# (ci/measure-tools.sh). Usage:
#   bash measurements/benches/verity_vs_veritysetup.sh [SIZE_MIB]
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
TARGET="${CARGO_TARGET_DIR:-$ROOT/target}"
MIB="${1:-1024}"
SALT="5f1d2c8e9a0b4c3d7e6f8a9b0c1d2e3f405162738495a6b7c8d9eafb0c1d2e3f"

command -v veritysetup >/dev/null || { echo "no veritysetup: run ci/measure-tools.sh" >&2; exit 1; }
[ -x /usr/bin/time ] || { echo "no /usr/bin/time: run ci/measure-tools.sh" >&2; exit 1; }

cargo build --quiet --release -p chrysalis-measurements --example verity
OURS="$TARGET/release/examples/verity"
W="$TARGET/verity-bench"
mkdir -p "$W"
IMG="$W/img-${MIB}m"
if [ ! -f "$IMG" ] || [ "$(stat -c %s "$IMG")" -ne $((MIB << 20)) ]; then
    echo "creating $IMG ($MIB MiB of random data)"
    head -c $((MIB << 20)) /dev/urandom > "$IMG.tmp" && mv "$IMG.tmp" "$IMG"
fi
cat "$IMG" > /dev/null # into the page cache, for every contender alike

echo "machine: $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), load average $(cut -d' ' -f1-3 /proc/loadavg)"
echo "$(veritysetup --version | head -1), $(sha256sum --version | head -1)"
echo "image: $IMG ($MIB MiB), salt $SALT, sha256, 4096-byte blocks"
echo

# run LABEL CMD... : runs once under GNU time, prints a line, sets WALL and OUT.
run() {
    local label="$1"; shift
    local tf="$W/time.txt"
    OUT=$(/usr/bin/time -f '%e %U %S %M' -o "$tf" "$@")
    read -r WALL USER SYS RSS < "$tf"
    printf '%-28s wall %6.2f s  user %6.2f s  sys %5.2f s  peak RSS %7d KiB\n' "$label" "$WALL" "$USER" "$SYS" "$RSS"
}

rm -f "$W/ours.hash" "$W/theirs.hash"
run "chrysalis (examples/verity)" "$OURS" "$IMG" --salt "$SALT" --tree "$W/ours.hash"
T_OURS=$WALL; RSS_OURS=$RSS
ROOT_OURS=$(sed -n 's/^root_hash=//p' <<<"$OUT")
run "veritysetup format" veritysetup format --no-superblock --salt="$SALT" "$IMG" "$W/theirs.hash"
T_VS=$WALL
ROOT_VS=$(sed -n 's/^Root hash:[[:space:]]*//p' <<<"$OUT")
run "sha256sum" sha256sum "$IMG"
T_SHA=$WALL

echo
if [ "$ROOT_OURS" != "$ROOT_VS" ]; then
    echo "MISMATCH: ours $ROOT_OURS, veritysetup $ROOT_VS" >&2
    exit 1
fi
cmp "$W/ours.hash" "$W/theirs.hash" || { echo "hash trees differ" >&2; exit 1; }
echo "root hash $ROOT_OURS (equal); hash trees byte-identical ($(stat -c %s "$W/ours.hash") bytes)"
ratio() { printf '%.2f' "$(echo "$1 / $2" | bc -l)"; }
echo "ours / sha256sum = $(ratio "$T_OURS" "$T_SHA")x   (goal <= 1.2)"
echo "ours / veritysetup = $(ratio "$T_OURS" "$T_VS")x"
echo "our peak RSS: $RSS_OURS KiB (goal < 65536)"
rm -f "$W/ours.hash" "$W/theirs.hash"
