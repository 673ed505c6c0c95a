#!/usr/bin/env bash
# TON registry and payment channel: install the pinned npm packages (lockfile, offline-capable
# registry) and compile the Tolk contracts. Checked with node 20.
set -euo pipefail
cd "$(dirname "$0")/../host-tools/ton/contract"
if ! command -v node >/dev/null 2>&1; then
  echo "ci/ton.sh: installing node (Debian nodejs/npm)"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nodejs npm >/dev/null
fi
node --version
npm ci --no-audit --no-fund
node compile.js
