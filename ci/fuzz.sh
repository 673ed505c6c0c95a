#!/usr/bin/env bash
# Fuzz targets (cargo-fuzz, libFuzzer) for every parser of untrusted input.
#   ci/fuzz.sh build-if-available   build all targets and run each briefly,
#                                   if a nightly toolchain is installed
#   ci/fuzz.sh run TARGET [SECS]    fuzz one target (default 60 s)
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
mode=${1:-build-if-available}
if ! cargo +nightly --version >/dev/null 2>&1; then
  echo "fuzz: skipped (no nightly toolchain; rustup toolchain install nightly)"
  exit 0
fi
if ! cargo +nightly fuzz --version >/dev/null 2>&1; then
  echo "fuzz: installing cargo-fuzz"
  cargo install cargo-fuzz --locked -q || { echo "fuzz: skipped (cargo-fuzz could not be installed)"; exit 0; }
fi
case "$mode" in
  build-if-available)
    cargo +nightly fuzz build -O
    for t in $(cargo +nightly fuzz list); do
      echo "fuzz: $t (10 s)"
      cargo +nightly fuzz run -O "$t" -- -max_total_time=10 -rss_limit_mb=1024 2>&1 | tail -n 2
    done ;;
  run)
    cargo +nightly fuzz run -O "$2" -- -max_total_time="${3:-60}" ;;
  *) echo "usage: $0 build-if-available | run TARGET [SECS]" >&2; exit 2 ;;
esac
