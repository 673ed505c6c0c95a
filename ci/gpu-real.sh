#!/usr/bin/env bash
# Real NVIDIA H100 confidential-computing check, for a machine that has one.
# Not part of CI: CI machines have no GPU. Two modes:
#
#   bash ci/gpu-real.sh --first-boot tdx|snp PCI_ADDR [tee-real options]
#       On the CC host: first boot of the gpu image with the GPU passed
#       through (ci/tee-real.sh: build or --release DIR, launch, compare
#       every register with measurements.json), then check the GPU chain on
#       the console in order — device nodes, nvidia-persistenced, the GPU
#       gate passing, the agent ready (which needs vLLM answering; vLLM's
#       own log stays off the host-visible console) — and
#       verify the node as a client does with the image's GPU policy
#       (chrysalis verify --gpu-policy: GPU evidence served, committed in the
#       certificate, CC on, dev tools off). --dry-run prints the commands.
#
#   bash ci/gpu-real.sh [DRIVER_RIM VBIOS_RIM]
#       Inside a CC guest with the NVIDIA driver and libnvidia-ml.so.1:
#
# 1. `chrysalis gpu status`: driver, system CC state, dev-tools mode, GPUs.
# 2. `chrysalis gpu collect`: attestation report + certificate chain of every
#    GPU for a fresh random nonce, through NVML (ready state NOT set).
# 3. `chrysalis gpu verify`: chain to the pinned NVIDIA root, signature, nonce,
#    OCSP (online; cached under ~/.cache/chrysalis/ocsp), CC mode and dev tools
#    through a policy file; measurements against the RIMs when given (NVIDIA
#    publishes them per driver/VBIOS version; download them beside this run).
# Prints every result and exits with `chrysalis gpu verify`'s exit code.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "${1:-}" = --first-boot ]; then
    tee_kind=${2:?--first-boot tdx|snp PCI_ADDR}
    pci=${3:?--first-boot tdx|snp PCI_ADDR}
    shift 3
    dry=
    for a in "$@"; do [ "$a" = --dry-run ] && dry=1; done
    out=$(pwd)/target/gpu-real-$tee_kind-$(date -u +%Y%m%dT%H%M%SZ)
    # Launch, compare registers, keep the VM up for the checks below.
    set +e
    bash ci/tee-real.sh "$tee_kind" --gpu "$pci" --out "$out" --keep "$@"
    rc=$?
    set -e
    [ "$rc" = 0 ] || [ "$rc" = 3 ] || exit "$rc"
    chrysalis=${CHRYSALIS:-target/release/chrysalis}
    port=18443
    prev=0
    while [ $# -gt 0 ]; do [ "$1" = --port ] && port=$2; shift; done
    echo "== first boot: the GPU chain in order on the console ($out/console.log)"
    steps=(
        'chrysalis-gpu-devices: [0-9]+ GPU\(s\)'
        'nvidia-persistenced: running, UVM persistence mode'
        'chrysalis-gpu-gate: passed'
        # Ready only with the engine answering: vLLM runs, after the gate.
        'chrysalis-agent.*ready|ready.*chrysalis-agent'
    )
    for step in "${steps[@]}"; do
        if [ -n "$dry" ]; then echo "+ grep -En '$step' $out/console.log (after line $prev)"; continue; fi
        line=$(grep -En "$step" "$out/console.log" | head -1 | cut -d: -f1)
        if [ -z "$line" ]; then
            echo "FAIL: no '$step' on the console"; grep -E 'chrysalis|nvidia|vllm' "$out/console.log" | tail -40; exit 1
        fi
        if [ "$line" -lt "$prev" ]; then echo "FAIL: '$step' (line $line) before the previous step (line $prev)"; exit 1; fi
        echo "ok  line $line: $step"
        prev=$line
    done
    if [ -z "$dry" ] && grep -Eq 'chrysalis-gpu-gate: REFUSED' "$out/console.log"; then
        echo "FAIL: the gate refused:"; grep -E 'chrysalis-gpu-gate' "$out/console.log"; exit 1
    fi
    echo "== chrysalis verify --gpu-policy (the image's policy, as a client requires it)"
    cmd=("$chrysalis" verify "https://127.0.0.1:$port" --policy "$out/policy.toml"
         --gpu-policy image/gpu/extra/usr/lib/chrysalis/gpu/gpu-policy.toml --json)
    if [ -n "$dry" ]; then printf '+'; printf ' %q' "${cmd[@]}"; printf '\n'; exit 0; fi
    set +e
    "${cmd[@]}" > "$out/verify-gpu.json"
    vrc=$?
    set -e
    cat "$out/verify-gpu.json"
    echo "gpu-real --first-boot: registers rc=$rc, verify rc=$vrc; output $out (the VM keeps running)"
    [ "$rc" = 0 ] && [ "$vrc" = 0 ]
    exit $?
fi

cargo build --locked -p chrysalis-host-tools --bin chrysalis
bin=target/debug/chrysalis
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

echo "== chrysalis gpu status"
"$bin" gpu status

nonce=$(od -An -tx1 -N32 /dev/urandom | tr -d ' \n')
echo "== chrysalis gpu collect --nonce $nonce"
"$bin" gpu collect --nonce "$nonce" --out "$work/bundle.json"

cat > "$work/policy.toml" <<'TOML'
[gpu]
require_cc_mode = true
require_devtools_off = true
ocsp = "required"
TOML
rims=()
if [ $# -ge 2 ]; then
  rims=(--rim "$1" --rim "$2")
else
  echo "(no RIMs given: measurements are not compared in this run)"
  printf 'require_rims = false\n' >> "$work/policy.toml"
fi
echo "== chrysalis gpu verify"
set +e
"$bin" gpu verify --evidence "$work/bundle.json" "${rims[@]}" --nonce "$nonce" --policy "$work/policy.toml"
rc=$?
"$bin" gpu verify --evidence "$work/bundle.json" "${rims[@]}" --nonce "$nonce" --policy "$work/policy.toml" --json > "$work/result.json"
set -e
cat "$work/result.json"
echo "gpu-real: exit $rc"
exit $rc
