#!/usr/bin/env bash
# SEV-SNP launch digest: chrysalis-measurements vs sev-snp-measure (PyPI), on
# the same inputs, in one run. For each case it checks that both print the same
# digest, then reports
#   * in-process time per digest: ours via `examples/snp --repeat N`, theirs by
#     calling sevsnpmeasure.guest.snp_calc_launch_digest N times in one Python
#     process (interpreter start-up and imports excluded);
#   * command-line time per digest (process start-up included): each CLI run R
#     times in a loop;
# and the ratios (their time / our time). Both sides read the files on every
# digest.
#
# The 4 MiB firmware is pseudo-random (no 0xff padding, so no page is cheap);
# Debian's real OVMF.fd, when installed, is a quarter 0xff padding.
#
# Needs: ci/measure-tools.sh (the venv) and ../shared/vectors (the AmdSev
# firmware tail; CHRYSALIS_VECTORS=DIR overrides). Usage:
#   bash measurements/benches/snp_vs_sev_snp_measure.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
TARGET="${CARGO_TARGET_DIR:-$ROOT/target}"
VENV="${REFVENV:-$TARGET/refvenv}"
VECTORS="${CHRYSALIS_VECTORS:-$ROOT/../shared/vectors}"
TAIL="$VECTORS/measurements/virtee_ovmf_AmdSev_suffix.bin"
R="${CLI_RUNS:-10}"

[ -x "$VENV/bin/sev-snp-measure" ] || { echo "no sev-snp-measure in $VENV: run ci/measure-tools.sh first" >&2; exit 1; }
[ -f "$TAIL" ] || { echo "no $TAIL: ../shared/vectors needed" >&2; exit 1; }

cargo build --quiet --release -p chrysalis-measurements --example snp
OURS="$TARGET/release/examples/snp"
PY="$VENV/bin/python"
THEIRS="$VENV/bin/sev-snp-measure"
W="$TARGET/snp-bench"
mkdir -p "$W"

# Realistic sizes: a 4 MiB firmware (pseudo-random body + the real AmdSev tail,
# whose metadata and footer are offsets from the end), 12 MiB kernel, 40 MiB initrd.
"$PY" - "$TAIL" "$W" <<'EOF'
import random, sys, os
tail = open(sys.argv[1], "rb").read()
w = sys.argv[2]
rng = random.Random(1)
def write(name, size):
    p = os.path.join(w, name)
    if not os.path.exists(p) or os.path.getsize(p) != size:
        open(p, "wb").write(rng.randbytes(size - (len(tail) if name == "ovmf-4m.fd" else 0)) + (tail if name == "ovmf-4m.fd" else b""))
write("ovmf-4m.fd", 4 << 20)
write("vmlinuz", 12 << 20)
write("initrd.img", 40 << 20)
EOF

now_ns() { date +%s%N; }

echo "machine: $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), load average $(cut -d' ' -f1-3 /proc/loadavg)"
echo "sev-snp-measure $("$PY" -c 'from importlib.metadata import version; print(version("sev-snp-measure"))'), $("$PY" --version)"
printf '\n%-62s %12s %12s %7s | %12s %12s %7s\n' case "ours/digest" "theirs" ratio "ours CLI" "theirs CLI" ratio

run_case() {
    local label="$1" n_ours="$2" n_theirs="$3" vcpus="$4" vtype="$5" fw="$6" kernel="$7" initrd="$8" append="$9" ovmf_hash="${10:-}"
    local args=(--vcpus "$vcpus" --vcpu-type "$vtype" --ovmf "$fw")
    [ -n "$kernel" ] && args+=(--kernel "$kernel" --initrd "$initrd" --append "$append")
    [ -n "$ovmf_hash" ] && args+=(--snp-ovmf-hash "$ovmf_hash")

    local d_ours d_theirs
    d_ours=$("$OURS" "${args[@]}")
    d_theirs=$("$THEIRS" --mode snp "${args[@]}")
    if [ "$d_ours" != "$d_theirs" ]; then
        echo "MISMATCH for $label: ours $d_ours, sev-snp-measure $d_theirs" >&2
        exit 1
    fi

    local us_ours us_theirs
    us_ours=$("$OURS" "${args[@]}" --repeat "$n_ours" 2>&1 >/dev/null | sed -n 's/^per_digest_us=//p')
    us_theirs=$("$PY" - "$n_theirs" "$vcpus" "$vtype" "$fw" "$kernel" "$initrd" "$append" "$ovmf_hash" <<'EOF'
import sys, timeit
from sevsnpmeasure import guest, vcpu_types
from sevsnpmeasure.vmm_types import VMMType
n, vcpus, vtype, fw, kernel, initrd, append, ovmf_hash = sys.argv[1:]
n, vcpus = int(n), int(vcpus)
sig = vcpu_types.CPU_SIGS[vtype]
f = lambda: guest.snp_calc_launch_digest(vcpus, sig, fw, kernel or None, initrd or None, append or None, 0x1, ovmf_hash, VMMType.QEMU)
f()
print("%.1f" % (timeit.timeit(f, number=n) / n * 1e6))
EOF
)

    local t0 t1 cli_ours cli_theirs
    t0=$(now_ns); for _ in $(seq "$R"); do "$OURS" "${args[@]}" >/dev/null; done; t1=$(now_ns)
    cli_ours=$(( (t1 - t0) / R / 1000 ))
    t0=$(now_ns); for _ in $(seq "$R"); do "$THEIRS" --mode snp "${args[@]}" >/dev/null; done; t1=$(now_ns)
    cli_theirs=$(( (t1 - t0) / R / 1000 ))

    printf '%-62s %10s µs %9s µs %6.1fx | %9s µs %9s µs %6.1fx\n' "$label" "$us_ours" "$us_theirs" \
        "$(echo "$us_theirs / $us_ours" | bc -l)" "$cli_ours" "$cli_theirs" "$(echo "$cli_theirs / $cli_ours" | bc -l)"
}

run_case "4 KiB firmware (virtee AmdSev tail), 4 vCPUs EPYC-Milan" 5000 500 4 EPYC-Milan "$TAIL" "" "" ""
if [ -f /usr/share/ovmf/OVMF.fd ]; then
    run_case "Debian OVMF.fd (2 MiB, real), 4 vCPUs EPYC-Milan" 300 50 4 EPYC-Milan /usr/share/ovmf/OVMF.fd "" "" ""
else
    echo "(no /usr/share/ovmf/OVMF.fd: apt-get install ovmf for the real-firmware case)"
fi
run_case "4 MiB firmware, 4 vCPUs EPYC-Milan" 100 30 4 EPYC-Milan "$W/ovmf-4m.fd" "" "" ""
OVMF_HASH=$("$THEIRS" --mode snp:ovmf-hash --ovmf "$W/ovmf-4m.fd")
run_case "4 MiB firmware, its ovmf hash given, 4 vCPUs EPYC-Milan" 2000 300 4 EPYC-Milan "$W/ovmf-4m.fd" "" "" "" "$OVMF_HASH"
run_case "4 MiB fw + 12 MiB kernel + 40 MiB initrd, 64 vCPUs Genoa" 20 10 64 EPYC-Genoa "$W/ovmf-4m.fd" "$W/vmlinuz" "$W/initrd.img" "console=ttyS0 root=/dev/vda1 ro"
echo
echo "digests equal in every case; ratio = sev-snp-measure time / chrysalis time; CLI runs: $R each"
