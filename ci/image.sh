#!/usr/bin/env bash
# Image CI (issue 7): installs mkosi (pinned) and QEMU, builds the TDX/SNP
# firmware from source and the `cpu` image once, boots it with
# `chrysalis launch --tee none` (TCG unless KVM really works), waits for the
# agent's `ready`, runs `chrysalis verify` under an explicit test policy that
# allows simulated evidence and one chat request forwarded through the agent,
# checks that a rootfs with one flipped byte stops the boot with a verity
# error, and that a changed command line changes the computed measurements.
# Host inputs (issue 15): the main boot runs under ci/hostile-qemu.sh, which
# adds a `SystemdOptions` UEFI variable, an SMBIOS type 11 credential and a
# fw_cfg credential, each trying to print CHRYSALIS-INJECTED-<CHANNEL>; the
# guest must ignore all three. A control boot of the same image with the two
# closing command-line options removed shows each injection does act when
# not closed, and a boot into emergency.target must power the VM off, in the
# root image and in the initrd.
# Times are printed at the end (build, boot-to-ready, total).
# Work directory: $CHRYSALIS_IMAGE_WORK (default target/image-ci).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
start=$(date +%s)
work=${CHRYSALIS_IMAGE_WORK:-$root/target/image-ci}
port=${CHRYSALIS_IMAGE_PORT:-18443}
mkdir -p "$work"
qemu_pid=
cleanup() { if [ -n "$qemu_pid" ]; then kill "$qemu_pid" 2>/dev/null || true; wait "$qemu_pid" 2>/dev/null || true; fi; }
trap cleanup EXIT

echo "=== setup: QEMU, Debian's OVMF (for --tee none), firmware build tools, mkosi 25.3"
export DEBIAN_FRONTEND=noninteractive
apt_get() { if [ "$(id -u)" = 0 ]; then apt-get "$@"; else sudo apt-get "$@"; fi; }
apt_get update -qq
apt_get install -y --no-install-recommends qemu-system-x86 ovmf nasm acpica-tools uuid-dev erofs-utils cryptsetup-bin \
    curl xz-utils python3 python3-venv patch make gcc >/dev/null
mkosi=$(bash image/tools/install-mkosi.sh)
export CHRYSALIS_MKOSI=$mkosi
"$mkosi" --version
qemu-system-x86_64 --version | head -1
# The pinned QEMU (trixie-backports 11.1.3) the measurements are made with:
# RTMR0's ACPI tables are generated with it (measure image fails without it).
CHRYSALIS_QEMU=$(bash ci/qemu-pinned.sh)
export CHRYSALIS_QEMU

echo "=== build: chrysalis (host tools)"
cargo build --locked -q -p chrysalis-host-tools
chrysalis=$root/target/debug/chrysalis

# The firmware (TDVF, OVMF AmdSev from Debian's edk2 sources) is built by
# `chrysalis image build` itself when image/firmware/out is not a complete,
# hash-checked build of this tree's image/firmware/build.sh.

echo "=== image: chrysalis image build --profile cpu --out $work/release (builds the firmware too when its cache is not valid)"
t0=$(date +%s)
# The build installs exactly image/locks/cpu.lock. When a locked package is
# gone from every archive (exit 6, each named) the image is still built and
# booted from the live archives (--no-lock), loudly: the lock needs renewing.
rc=0
"$chrysalis" image build --profile cpu --out "$work/release" --vm 8:64G:1 --vm 2:2G:0 \
    ${CHRYSALIS_MKOSI_OUTPUT:+--mkosi-output "$CHRYSALIS_MKOSI_OUTPUT"} || rc=$?
if [ "$rc" = 6 ]; then
    echo "ci/image: WARNING: the cpu package lock names packages no archive serves any more: building from the LIVE archives instead (renew it: image build --update-lock)"
    "$chrysalis" image build --profile cpu --out "$work/release" --vm 8:64G:1 --vm 2:2G:0 --no-lock \
        ${CHRYSALIS_MKOSI_OUTPUT:+--mkosi-output "$CHRYSALIS_MKOSI_OUTPUT"} \
        || { tail -40 "$work/release/.work/firmware.log" 2>/dev/null; exit 1; }
