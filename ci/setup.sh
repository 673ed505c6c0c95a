#!/usr/bin/env bash
# Installs what building and testing Chrysalis needs on a fresh Debian machine.
# Idempotent; safe to run repeatedly.
set -euo pipefail

need_apt=()
for pkg in build-essential pkg-config ca-certificates; do
  dpkg -s "$pkg" >/dev/null 2>&1 || need_apt+=("$pkg")
done
if ((${#need_apt[@]})); then
  echo "setup: installing ${need_apt[*]}"
  if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need_apt[@]}"
fi

if ! command -v cargo >/dev/null 2>&1; then
  echo "setup: cargo not found; install Rust (rustup, stable ≥ 1.88) first" >&2
  exit 1
fi
# rustfmt and clippy are needed by CI; add them when rustup can.
if command -v rustup >/dev/null 2>&1; then
  for c in rustfmt clippy; do
    rustup component list --installed 2>/dev/null | grep -q "^$c" || rustup component add "$c" || true
  done
fi
cargo --version
