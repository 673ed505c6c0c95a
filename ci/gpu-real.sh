#!/usr/bin/env bash
# Real NVIDIA H100 confidential-computing check, for a machine that has one
# (run it inside the CC guest, where the NVIDIA driver and libnvidia-ml.so.1
# are installed). Not part of CI: CI machines have no GPU.
#
#   bash ci/gpu-real.sh [DRIVER_RIM VBIOS_RIM]
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
