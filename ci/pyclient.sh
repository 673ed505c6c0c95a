#!/usr/bin/env bash
# Installs the Python side of the independent RA-TLS client test
# (attestation/ratls/tests/py/ratls_check.py, run by
# attestation/ratls/tests/python_client.rs): a venv at $PYVENV
# (default: ${CARGO_TARGET_DIR:-<repo>/target}/pyvenv) with the `cryptography`
# package at a pinned version.
# Idempotent: a venv that already has that version is left alone. Prints what
# it did. Optional for `cargo test`: without the venv the test skips with a
# message; with it the test actually runs the outsider's client.
set -euo pipefail
cd "$(dirname "$0")/.."

CRYPTOGRAPHY_VERSION="48.0.0"
TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target}"
PYVENV="${PYVENV:-$TARGET_DIR/pyvenv}"

say() { printf 'pyclient: %s\n' "$*"; }

if ! command -v python3 >/dev/null 2>&1; then
    say "python3 not found; skipping (the Python client test will skip)"
    exit 0
fi

have_crypto() {
    [ -x "$PYVENV/bin/python" ] &&
        "$PYVENV/bin/python" - "$CRYPTOGRAPHY_VERSION" <<'PY' >/dev/null 2>&1
import sys
from importlib.metadata import version
sys.exit(0 if version("cryptography") == sys.argv[1] else 1)
PY
}

if have_crypto; then
    say "cryptography $CRYPTOGRAPHY_VERSION already in $PYVENV"
else
    if [ ! -x "$PYVENV/bin/python" ]; then
        say "python3 -m venv $PYVENV ($(python3 --version 2>&1))"
        if ! python3 -m venv "$PYVENV"; then
            # Debian's python3 keeps venv/ensurepip in a separate package.
            rm -rf "$PYVENV"
            if [ "$(id -u)" -ne 0 ]; then
                say "venv failed and apt-get needs root: install python3-venv" >&2
                exit 1
            fi
            say "apt-get install python3-venv, then retry"
            export DEBIAN_FRONTEND=noninteractive
            apt-get update -qq
            apt-get install -y -qq --no-install-recommends python3-venv >/dev/null
            python3 -m venv "$PYVENV"
        fi
    fi
    say "pip install cryptography==$CRYPTOGRAPHY_VERSION into $PYVENV"
    "$PYVENV/bin/python" -m pip install -q --disable-pip-version-check \
        "cryptography==$CRYPTOGRAPHY_VERSION"
fi
say "cryptography: $("$PYVENV/bin/python" -c 'import cryptography; print(cryptography.__version__)')"
say "done (PYVENV=$PYVENV)"