elif [ "$rc" != 0 ]; then
    tail -40 "$work/release/.work/firmware.log" 2>/dev/null; exit 1
fi
build_s=$(( $(date +%s) - t0 ))
for f in SHA256SUMS measurements.json vmlinuz initrd cmdline rootfs.img rootfs.verity firmware-tdx.fd firmware-snp.fd packages.json firmware-build.txt; do
    test -s "$work/release/$f" || { echo "FAIL: $f missing from the release directory"; exit 1; }
done
(cd "$work/release" && sha256sum -c --quiet SHA256SUMS)
# A build always measures: both VM shapes, TDX and SNP each.
python3 - "$work/release/measurements.json" <<'PY'
import json, sys
c = json.load(open(sys.argv[1]))["configurations"]
tdx = [x["name"] for x in c if x.get("tdx")]
snp = [x["name"] for x in c if x.get("snp")]
assert len(tdx) == 2 and len(snp) == 2, f"measurements.json: TDX {tdx}, SNP {snp}"
print("measured:", ", ".join(tdx + snp))
PY
ls -l "$work/release"

echo "=== RTMR0: generated ACPI tables vs what the release's TDVF installs (TCG boot)"
bash ci/acpi-firmware-check.sh "$work/release" 2:2G:0 8:64G:1

# Waits until the console log matches $2 (extended regex) or QEMU exits or $3 s pass.
wait_for() {
    local log=$1 pattern=$2 limit=$3 i=0
    while [ "$i" -lt "$limit" ]; do
        if grep -Eq "$pattern" "$log" 2>/dev/null; then return 0; fi
        if ! kill -0 "$qemu_pid" 2>/dev/null; then return 2; fi
        sleep 1; i=$((i + 1))
    done
    return 1
}

echo "=== model volume: chrysalis image model (erofs + dm-verity), root hash in the host configuration"
rm -rf "$work/model-src" "$work/model"; mkdir -p "$work/model-src/weights"
printf '{"architectures":["stub"]}\n' > "$work/model-src/config.json"
head -c 1048576 /dev/zero | tr '\0' 'w' > "$work/model-src/weights/w.bin"
"$chrysalis" image model "$work/model-src" --out "$work/model"
model_root=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["verity_root_hash"])' "$work/model/model.json")
printf '{"endpoint":"127.0.0.1:%s","model_volume":{"verity_root_hash":"%s"}}\n' "$port" "$model_root" > "$work/host-config.json"

echo "=== host inputs: a SystemdOptions UEFI variable, an SMBIOS credential, a fw_cfg credential"
# virt-fw-vars (PyPI virt-firmware) writes the variable into a copy of
# Debian's OVMF variable store; ci/hostile-qemu.sh boots with it.
hostile=$work/hostile
rm -rf "$hostile"; mkdir -p "$hostile/fw_cfg"
if [ ! -x "$work/vfenv/bin/virt-fw-vars" ]; then
    python3 -m venv "$work/vfenv"
    "$work/vfenv/bin/pip" install -q --disable-pip-version-check 'virt-firmware==26.10'
fi
python3 - "$hostile" <<'PY'
import base64, json, os, sys
d = sys.argv[1]
# systemd reads SystemdOptions (vendor 8cf2644b-...) as extra kernel
# command-line options when Secure Boot is off: run a command from it
# (systemd.run= alone would also replace the default target, so keep
# multi-user.target and pull the command's unit into it).
opts = ('systemd.run="/bin/echo CHRYSALIS-INJECTED-EFIVAR" '
        'systemd.run_success_action=none systemd.run_failure_action=none '
        'systemd.unit=multi-user.target systemd.wants=kernel-command-line.service')
json.dump({"version": 2, "variables": [{
    "name": "SystemdOptions", "guid": "8cf2644b-4b0b-428f-9387-6d876050dc67",
    "attr": 7, "data": (opts.encode("utf-16-le") + b"\0\0").hex()}]},
    open(os.path.join(d, "vars.json"), "w"))
# SMBIOS type 11: a whole unit and a drop-in that starts it (systemd's
# debug generator turns these credentials into unit files).
unit = ("[Unit]\nDescription=Injected by the host (SMBIOS)\n[Service]\nType=oneshot\n"
        "Environment=CHANNEL=SMBIOS\nExecStart=/bin/echo CHRYSALIS-INJECTED-${CHANNEL}\n"
        "StandardOutput=journal+console\n")
