#!/usr/bin/env bash
# Runs the whole test suite. Tests that need ../shared/vectors skip with a
# message when it is absent.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo test --workspace --all-targets --locked "$@"
# Doc tests (not part of --all-targets).
cargo test --workspace --doc --locked
