#!/usr/bin/env bash
# Checks the RTMR0 ACPI generator against the real firmware: for each VM
# shape, boots the release's own TDVF (firmware-tdx.fd; it also boots outside
# a TD) and kernel under TCG with the exact qtest argv `chrysalis measure acpi`
# uses — qtest swapped for TCG — and a tiny busybox initrd that prints the ACPI
# tables the firmware installed; then compares them with the generated
# etc/acpi/tables, table by table (checksums and the FADT's loader-patched
# pointers excluded: the firmware fills those in from etc/table-loader).
#
#   bash ci/acpi-firmware-check.sh RELEASE_DIR [SHAPE ...]
#   SHAPE: VCPUS:MEMORY[:GPUS[:model]] (default: 2:2G:0 8:64G:1 8:64G:1:model)
#
# Needs the pinned QEMU (CHRYSALIS_QEMU, from ci/qemu-pinned.sh), busybox-static
# and cpio; ~30 s per shape. What it cannot show: that the TDVF does the same in
# a real TD (no TDX hardware here) — see README "RTMR0: QEMU's ACPI tables".
# Exit 0 when every table of every shape matches.
set -euo pipefail
cd "$(dirname "$0")/.."
release=${1:?usage: ci/acpi-firmware-check.sh RELEASE_DIR [SHAPE ...]}
shift
shapes=("$@")
[ ${#shapes[@]} -gt 0 ] || shapes=(2:2G:0 8:64G:1 8:64G:1:model)
: "${CHRYSALIS_QEMU:?set CHRYSALIS_QEMU to the pinned QEMU (bash ci/qemu-pinned.sh)}"
chrysalis=${CHRYSALIS_BIN:-target/debug/chrysalis}
[ -x "$chrysalis" ] || cargo build --locked -q -p chrysalis-host-tools
for f in firmware-tdx.fd vmlinuz; do
    [ -s "$release/$f" ] || { echo "acpi-firmware-check: $release/$f missing" >&2; exit 1; }
done
if ! command -v busybox >/dev/null || ! command -v cpio >/dev/null; then
    if [ "$(id -u)" = 0 ]; then
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends busybox-static cpio >/dev/null
    else
        echo "acpi-firmware-check: needs busybox (busybox-static) and cpio" >&2; exit 1
    fi
fi

work=$(mktemp -d)
trap '[ -n "${CHRYSALIS_ACPI_CHECK_KEEP:-}" ] && cp -r "$work" "$CHRYSALIS_ACPI_CHECK_KEEP"; rm -rf "$work"' EXIT
mkdir -p "$work/root/bin" "$work/root/proc" "$work/root/sys"
cp "$(command -v busybox)" "$work/root/bin/busybox"
cat >"$work/root/init" <<'EOF'
#!/bin/busybox sh
/bin/busybox --install -s /bin
mount -t sysfs sysfs /sys
for t in DSDT APIC MCFG WAET FACP; do
    echo "TABLE $t $(od -An -v -tx1 /sys/firmware/acpi/tables/$t | tr -d ' \n')"
done
poweroff -f
EOF
chmod +x "$work/root/init"
(cd "$work/root" && find . | cpio -o -H newc 2>/dev/null | gzip -n >"$work/initrd.gz")
truncate -s 0 "$work/disk.img"

fail=0
for shape in "${shapes[@]}"; do
    IFS=: read -r vcpus memory gpus model <<<"$shape"
    args=(--vcpus "$vcpus" --memory "$memory" --gpus "${gpus:-0}")
    [ "${model:-}" = model ] && args+=(--model-volume)
    "$chrysalis" measure acpi "${args[@]}" --json --out "$work/gen" >"$work/gen.json"
    # qtest argv → TCG boot of the firmware and kernel, console on stdio.
    mapfile -t boot < <(python3 - "$work/gen.json" "$work/disk.img" <<'EOF'
import json, sys
argv = json.load(open(sys.argv[1]))["qtest_argv"]
out = []
for a in argv:
    a = a.replace("file=SCRATCH", "file=" + sys.argv[2])
    out.append({"qtest": "tcg", "qemu64": "max", "null": "stdio"}.get(a, a))
print("\n".join(out))
EOF
)
    timeout 600 "$CHRYSALIS_QEMU" "${boot[@]}" -bios "$release/firmware-tdx.fd" \
        -kernel "$release/vmlinuz" -initrd "$work/initrd.gz" -append "console=ttyS0 quiet" \
        >"$work/boot.log" 2>&1 || true
    grep -ao 'TABLE [A-Z]* [0-9a-f]*' "$work/boot.log" >"$work/booted" || true
    echo "== $shape"
    python3 - "$work/gen/tables" "$work/booted" <<'EOF' || fail=1
import struct, sys
blob = open(sys.argv[1], "rb").read()
gen, at = {}, 0
while at < len(blob) and blob[at:at + 4] != b"\0\0\0\0":
    n = struct.unpack("<I", blob[at + 4:at + 8])[0]
    gen[blob[at:at + 4].decode()] = blob[at:at + n]
    at += n
booted = {}
for line in open(sys.argv[2]):
    p = line.split()
    if len(p) == 3:
        booted[p[1]] = bytes.fromhex(p[2])
if not booted:
    print("   the firmware boot printed no tables"); sys.exit(1)
ok = True
for name in ["DSDT", "APIC", "MCFG", "WAET", "FACP"]:
    g, b = bytearray(gen[name]), bytearray(booted.get(name, b""))
    # Checksums; FADT FIRMWARE_CTRL, DSDT, X_FIRMWARE_CTRL, X_DSDT pointers.
    skip = [9] + (list(range(36, 44)) + list(range(132, 148)) if name == "FACP" else [])
    for i in skip:
        for t in (g, b):
            if i < len(t):
                t[i] = 0
    same = g == b
    ok &= same
    print(f"   {name} {len(g)} B {'same' if same else 'DIFFERS'}")
sys.exit(0 if ok else 1)
EOF
done
[ "$fail" = 0 ] && echo "acpi-firmware-check: every table matches the firmware's" ||
    { echo "acpi-firmware-check: MISMATCH"; exit 1; }