dropin = "[Unit]\nWants=chrysalis-injected.service\n"
with open(os.path.join(d, "smbios"), "w") as f:
    for name, data in (("systemd.extra-unit.chrysalis-injected.service", unit),
                       ("systemd.unit-dropin.multi-user.target", dropin)):
        f.write(f"io.systemd.credential.binary:{name}={base64.b64encode(data.encode()).decode()}\n")
# fw_cfg (names are limited to 55 bytes): a tmpfiles.d line run at boot.
with open(os.path.join(d, "fw_cfg", "tmpfiles.extra"), "w") as f:
    f.write("w /dev/console - - - - CHRYSALIS-INJECTED-FW\\x43FG\\n\n")
PY
cp /usr/share/OVMF/OVMF_VARS_4M.fd "$hostile/vars.fd"
"$work/vfenv/bin/virt-fw-vars" --inplace "$hostile/vars.fd" --set-json "$hostile/vars.json" 2>/dev/null
"$work/vfenv/bin/virt-fw-vars" -i "$hostile/vars.fd" -p 2>/dev/null | grep -q SystemdOptions \
    || { echo "FAIL: the variable store carries no SystemdOptions"; exit 1; }
export CHRYSALIS_HOSTILE_DIR=$hostile
injected='CHRYSALIS-INJECTED-(EFIVAR|SMBIOS|FWCFG)'

echo "=== boot: chrysalis launch --tee none --vcpus 2 --memory 2G --forward $port --config FILE --model DIR (hostile host: ci/hostile-qemu.sh)"
"$chrysalis" launch --tee none --vcpus 2 --memory 2G --forward "$port" --print "$work/release"
rm -f "$work/console.log"  # a stale log would fake an early ready
t0=$(date +%s)
"$chrysalis" launch --tee none --vcpus 2 --memory 2G --forward "$port" \
    --config "$work/host-config.json" --model "$work/model" --qemu "$root/ci/hostile-qemu.sh" \
    --console-log "$work/console.log" "$work/release" &
qemu_pid=$!
if ! wait_for "$work/console.log" 'chrysalis-agent.*ready|ready.*chrysalis-agent' 900; then
    echo "FAIL: the agent did not report ready; console:"; tail -60 "$work/console.log"; exit 1
fi
ready_s=$(( $(date +%s) - t0 ))
echo "agent ready ${ready_s}s after launch"
# The model volume was attached under the root hash of the measured configuration.
if ! grep -q "chrysalis-model: mounted read-only at /models, dm-verity root hash $model_root" "$work/console.log"; then
    echo "FAIL: the model volume was not mounted under its root hash; console:"; grep -i 'chrysalis-model\|verity' "$work/console.log" | tail -20; exit 1
fi
echo "model volume mounted at /models under root hash $model_root"
grep -E 'verity|Reached target' "$work/console.log" | head -5 || true

echo "=== verify: default policy must REJECT the simulated evidence"
if "$chrysalis" verify "https://127.0.0.1:$port"; then echo "FAIL: simulated evidence accepted by the default policy"; exit 1; fi
echo "=== verify: explicit test policy (allow_simulated = true) accepts it"
ok=
for _ in 1 2 3 4 5 6 7 8 9 10; do
    if "$chrysalis" verify "https://127.0.0.1:$port" --policy ci/image-test-policy.toml --nonce; then ok=1; break; fi
    sleep 3
done
[ -n "$ok" ] || { echo "FAIL: chrysalis verify"; exit 1; }
echo "=== one request forwarded through the agent to the engine"
answer=$("$chrysalis" chat "https://127.0.0.1:$port" --policy ci/image-test-policy.toml -m "hello from ci")
echo "$answer"
case "$answer" in *"echo: hello from ci"*) ;; *) echo "FAIL: unexpected answer"; exit 1 ;; esac
if grep -Eq "$injected" "$work/console.log"; then
    echo "FAIL: a host-supplied input took effect:"; grep -E "$injected" "$work/console.log"; exit 1
fi
echo "host inputs ignored: no SystemdOptions, SMBIOS or fw_cfg injection took effect"
cleanup; qemu_pid=

