#!/usr/bin/env bash
# Runs the whole test suite. Tests that need ../shared/vectors skip with a
# message when it is absent.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo test --workspace --all-targets --locked "$@"
# Doc tests (not part of --all-targets).
cargo test --workspace --doc --locked
# The Python client (`import chrysalis`): wheel built with maturin, pytest
# with the OpenAI SDK against the agent (installs pinned packages in a venv).
bash ci/python.sh
