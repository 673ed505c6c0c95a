#!/usr/bin/env bash
# The main job on the embedded default: generate SIMULATED evidence (TDX and
# SNP), verify it end to end with the real verification code, and print the
# decisions — rejected by default, accepted only with --allow-sim.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --locked -q -p chrysalis-host-tools
chrysalis=target/release/chrysalis
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
nonce=$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')

for tee in tdx snp; do
  echo "=== $tee: generate simulated evidence bound to report_data $nonce"
  "$chrysalis" attest generate --provider sim --tee "$tee" --report-data "$nonce" --out "$work/$tee.bin"
  collateral=$(ls "$work/$tee.bin".*)
  echo
  echo "=== $tee: verify with the default policy (must be REJECTED: simulated)"
  set +e
  "$chrysalis" attest verify "$work/$tee.bin" --collateral "$collateral" --report-data "$nonce"
  code=$?
  set -e
  echo "(exit code $code)"
  [ "$code" = 4 ] || { echo "expected exit 4 (rejected), got $code" >&2; exit 1; }
  echo
  echo "=== $tee: verify with --allow-sim (ACCEPTED, loudly marked SIMULATED)"
  "$chrysalis" attest verify "$work/$tee.bin" --collateral "$collateral" --report-data "$nonce" --allow-sim
  echo
done
echo "demo: OK"
