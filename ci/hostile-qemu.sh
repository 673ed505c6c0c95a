#!/usr/bin/env bash
# qemu-system-x86_64 as a hostile host would run it, for the image CI boot
# test (ci/image.sh; `chrysalis launch --qemu ci/hostile-qemu.sh`): launch's
# exact argv, plus three inputs the host controls and the measurements do
# not cover on their own:
#   * the UEFI variable store: `-bios FILE` becomes Debian's OVMF code as
#     pflash with a copy of $CHRYSALIS_HOSTILE_DIR/vars.fd, a variable store
#     carrying systemd's `SystemdOptions` variable (made by ci/image.sh with
#     virt-fw-vars);
#   * SMBIOS type 11 strings: every line of $CHRYSALIS_HOSTILE_DIR/smbios
#     becomes `-smbios type=11,value=LINE` (systemd credentials
#     `io.systemd.credential[.binary]:NAME=VALUE`);
#   * fw_cfg: every file under $CHRYSALIS_HOSTILE_DIR/fw_cfg/ becomes
#     `-fw_cfg name=opt/io.systemd.credentials/FILE,file=PATH`.
# Each one tries to make the guest print CHRYSALIS-INJECTED-<CHANNEL> on the
# serial console; the hardened image must ignore all of them.
set -euo pipefail
dir=${CHRYSALIS_HOSTILE_DIR:?set CHRYSALIS_HOSTILE_DIR}
code=${CHRYSALIS_HOSTILE_OVMF_CODE:-/usr/share/OVMF/OVMF_CODE_4M.fd}
qemu=${CHRYSALIS_HOSTILE_QEMU:-qemu-system-x86_64}
args=()
while [ $# -gt 0 ]; do
    if [ "$1" = -bios ] && [ $# -ge 2 ]; then
        vars=$(mktemp "$dir/vars-run.XXXXXX")
        cp "$dir/vars.fd" "$vars"
        args+=(-drive "if=pflash,format=raw,unit=0,readonly=on,file=$code"
               -drive "if=pflash,format=raw,unit=1,file=$vars")
        shift 2
        continue
    fi
    args+=("$1")
    shift
done
if [ -f "$dir/smbios" ]; then
    while IFS= read -r line; do
        [ -n "$line" ] && args+=(-smbios "type=11,value=${line//,/,,}")
    done < "$dir/smbios"
fi
if [ -d "$dir/fw_cfg" ]; then
    for f in "$dir"/fw_cfg/*; do
        [ -f "$f" ] && args+=(-fw_cfg "name=opt/io.systemd.credentials/$(basename "$f"),file=$f")
    done
fi
exec "$qemu" "${args[@]}"