echo "=== tamper: one flipped byte in rootfs.img must stop the boot with a verity error"
rm -rf "$work/tampered"; mkdir -p "$work/tampered"
cp -a "$work/release/." "$work/tampered/"
python3 - "$work/tampered/rootfs.img" <<'PY'
import sys
with open(sys.argv[1], "r+b") as f:
    f.seek(1024 + 8)  # inside the erofs superblock (block 0): read at mount
    b = f.read(1); f.seek(1024 + 8); f.write(bytes([b[0] ^ 0x01]))
PY
rm -f "$work/console-tampered.log"
"$chrysalis" launch --tee none --vcpus 2 --memory 2G \
    --console-log "$work/console-tampered.log" "$work/tampered" &
qemu_pid=$!
# The kernel's dm-verity error (not the command line, which names the option).
verity_error='device-mapper: verity: [0-9]+:[0-9]+: (data|metadata) block [0-9]+ is corrupted|dm-verity device corrupted'
rc=0; wait_for "$work/console-tampered.log" "$verity_error" 900 || rc=$?
if [ "$rc" != 0 ]; then echo "FAIL: no dm-verity error on the console (wait_for rc=$rc)"; tail -40 "$work/console-tampered.log"; exit 1; fi
if grep -Eq 'chrysalis-agent.*ready' "$work/console-tampered.log"; then
    echo "FAIL: the agent came up on a tampered rootfs"; exit 1
fi
grep -E -m3 "$verity_error" "$work/console-tampered.log"
# panic-on-corruption + panic=-1 + QEMU -no-reboot: the VM must stop.
i=0; while kill -0 "$qemu_pid" 2>/dev/null && [ "$i" -lt 120 ]; do sleep 1; i=$((i + 1)); done
if kill -0 "$qemu_pid" 2>/dev/null; then echo "FAIL: the VM kept running after the verity error"; exit 1; fi
cleanup; qemu_pid=
echo "tampered rootfs: boot stopped with a verity error"

# A release directory like the built one with another command line
# (--tee none measures nothing, so launch accepts it).
with_cmdline() { # DIR CMDLINE
    rm -rf "$1"; mkdir -p "$1"
    for f in vmlinuz initrd rootfs.img rootfs.verity verity-salt; do ln -sf "$work/release/$f" "$1/$f"; done
    printf '%s\n' "$2" > "$1/cmdline"
}

echo "=== control: without efi=noruntime and systemd.import_credentials=no, each injection acts"
open_cmdline=$(sed -e 's/ efi=noruntime//' -e 's/ systemd.import_credentials=no//' "$work/release/cmdline")
[ "$open_cmdline" != "$(cat "$work/release/cmdline")" ] || { echo "FAIL: the release cmdline lacks the closing options"; exit 1; }
with_cmdline "$work/open" "$open_cmdline"
rm -f "$work/console-open.log"
"$chrysalis" launch --tee none --vcpus 2 --memory 2G --qemu "$root/ci/hostile-qemu.sh" \
    --console-log "$work/console-open.log" "$work/open" &
qemu_pid=$!
for channel in EFIVAR SMBIOS FWCFG; do
    rc=0; wait_for "$work/console-open.log" "CHRYSALIS-INJECTED-$channel" 900 || rc=$?
    if [ "$rc" != 0 ]; then
        echo "FAIL: the $channel injection did not act even with the channel open (wait_for rc=$rc): the test injects nothing"
        tail -40 "$work/console-open.log"; exit 1
    fi
done
grep -E "$injected" "$work/console-open.log"
cleanup; qemu_pid=
echo "control: all three injections act on an image without the closing options"

# Boots the release with CMDLINE_SUFFIX appended; the VM must print the
# power-off line, stop by itself, and show no emergency shell prompt.
expect_poweroff() { # NAME CMDLINE_SUFFIX
    local name=$1 log="$work/console-$1.log"
    with_cmdline "$work/$name" "$(cat "$work/release/cmdline") $2"
    rm -f "$log"
    "$chrysalis" launch --tee none --vcpus 2 --memory 2G --console-log "$log" "$work/$name" &
    qemu_pid=$!
    local rc=0; wait_for "$log" 'chrysalis: emergency is disabled in this image: powering off' 900 || rc=$?
    if [ "$rc" != 0 ]; then echo "FAIL: $name: no power-off line (wait_for rc=$rc)"; tail -40 "$log"; exit 1; fi
    local i=0; while kill -0 "$qemu_pid" 2>/dev/null && [ "$i" -lt 120 ]; do sleep 1; i=$((i + 1)); done
    if kill -0 "$qemu_pid" 2>/dev/null; then echo "FAIL: $name: the VM kept running"; exit 1; fi
    if grep -Eq 'root account is locked|Give root password|Press Enter for maintenance' "$log"; then
        echo "FAIL: $name: an emergency shell prompt reached the console"; exit 1
    fi
    cleanup; qemu_pid=
}

echo "=== emergency: reaching emergency.target powers the VM off"
expect_poweroff emergency systemd.unit=emergency.target
echo "emergency.target: the VM powered off"

echo "=== initrd emergency: the initrd reaching emergency.target powers the VM off too"
# The initrd gets the same drop-ins as a package (chrysalis-initrd-poweroff,
# mkosi.conf InitrdPackages=): a host that makes the initrd fail (e.g. by
# withholding the verity device) gets a powered-off VM, not a hung one.
expect_poweroff initrd-emergency rd.systemd.unit=emergency.target
if grep -q 'Switching root' "$work/console-initrd-emergency.log"; then
    echo "FAIL: the boot left the initrd: the test did not exercise the initrd's emergency target"; exit 1
fi
echo "initrd emergency.target: the VM powered off"

echo "=== cmdline: a changed command line changes the computed measurements"
rm -rf "$work/cmdline"; mkdir -p "$work/cmdline"
for f in firmware-tdx.fd firmware-snp.fd vmlinuz initrd cmdline rootfs.img verity-salt; do
    ln -sf "$work/release/$f" "$work/cmdline/$f"
done
rm "$work/cmdline/cmdline"; printf '%s quiet\n' "$(cat "$work/release/cmdline")" > "$work/cmdline/cmdline"
"$chrysalis" measure image "$work/cmdline" --vm 8:64G:1 --vm 2:2G:0 >/dev/null
python3 - "$work/release/measurements.json" "$work/cmdline/measurements.json" <<'PY'
import json, sys
a, b = (json.load(open(p)) for p in sys.argv[1:])
assert len(a["configurations"]) == len(b["configurations"]) > 0, "no configurations"
for x, y in zip(a["configurations"], b["configurations"]):
    if x.get("tdx"):
        assert x["tdx"]["mrtd"] == y["tdx"]["mrtd"], "MRTD must not depend on the cmdline"
        assert x["tdx"]["rtmr2"] != y["tdx"]["rtmr2"], f"{x['name']}: RTMR2 unchanged"
    if x.get("snp"):
        assert x["snp"]["measurement"] != y["snp"]["measurement"], f"{x['name']}: SNP digest unchanged"
    print(f"{x['name']}: changed as expected")
PY

echo "=== real-hardware scripts: ci/tdx-real.sh and ci/snp-real.sh --dry-run against this release"
# They cannot run here (no TDX/SNP); the dry run parses them, prints every
# command and selects the published configuration from measurements.json.
for t in tdx snp; do
    bash "ci/$t-real.sh" --dry-run --release "$work/release" --vm 2:2G:0 --out "$work/$t-real-dry" > "$work/$t-real-dry.log" \
        || { echo "FAIL: ci/$t-real.sh --dry-run"; tail -20 "$work/$t-real-dry.log"; exit 1; }
    grep -q "\"name\": \"$t-2cpu-" "$work/$t-real-dry.log" || { echo "FAIL: ci/$t-real.sh selected no configuration"; exit 1; }
done
echo "tdx-real.sh, snp-real.sh: dry runs select tdx-2cpu-2048m-0gpu and snp-2cpu-*"

echo "=== image CI passed: image build ${build_s}s (firmware included when it was rebuilt), boot-to-ready ${ready_s}s, total $(( $(date +%s) - start ))s"
du -b "$work/release"/{vmlinuz,initrd,rootfs.img,rootfs.verity,chrysalis.efi,firmware-tdx.fd,firmware-snp.fd} | awk '{printf "  %-20s %8.1f MiB\n", $2, $1/1048576}' | sed "s|$work/release/||"
